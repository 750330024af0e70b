/**
 * The replication conflict rule under many schedules: two daemons (each its
 * own local folder and its own cuttable link to one fake-gcs-server), random
 * writes and deletes before, during and after an outage (of one daemon or of
 * both), and random replication orders (either daemon drains first, with
 * writes in between). After both drain, every key must hold the newest
 * acknowledged write, or be absent when the newest acknowledged operation was
 * a delete, on GCS and as read through both daemons.
 *
 * The seed of a failing schedule is printed; FS_SCHEDULE_SEED=<seed> replays it.
 */
import { Storage } from "@google-cloud/storage";
import { FileStorageClient } from "../../client/src/index.js";
import { gcsStorageOptions } from "../../server/backends/gcs/gcs-backend.js";
import { startDaemon, type TestDaemon } from "../support/daemon.js";
import { startFakeGcs, type FakeGcs } from "../kit/fake-gcs.js";
import { startProxy, type TcpProxy } from "../kit/tcp-proxy.js";

const SCHEDULES = 120;
const KEYS = 4;
const BUCKET = "fs-schedules";

interface Node {
  name: string;
  daemon: TestDaemon;
  client: FileStorageClient;
  link: TcpProxy;
}

let gcs: FakeGcs;
let sdk: Storage;
const nodes: Node[] = [];

beforeAll(async () => {
  gcs = await startFakeGcs();
  sdk = new Storage(gcsStorageOptions({ apiEndpoint: gcs.url, projectId: "test", timeoutMs: 5000 }));
  for (const name of ["A", "B"]) {
    const link = await startProxy(gcs.port);
    const daemon = await startDaemon({
      GCS_BUCKET_NAME: BUCKET,
      GCS_PROJECT_ID: "test",
      GCS_API_ENDPOINT: link.url,
      MAX_RETRIES: "0",
      TIMEOUT_SECONDS: "2",
      // The test decides when each daemon replicates; the breaker reopens for trials quickly.
      REPLICATION_INTERVAL_MS: "3600000",
      GCS_BREAKER_FAILURES: "2",
      GCS_BREAKER_RESET_SECONDS: "0.05",
      HEALTH_CHECK_SECONDS: "3600",
      // Reads must show the tiers, not a copy in this daemon's memory.
      ENABLE_CACHE: "false",
    });
    const client = new FileStorageClient(daemon.address, { retries: 0, deadlineMs: 20_000 });
    nodes.push({ name, daemon, client, link });
  }
}, 60_000);

afterAll(async () => {
  for (const n of nodes) {
    n.client.close();
    await n.daemon.stop();
    await n.link.close();
  }
  await gcs?.stop();
});

/** A small seeded PRNG (mulberry32), so a failing schedule can be replayed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Truth = Map<string, string | null>;

async function drain(node: Node): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const { remaining } = await node.daemon.server.stack.replicate();
    if (remaining === 0) return;
    // An open breaker: wait for its reset, then the pass's first call is the trial.
    await new Promise((r) => setTimeout(r, 60));
  }
  throw new Error(`daemon ${node.name} did not drain its outbox`);
}

async function runSchedule(seed: number): Promise<{ ops: number; log: string[] }> {
  const rand = prng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const keys = Array.from({ length: KEYS }, (_, i) => `s${seed}/k${i}`);
  const truth: Truth = new Map();
  const log: string[] = [];
  let ops = 0;

  /** One operation on a random daemon; its acknowledgement updates the truth. */
  async function step(phase: string): Promise<void> {
    const node = pick(nodes);
    const key = pick(keys);
    ops++;
    if (rand() < 0.3) {
      await node.client.delete(key);
      truth.set(key, null);
      log.push(`${phase} ${node.name} delete ${key}`);
    } else {
      const value = `${phase}:${node.name}:${ops}:${seed}`;
      await node.client.store(key, value);
      truth.set(key, value);
      log.push(`${phase} ${node.name} put ${key}=${value}`);
    }
  }

  for (let i = Math.floor(rand() * 4); i > 0; i--) await step("before");
  // The outage: both daemons lose GCS, or only one (a partition).
  const down = pick([[nodes[0]!], [nodes[1]!], nodes]);
  for (const n of down) n.link.cut();
  log.push(`cut ${down.map((n) => n.name).join("+")}`);
  for (let i = 2 + Math.floor(rand() * 6); i > 0; i--) await step("during");
  for (const n of down) n.link.restore();
  // Random replication order, with writes between the drains.
  const order = rand() < 0.5 ? [nodes[0]!, nodes[1]!] : [nodes[1]!, nodes[0]!];
  for (let i = Math.floor(rand() * 3); i > 0; i--) await step("after");
  await drain(order[0]!);
  log.push(`drained ${order[0]!.name}`);
  for (let i = Math.floor(rand() * 3); i > 0; i--) await step("between");
  await drain(order[1]!);
  await drain(order[0]!);
  log.push(`drained ${order[1]!.name}, ${order[0]!.name}`);

  const bucket = sdk.bucket(BUCKET);
  for (const key of keys) {
    if (!truth.has(key)) continue;
    const want = truth.get(key)!;
    let inGcs: string | null = null;
    const [exists] = await bucket.file(key).exists();
    if (exists) {
      const [md] = await bucket.file(key).getMetadata();
      if (md.metadata?.["x-fs-deleted"] !== "1") inGcs = (await bucket.file(key).download())[0].toString();
    }
    const seen = { key, gcs: inGcs, A: await nodes[0]!.client.retrieve<string>(key), B: await nodes[1]!.client.retrieve<string>(key) };
    const expected = { key, gcs: want, A: want, B: want };
    if (JSON.stringify(seen) !== JSON.stringify(expected)) {
      throw new Error(`schedule seed ${seed} diverged:\n${log.join("\n")}\nexpected ${JSON.stringify(expected)}\ngot      ${JSON.stringify(seen)}`);
    }
  }
  for (const n of nodes) expect((await n.client.getStats()).pendingReplication).toBe(0);
  return { ops, log };
}

test(`${SCHEDULES} randomized schedules of two daemons through outages converge on the newest acknowledged operation`, async () => {
  const fixed = process.env.FS_SCHEDULE_SEED;
  const seeds = fixed ? [Number(fixed)] : Array.from({ length: SCHEDULES }, (_, i) => 1000 + i);
  let ops = 0;
  let sawDeleteWin = 0;
  for (const seed of seeds) {
    const result = await runSchedule(seed);
    ops += result.ops;
    if (result.log.some((l) => l.includes(" delete "))) sawDeleteWin++;
  }
  // The schedules exercised what they claim to.
  expect(ops).toBeGreaterThan(seeds.length * 3);
  expect(sawDeleteWin).toBeGreaterThan(seeds.length / 2);
}, 600_000);

test("a daemon restarted with its backlog still replays by the writes' origins (nothing kept in memory)", async () => {
  const [a, b] = nodes as [Node, Node];
  const key = "restart/k";
  // A writes during its partition, B writes the same key later (online), then deletes another.
  a.link.cut();
  await a.client.store(key, "A, during A's partition");
  await a.client.store("restart/gone", "A's copy");
  await b.client.store(key, "B, later, online");
  await b.client.delete("restart/gone");
  a.link.restore();
  // A restarts before replicating: its judgement must come from what was persisted.
  const storage = a.daemon.storagePath;
  a.client.close();
  await a.daemon.server.shutdown(2000);
  const daemon = await startDaemon({
    LOCAL_STORAGE_PATH: storage,
    GCS_BUCKET_NAME: BUCKET,
    GCS_PROJECT_ID: "test",
    GCS_API_ENDPOINT: a.link.url,
    MAX_RETRIES: "0",
    REPLICATION_INTERVAL_MS: "3600000",
    ENABLE_CACHE: "false",
  });
  const client = new FileStorageClient(daemon.address, { retries: 0 });
  try {
    expect((await client.getStats()).pendingReplication).toBe(2);
    await daemon.server.stack.replicate();
    expect((await client.getStats()).pendingReplication).toBe(0);
    expect(await client.retrieve(key)).toBe("B, later, online");
    expect(await client.retrieve("restart/gone")).toBeNull();
    expect(await b.client.retrieve("restart/gone")).toBeNull();
  } finally {
    client.close();
    await daemon.server.shutdown(2000);
  }
  // Put a working A back for the tests after this one.
  const again = await startDaemon({
    LOCAL_STORAGE_PATH: storage,
    GCS_BUCKET_NAME: BUCKET,
    GCS_PROJECT_ID: "test",
    GCS_API_ENDPOINT: a.link.url,
    MAX_RETRIES: "0",
    REPLICATION_INTERVAL_MS: "3600000",
    ENABLE_CACHE: "false",
  });
  a.daemon = again;
  a.client = new FileStorageClient(again.address, { retries: 0 });
}, 60_000);
