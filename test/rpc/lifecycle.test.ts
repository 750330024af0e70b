/**
 * Lifecycle rules (LIFECYCLE_RULES) through the real gRPC server: an object
 * under a rule's prefix expires max_age_seconds after its last write. It is
 * absent to callers from then on (Retrieve, Stat, Exists, ListKeys), Stat
 * shows when that will be, and the sweeper removes it from the local tier (by
 * its index) and from GCS (the bucket sweep, real fake-gcs-server), quota
 * bytes included; a copy written during an outage ages out too and is never
 * resurrected by its replay. Keys outside every prefix are untouched.
 */
import { Storage } from "@google-cloud/storage";
import { FileStorageClient } from "../../client/src/index.js";
import { gcsStorageOptions } from "../../server/backends/gcs/gcs-backend.js";
import { startDaemon, type TestDaemon } from "../support/daemon.js";
import { hasLiveObject, liveNames } from "../support/gcs-objects.js";
import { startFakeGcs, type FakeGcs } from "../kit/fake-gcs.js";
import { startProxy } from "../kit/tcp-proxy.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

async function daemonWithClient(env: Record<string, string>): Promise<{ daemon: TestDaemon; client: FileStorageClient }> {
  // Sweeps only when the test asks (stack.sweepExpired), so what a read sees is the rule, not a sweep.
  const daemon = await startDaemon({ EXPIRY_SWEEP_SECONDS: "86400", GCS_SWEEP_SECONDS: "2592000", ...env });
  const client = new FileStorageClient(daemon.address, { retries: 0 });
  cleanups.push(() => daemon.stop(), () => client.close());
  return { daemon, client };
}

const rules = (list: { prefix: string; max_age_seconds: number }[]) => JSON.stringify(list);

test("on the local tier: absent once aged, Stat shows when, the sweep removes it by the index, a rewrite starts its age again", async () => {
  const { daemon, client } = await daemonWithClient({
    LIFECYCLE_RULES: rules([
      { prefix: "temp/", max_age_seconds: 2 },
      { prefix: "temp/short/", max_age_seconds: 1 },
    ]),
    QUOTAS: JSON.stringify({ "temp/": 100 }),
  });
  const written = Date.now();
  await client.store("temp/a", "x".repeat(60));
  await client.store("temp/short/b", "short-lived");
  await client.store("keep/a", "kept");
  await client.store("tempest", "not under temp/");
  const expiresAt = (await client.stat("temp/a"))!.expiresAt!.getTime();
  expect(expiresAt).toBeGreaterThanOrEqual(written + 2000 - 5);
  expect(expiresAt).toBeLessThan(Date.now() + 2000);
  // The shortest rule that applies wins.
  expect((await client.stat("temp/short/b"))!.expiresAt!.getTime()).toBeLessThan(expiresAt);
  expect((await client.stat("keep/a"))!.expiresAt).toBeUndefined();

  await sleep(expiresAt - Date.now() + 200);
  expect(await client.retrieve("temp/a")).toBeNull();
  expect(await client.exists("temp/short/b")).toBe(false);
  expect(await client.stat("temp/a")).toBeNull();
  expect((await client.listKeys({ prefix: "" })).keys).toEqual(["keep/a", "tempest"]);

  // Still in the index until swept; the sweep finds it under the rule's prefix and removes it.
  const local = daemon.server.stack.parts.local;
  expect(await local.head("temp/a")).toBeDefined();
  expect(await daemon.server.stack.sweepExpired({ gcs: false })).toBe(2);
  expect(await local.head("temp/a")).toBeUndefined();
  expect(await local.head("temp/short/b")).toBeUndefined();
  expect(await client.retrieve("keep/a")).toBe("kept");
  expect(await client.retrieve("tempest")).toBe("not under temp/");

  // The quota got its 60 bytes back: 90 more fit under temp/'s 100.
  await client.store("temp/a", "y".repeat(90));
  // A new write is young again.
  expect(await client.retrieve("temp/a")).toBe("y".repeat(90));
  expect(await daemon.server.stack.sweepExpired({ gcs: false })).toBe(0);
});

test("an object's own expires_at still applies under a rule when it comes first", async () => {
  const { client } = await daemonWithClient({ LIFECYCLE_RULES: rules([{ prefix: "", max_age_seconds: 3600 }]) });
  const soon = new Date(Date.now() + 800);
  await client.store("own", "v", { expiresAt: soon });
  expect((await client.stat("own"))!.expiresAt!.getTime()).toBe(soon.getTime());
  await client.store("ruled", "v");
  const ruled = (await client.stat("ruled"))!.expiresAt!.getTime();
  expect(ruled - Date.now()).toBeGreaterThan(3500_000);
  await sleep(1000);
  expect(await client.retrieve("own")).toBeNull();
  expect(await client.retrieve("ruled")).toBe("v");
});

describe("with GCS", () => {
  let gcs: FakeGcs;
  let sdk: Storage;
  let n = 0;
  beforeAll(async () => {
    gcs = await startFakeGcs();
    sdk = new Storage(gcsStorageOptions({ apiEndpoint: gcs.url, projectId: "test", timeoutMs: 5000 }));
  });
  afterAll(async () => {
    await gcs?.stop();
  });

  const gcsEnv = (endpoint: string, bucket: string) => ({
    GCS_BUCKET_NAME: bucket,
    GCS_PROJECT_ID: "test",
    GCS_API_ENDPOINT: endpoint,
    MAX_RETRIES: "1",
    TIMEOUT_SECONDS: "2",
    REPLICATION_INTERVAL_MS: "200",
    ENABLE_CACHE: "false",
    LIFECYCLE_RULES: rules([{ prefix: "cache/", max_age_seconds: 2 }]),
  });

  test("the bucket sweep replaces aged objects on GCS by tombstones; a copy written during an outage ages out and its replay brings nothing back", async () => {
    const bucket = `fs-lifecycle-${process.pid}-${++n}`;
    const proxy = await startProxy(gcs.port);
    cleanups.push(() => proxy.close());
    const { daemon, client } = await daemonWithClient(gcsEnv(proxy.url, bucket));
    await client.store("cache/on-gcs", "aging");
    await client.store("keep/on-gcs", "kept");
    proxy.cut();
    await client.store("cache/offline", "written during the outage");
    expect(await client.stat("cache/offline")).toMatchObject({ pendingReplication: true });
    const expiresAt = (await client.stat("cache/offline"))!.expiresAt!.getTime();

    await sleep(expiresAt - Date.now() + 200);
    expect(await client.retrieve("cache/offline")).toBeNull();
    // Swept during the outage: the local copy goes, a pending delete takes its place.
    expect(await daemon.server.stack.sweepExpired({ gcs: false })).toBe(1);

    proxy.restore();
    await daemon.server.stack.replicate();
    // GCS answers again (the breaker's trial): the bucket sweep ages out what GCS holds.
    for (let i = 0; i < 50 && daemon.server.stack.status().breaker !== "closed"; i++) {
      await sleep(100);
      await daemon.server.stack.replicate();
    }
    expect(await daemon.server.stack.sweepExpired({ gcs: true })).toBe(1);
    expect(await liveNames(sdk.bucket(bucket))).toEqual(["keep/on-gcs"]);
    expect(await hasLiveObject(sdk.bucket(bucket), "cache/offline")).toBe(false);
    expect(daemon.server.stack.status().pending.count).toBe(0);
    expect((await client.listKeys({ prefix: "" })).keys).toEqual(["keep/on-gcs"]);
  });

  test("a second daemon with the same rules sees the same expiry: the write's own time counts, not when a copy was made", async () => {
    const bucket = `fs-lifecycle-${process.pid}-${++n}`;
    const a = await daemonWithClient(gcsEnv(gcs.url, bucket));
    await a.client.store("cache/shared", "v");
    const fromA = (await a.client.stat("cache/shared"))!.expiresAt!.getTime();
    await sleep(500);
    const b = await daemonWithClient(gcsEnv(gcs.url, bucket));
    expect((await b.client.stat("cache/shared"))!.expiresAt!.getTime()).toBe(fromA);
  });
});
