/**
 * GCS outages through the real gRPC server and the real fake-gcs-server
 * emulator (filesystem backend, so its data survives a stop and start):
 * fallback writes to the local tier with a durable outbox, replay when GCS
 * returns (puts and deletes), the conflict rule (newest write wins by write
 * time), a 1000-operation workload across an outage, start-up while GCS is
 * unreachable, and the circuit breaker's fast failures.
 *
 * Two ways to take GCS away from a daemon: stop the emulator (nobody reaches
 * GCS), or cut a TCP proxy between the daemon and the emulator (a partition:
 * the daemon cannot reach GCS, other writers can).
 */
import * as net from "node:net";
import * as path from "node:path";
import { randomBytes } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { protoPath } from "grpc-health-check";
import { Storage } from "@google-cloud/storage";
import Database from "better-sqlite3";
import { FileStorageClient } from "../../client/src/index.js";
import { gcsStorageOptions } from "../../server/backends/gcs/gcs-backend.js";
import { startDaemon, type TestDaemon } from "../support/daemon.js";
import { spawnDaemon } from "../kit/daemon-process.js";
import { hasLiveObject, liveNames } from "../support/gcs-objects.js";
import { freePort } from "../kit/free-port.js";
import { startProxy } from "../kit/tcp-proxy.js";
import { startFakeGcs, type FakeGcs } from "../kit/fake-gcs.js";
import { makeTempDir } from "../kit/temp-dir.js";
import { codeOf } from "../support/expect-failure.js";

let gcs: FakeGcs;
let sdk: Storage;
let bucketCounter = 0;
const cleanups: (() => Promise<void> | void)[] = [];

beforeAll(async () => {
  gcs = await startFakeGcs({ backend: "filesystem" });
  sdk = new Storage(gcsStorageOptions({ apiEndpoint: gcs.url, projectId: "test", timeoutMs: 5000 }));
});
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
  // Every test starts with GCS up.
  await gcs.start();
});
afterAll(async () => {
  await gcs?.stop();
});

const newBucket = () => `fs-outage-${process.pid}-${++bucketCounter}`;

/** Daemon settings for GCS mode with fast outage detection. */
function gcsEnv(bucket: string, endpoint: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    GCS_BUCKET_NAME: bucket,
    GCS_PROJECT_ID: "test",
    GCS_API_ENDPOINT: endpoint,
    MAX_RETRIES: "1",
    TIMEOUT_SECONDS: "2",
    REPLICATION_INTERVAL_MS: "200",
    // The default cache stays on: a copy waiting for replication is never cached,
    // so ObjectInfo after the drain must come from GCS.
    ...extra,
  };
}

async function daemonWithClient(env: Record<string, string>): Promise<{ daemon: TestDaemon; client: FileStorageClient }> {
  const daemon = await startDaemon(env);
  // No client retries: every answer is the daemon's first.
  const client = new FileStorageClient(daemon.address, { retries: 0, deadlineMs: 20_000 });
  cleanups.push(() => daemon.stop(), () => client.close());
  return { daemon, client };
}

async function waitFor(what: string, cond: () => Promise<boolean> | boolean, timeoutMs = 20_000): Promise<number> {
  const started = Date.now();
  for (;;) {
    if (await cond()) return Date.now() - started;
    if (Date.now() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}


const file = (bucket: string, key: string) => sdk.bucket(bucket).file(key);
const gcsBytes = async (bucket: string, key: string) => (await file(bucket, key).download())[0];
/** A live object (a deleted key keeps a tombstone, which is absence). */
const gcsHas = (bucket: string, key: string) => hasLiveObject(sdk.bucket(bucket), key);

async function healthStatus(address: string): Promise<string> {
  const def = protoLoader.loadSync(protoPath, { enums: String });
  const pkg = grpc.loadPackageDefinition(def) as unknown as { grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } } };
  const hc = new pkg.grpc.health.v1.Health(address, grpc.credentials.createInsecure()) as unknown as grpc.Client & {
    check: (req: object, cb: (err: Error | null, res: { status: string }) => void) => void;
  };
  try {
    return await new Promise<string>((resolve, reject) =>
      hc.check({ service: "filestorage.v1.FileStorageService" }, (err, res) => (err ? reject(err) : resolve(res.status))),
    );
  } finally {
    hc.close();
  }
}

/** A TCP server that accepts connections and never answers: GCS hanging rather than refusing. */
async function startBlackhole(): Promise<{ url: string; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on("error", () => undefined).on("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** The URL of a loopback port nobody listens on. */
const deadEndpoint = async (): Promise<string> => `http://127.0.0.1:${await freePort()}`;

/** Object rows in the daemon's local index (read-only peek at the fallback tier). */
function localRows(storagePath: string): number {
  const db = new Database(path.join(storagePath, "index.sqlite"), { readonly: true, fileMustExist: true });
  try {
    return Number((db.prepare("SELECT count(*) AS n FROM objects").get() as { n: number }).n);
  } finally {
    db.close();
  }
}

test("while GCS is stopped writes land locally and stay readable; when it returns the backlog drains into GCS", async () => {
  const bucket = newBucket();
  const { daemon, client } = await daemonWithClient(gcsEnv(bucket, gcs.url));
  const before = await client.store("a/before", "written before the outage");
  // Written by someone else: this daemon has never seen it, so it is in no cache.
  await file(bucket, "a/unseen").save("written directly to GCS", { preconditionOpts: { ifGenerationMatch: 0 } });
  expect(before.backend).toBe("gcs");

  await gcs.kill();
  const keys = Array.from({ length: 20 }, (_, i) => `a/k${String(i).padStart(2, "0")}`);
  for (const key of keys) {
    const info = await client.store(key, `value of ${key}`);
    expect(info).toMatchObject({ backend: "local", pendingReplication: true });
  }
  // A stream too: the local tier takes it whole, the replicator copies it as a stream.
  const big = randomBytes(2 * 1024 * 1024 + 7);
  expect(await client.upload("a/stream", [big.subarray(0, 1 << 20), big.subarray(1 << 20)])).toMatchObject({ backend: "local" });
  // An overwrite during the outage replaces the pending copy.
  await client.store("a/k00", "value of a/k00, second version");
  for (const key of keys) {
    const got = await client.retrieveWithInfo<string>(key);
    expect(got!.data).toBe(key === "a/k00" ? "value of a/k00, second version" : `value of ${key}`);
    expect(got!.info).toMatchObject({ backend: "local", pendingReplication: true });
  }
  expect(await client.exists("a/k05")).toBe(true);
  expect(await client.stat("a/k05")).toMatchObject({ backend: "local", pendingReplication: true });
  // A key only GCS holds cannot be answered: unavailable, never a false "missing"...
  expect(await codeOf(client.retrieve("a/unseen"))).toBe("UNAVAILABLE");
  // ...unless the cache holds a durable copy of it (a small store populates it).
  expect(await client.retrieve("a/before")).toBe("written before the outage");
  // Nor can a listing: the local tier alone would look complete and is not.
  expect(await codeOf(client.listKeys({ prefix: "a/" }))).toBe("UNAVAILABLE");

  expect(await healthStatus(daemon.address)).toBe("SERVING");
  const stats = await client.getStats();
  expect(stats.gcsAvailable).toBe(false);
  expect(stats.localFallbackEnabled).toBe(true);
  expect(stats.pendingReplication).toBe(keys.length + 1);
  expect(stats.oldestPendingAgeSeconds).toBeGreaterThanOrEqual(0);

  await gcs.start();
  const drainMs = await waitFor("the backlog to drain", async () => (await client.getStats()).pendingReplication === 0);
  console.log(`gcs-outage: ${keys.length + 1} pending writes drained ${drainMs} ms after the emulator answered again`);

  for (const key of keys) {
    const expected = key === "a/k00" ? "value of a/k00, second version" : `value of ${key}`;
    expect((await gcsBytes(bucket, key)).toString()).toBe(expected);
    const got = await client.retrieveWithInfo<string>(key);
    expect(got!.data).toBe(expected);
    expect(got!.info).toMatchObject({ backend: "gcs", pendingReplication: false });
  }
  expect(Buffer.compare(await gcsBytes(bucket, "a/stream"), big)).toBe(0);
  expect(Buffer.compare((await client.retrieve<Buffer>("a/stream"))!, big)).toBe(0);
  expect(await client.retrieve("a/before")).toBe("written before the outage");
  await waitFor("GetStats to say GCS is available", async () => (await client.getStats()).gcsAvailable);
  expect((await client.getStats()).oldestPendingAgeSeconds).toBe(0);
});

test("Health stays SERVING while GCS is stopped and fallback is on; the daemon's own check marks GCS unavailable", async () => {
  const { daemon, client } = await daemonWithClient(gcsEnv(newBucket(), gcs.url, { HEALTH_CHECK_SECONDS: "0.2" }));
  await gcs.kill();
  await client.store("h/x", "x");
  expect(await healthStatus(daemon.address)).toBe("SERVING");
  // One failed call is not an outage (GCS_BREAKER_FAILURES); the health check of the whole tier is.
  await waitFor("GetStats to say GCS is unavailable", async () => !(await client.getStats()).gcsAvailable, 5000);
  expect(await healthStatus(daemon.address)).toBe("SERVING");
});

test("with ENABLE_LOCAL_FALLBACK=false a write during the outage fails UNAVAILABLE and nothing is kept anywhere", async () => {
  const bucket = newBucket();
  const { daemon, client } = await daemonWithClient(gcsEnv(bucket, gcs.url, { ENABLE_LOCAL_FALLBACK: "false" }));
  await client.store("nf/ok", "stored while up");
  await gcs.kill();
  expect(await codeOf(client.store("nf/lost", "must not be kept"))).toBe("UNAVAILABLE");
  expect(await codeOf(client.delete("nf/ok"))).toBe("UNAVAILABLE");
  const stats = await client.getStats();
  expect(stats.localFallbackEnabled).toBe(false);
  expect(stats.pendingReplication).toBe(0);
  expect(localRows(daemon.storagePath)).toBe(0);

  await gcs.start();
  // Give a replicator (there should be nothing for it) time to act.
  await new Promise((r) => setTimeout(r, 500));
  expect(await gcsHas(bucket, "nf/lost")).toBe(false);
  expect((await gcsBytes(bucket, "nf/ok")).toString()).toBe("stored while up");
  expect(localRows(daemon.storagePath)).toBe(0);
});

test("deletes during the outage are recorded and replayed as deletes", async () => {
  const bucket = newBucket();
  const { client } = await daemonWithClient(gcsEnv(bucket, gcs.url));
  for (const k of ["d/1", "d/2", "d/3"]) await client.store(k, k);
  await gcs.kill();
  expect(await client.delete("d/1")).toBe(true);
  expect(await client.delete("d/2")).toBe(true);
  // Written and deleted during the outage: the delete wins.
  await client.store("d/4", "short-lived");
  expect(await client.delete("d/4")).toBe(true);
  expect(await client.exists("d/1")).toBe(false);
  expect(await client.retrieve("d/2")).toBeNull();
  expect(await client.exists("d/4")).toBe(false);
  expect((await client.getStats()).pendingReplication).toBe(3);

  await gcs.start();
  await waitFor("the backlog to drain", async () => (await client.getStats()).pendingReplication === 0);
  expect(await gcsHas(bucket, "d/1")).toBe(false);
  expect(await gcsHas(bucket, "d/2")).toBe(false);
  expect(await gcsHas(bucket, "d/4")).toBe(false);
  expect((await gcsBytes(bucket, "d/3")).toString()).toBe("d/3");
  expect(await client.exists("d/1")).toBe(false);
  expect(await client.retrieve("d/3")).toBe("d/3");
});

test("with the in-memory cache off, a delete of a key only GCS holds is recorded during the outage and replayed", async () => {
  const bucket = newBucket();
  const { client } = await daemonWithClient(gcsEnv(bucket, gcs.url, { ENABLE_CACHE: "false" }));
  await client.store("only-gcs/1", "kept in GCS alone");
  await client.store("only-gcs/2", "stays");
  expect(await client.stat("only-gcs/1")).toMatchObject({ backend: "gcs", pendingReplication: false });
  await gcs.kill();
  // Nothing local knows the key: the delete is still taken (a tombstone waits in the outbox).
  expect(await client.delete("only-gcs/1")).toBe(true);
  expect(await client.retrieve("only-gcs/1")).toBeNull();
  expect(await client.exists("only-gcs/1")).toBe(false);
  expect((await client.getStats()).pendingReplication).toBe(1);
  // A key only GCS holds still cannot be read during the outage: UNAVAILABLE, never a false miss.
  expect(await codeOf(client.retrieve("only-gcs/2"))).toBe("UNAVAILABLE");

  await gcs.start();
  await waitFor("the backlog to drain", async () => (await client.getStats()).pendingReplication === 0);
  expect(await gcsHas(bucket, "only-gcs/1")).toBe(false);
  expect(await client.retrieve("only-gcs/1")).toBeNull();
  expect(await client.retrieve("only-gcs/2")).toBe("stays");
});

/** A small deterministic PRNG (mulberry32), so a failing run can be replayed. */
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

test("a 1000-operation mixed workload across an outage: acknowledged writes and deletes all reach GCS, a newer direct write survives the replay", async () => {
  const bucket = newBucket();
  const proxy = await startProxy(gcs.port);
  cleanups.push(() => proxy.close());
  const { client } = await daemonWithClient(gcsEnv(bucket, proxy.url));
  const random = prng(20240611);

  const WORKERS = 4;
  const TOTAL = 1000;
  const KEYS = 160;
  // What every acknowledged operation says the key holds now (null = deleted).
  const expected = new Map<string, Buffer | null>();
  const failures: string[] = [];
  let started = 0;
  let completed = 0;
  let pendingPeak = 0;
  let restoredAt = 0;

  // The conflict keys, outside the workers' keys.
  await client.store("c/newer", "daemon, before the outage");

  const events = (async () => {
    await waitFor("300 operations", () => completed >= 300, 30_000);
    // GCS goes away for the daemon (and for everybody: the emulator stops).
    proxy.cut();
    await gcs.kill();
    // The daemon writes c/newer during the outage; someone writes it directly in GCS later.
    const local = await client.store("c/newer", "daemon, during the outage");
    expect(local.backend).toBe("local");
    await waitFor("550 operations", () => completed >= 550, 30_000);
    // GCS is back for everybody but the daemon, which is still cut off.
    await gcs.start();
    await file(bucket, "c/older").save(Buffer.from("direct, before the daemon's write"), { preconditionOpts: { ifGenerationMatch: 0 } });
    await new Promise((r) => setTimeout(r, 20));
    expect((await client.store("c/older", "daemon, after the direct write")).backend).toBe("local");
    await new Promise((r) => setTimeout(r, 20));
    const [md] = await file(bucket, "c/newer").getMetadata();
    await file(bucket, "c/newer").save(Buffer.from("direct, after the daemon's write"), {
      preconditionOpts: { ifGenerationMatch: Number(md.generation) },
    });
    pendingPeak = (await client.getStats()).pendingReplication;
    await waitFor("750 operations", () => completed >= 750, 30_000);
    proxy.restore();
    restoredAt = Date.now();
  })();

  async function worker(w: number): Promise<void> {
    const mine = Array.from({ length: KEYS / WORKERS }, (_, i) => `w/${w}/k${String(i).padStart(3, "0")}`);
    while (started < TOTAL) {
      const n = started++;
      const key = mine[Math.floor(random() * mine.length)]!;
      const present = expected.get(key) != null;
      const r = random();
      try {
        if (!present || r < 0.65) {
          // A new write, or an overwrite; small and incompressible so GCS holds exactly these bytes.
          const value = randomBytes(64 + Math.floor(random() * 400));
          await client.store(key, value);
          expected.set(key, value);
        } else {
          await client.delete(key);
          expected.set(key, null);
        }
      } catch (err) {
        // The key's state is unknown from here on; the test fails below anyway.
        failures.push(`op ${n} on ${key}: ${(err as Error).message}`);
        expected.delete(key);
      }
      completed++;
    }
  }

  await Promise.all([...Array.from({ length: WORKERS }, (_, w) => worker(w)), events]);
  expect(failures).toEqual([]);
  expect(pendingPeak).toBeGreaterThan(0);

  await waitFor("the backlog to drain", async () => (await client.getStats()).pendingReplication === 0, 30_000);
  console.log(
    `gcs-outage workload: a backlog of ${pendingPeak}+ entries was empty ${Date.now() - restoredAt} ms after GCS became ` +
      `reachable again (the workload went on meanwhile)`,
  );

  let writes = 0;
  let deletes = 0;
  for (const [key, value] of expected) {
    if (value === null) {
      deletes++;
      expect({ key, inGcs: await gcsHas(bucket, key) }).toEqual({ key, inGcs: false });
    } else {
      writes++;
      const atRest = await gcsBytes(bucket, key);
      expect({ key, same: Buffer.compare(atRest, value) === 0 }).toEqual({ key, same: true });
    }
  }
  expect(writes).toBeGreaterThan(50);
  expect(deletes).toBeGreaterThan(10);
  // Nothing beyond what the workload left.
  expect(await liveNames(sdk.bucket(bucket), "w/")).toEqual([...expected].filter(([, v]) => v !== null).map(([k]) => k).sort());

  // The conflict rule: the newest write by write time wins.
  expect((await gcsBytes(bucket, "c/newer")).toString()).toBe("direct, after the daemon's write");
  expect((await gcsBytes(bucket, "c/older")).toString()).toBe("daemon, after the direct write");
  // Written by someone else without our metadata: it reads back as bytes.
  expect(String(await client.retrieve<Buffer>("c/newer"))).toBe("direct, after the daemon's write");
  expect(await client.retrieve("c/older")).toBe("daemon, after the direct write");
});

test("the daemon starts while GCS is unreachable, serves from local, and replicates once GCS answers", async () => {
  const bucket = newBucket();
  await gcs.kill();
  const { daemon, client } = await daemonWithClient(gcsEnv(bucket, gcs.url));
  expect(await healthStatus(daemon.address)).toBe("SERVING");
  const info = await client.store("s/1", "written while degraded");
  expect(info).toMatchObject({ backend: "local", pendingReplication: true });
  expect(await client.retrieve("s/1")).toBe("written while degraded");
  expect((await client.getStats()).gcsAvailable).toBe(false);

  await gcs.start();
  await waitFor("the backlog to drain", async () => (await client.getStats()).pendingReplication === 0);
  // The bucket did not exist at start-up: the daemon created it once GCS answered.
  expect((await gcsBytes(bucket, "s/1")).toString()).toBe("written while degraded");
});

test("with ENABLE_LOCAL_FALLBACK=false the daemon refuses to start while GCS is unreachable, with one clear line", async () => {
  const storage = await makeTempDir("fs-outage-exit-");
  cleanups.push(() => storage.cleanup());
  const started = spawnDaemon({
    ...gcsEnv(newBucket(), await deadEndpoint(), { ENABLE_LOCAL_FALLBACK: "false", MAX_RETRIES: "0" }),
    LOCAL_STORAGE_PATH: storage.path,
  });
  const err = (await started.then(
    (d) => {
      cleanups.push(() => d.kill().then(() => undefined));
      throw new Error("the daemon started");
    },
    (e: Error) => e,
  )) as Error;
  const m = /daemon exited with (\S+) before serving: ([\s\S]*)$/.exec(err.message);
  expect(m).not.toBeNull();
  expect(m![1]).not.toBe("0");
  const lines = m![2]!.trim().split("\n");
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/GCS is unreachable.*ENABLE_LOCAL_FALLBACK=false/);
  expect(lines[0]).not.toMatch(/fs-outage-/); // no bucket name
});

test("once the breaker is open, a Store while GCS hangs answers far sooner than TIMEOUT_SECONDS", async () => {
  const hole = await startBlackhole();
  cleanups.push(() => hole.close());
  // The start-up probe meets the hanging GCS and opens the breaker.
  const { client } = await daemonWithClient(gcsEnv(newBucket(), hole.url, { MAX_RETRIES: "0", TIMEOUT_SECONDS: "2" }));
  expect((await client.getStats()).gcsAvailable).toBe(false);
  const timed = async (key: string) => {
    const t0 = performance.now();
    const info = await client.store(key, key);
    expect(info).toMatchObject({ backend: "local", pendingReplication: true });
    return performance.now() - t0;
  };
  const open: number[] = [];
  for (let i = 0; i < 5; i++) open.push(await timed(`b/open/${i}`));
  // After the reset timeout one call is the breaker's trial and waits for GCS
  // (usually the replicator's, which retries every REPLICATION_INTERVAL_MS;
  // else a Store or the health probe); the others fail over at once meanwhile.
  await new Promise((r) => setTimeout(r, 2100));
  const trial = await timed("b/trial");
  const reopened: number[] = [];
  for (let i = 0; i < 5; i++) reopened.push(await timed(`b/reopened/${i}`));
  const fmt = (ts: number[]) => ts.map((t) => t.toFixed(1)).join(", ");
  console.log(
    `breaker (GCS hanging, TIMEOUT_SECONDS=2): Store with the breaker open ${fmt(open)} ms; ` +
      `first Store after the reset timeout ${trial.toFixed(1)} ms; then ${fmt(reopened)} ms`,
  );
  for (const t of [...open, ...reopened]) expect(t).toBeLessThan(250);
  expect(trial).toBeLessThan(2000 + 1000);
  expect((await client.getStats()).gcsAvailable).toBe(false);
  expect((await client.getStats()).pendingReplication).toBe(11);
});
