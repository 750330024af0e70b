/**
 * Two daemons (each with its own LOCAL_STORAGE_PATH) on one GCS bucket, on
 * the real fake-gcs-server emulator: what a reader on daemon B sees after a
 * write through daemon A.
 *
 * What holds (README "Several daemons on one bucket"):
 * - ENABLE_CACHE=false: B reads GCS on every call and sees A's new version
 *   (and A's deletes) at once.
 * - The default in-memory cache: each daemon caches what it read, so B keeps
 *   serving the version it cached until CACHE_TTL_SECONDS have passed; A's
 *   write invalidates only A's cache.
 * - A shared Redis cache (CACHE_URL): A's write invalidates the shared entry,
 *   so B sees the new version at once.
 * - A write A made while it could not reach GCS lives on A's disk only: B
 *   sees the older GCS version until A's replicator copied it.
 * - The disk cache (on by default, DISK_CACHE_MAX_MB) never serves B an old
 *   version while GCS is up: every read of a cached copy checks its
 *   generation with GCS first, so A's overwrite or delete is seen by B's
 *   next read, whole or ranged (objects above CACHE_MAX_OBJECT_BYTES, which
 *   the in-memory cache does not hold; smaller ones follow its TTL rule as
 *   above, the disk cache underneath changes nothing there).
 */
import { createHash, randomBytes } from "node:crypto";
import { startProxy } from "../kit/tcp-proxy.js";
import { FileStorageClient } from "../../client/src/index.js";
import { startDaemon, type TestDaemon } from "../support/daemon.js";
import { startFakeGcs, type FakeGcs } from "../kit/fake-gcs.js";
import { startRedis, type RedisServer } from "../kit/redis.js";

let gcs: FakeGcs;
let bucketCounter = 0;
const cleanups: (() => Promise<void> | void)[] = [];

beforeAll(async () => {
  gcs = await startFakeGcs();
});
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});
afterAll(async () => {
  await gcs?.stop();
});

interface Pair {
  a: FileStorageClient;
  b: FileStorageClient;
  daemonA: TestDaemon;
  daemonB: TestDaemon;
}

/** Daemons A and B on one new bucket; `extraB` overrides for B only (e.g. its GCS endpoint). */
async function pair(env: Record<string, string>, extraA: Record<string, string> = {}): Promise<Pair> {
  const common = {
    GCS_BUCKET_NAME: `fs-two-${process.pid}-${++bucketCounter}`,
    GCS_PROJECT_ID: "test",
    GCS_API_ENDPOINT: gcs.url,
    MAX_RETRIES: "1",
    TIMEOUT_SECONDS: "2",
    REPLICATION_INTERVAL_MS: "200",
    ...env,
  };
  // Each daemon gets its own temp LOCAL_STORAGE_PATH from startDaemon.
  const daemonA = await startDaemon({ ...common, ...extraA });
  const daemonB = await startDaemon(common);
  const a = new FileStorageClient(daemonA.address, { retries: 0 });
  const b = new FileStorageClient(daemonB.address, { retries: 0 });
  cleanups.push(() => daemonA.stop(), () => daemonB.stop(), () => a.close(), () => b.close());
  expect(daemonA.storagePath).not.toBe(daemonB.storagePath);
  return { a, b, daemonA, daemonB };
}

async function waitFor(what: string, cond: () => Promise<boolean>, timeoutMs = 20_000): Promise<number> {
  const started = Date.now();
  for (;;) {
    if (await cond()) return Date.now() - started;
    if (Date.now() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test("ENABLE_CACHE=false: B sees A's new version and A's delete at once", async () => {
  const { a, b } = await pair({ ENABLE_CACHE: "false" });
  const v1 = await a.store("k", "v1");
  expect(await b.retrieve("k")).toBe("v1");
  const v2 = await a.store("k", "v2");
  expect(await b.retrieve("k")).toBe("v2");
  // Both daemons report the one GCS generation.
  expect((await b.stat("k"))!.generation).toBe(v2.generation);
  expect(v2.generation).toBeGreaterThan(v1.generation);
  // B's precondition on that generation holds; A's old one fails now.
  await b.store("k", "v3 from B", { ifGenerationMatch: v2.generation });
  expect(await a.retrieve("k")).toBe("v3 from B");
  await expect(a.store("k", "stale", { ifGenerationMatch: v2.generation })).rejects.toMatchObject({ code: 9 }); // FAILED_PRECONDITION
  expect(await a.delete("k")).toBe(true);
  expect(await b.exists("k")).toBe(false);
  expect(await b.retrieve("k")).toBeNull();
});

test("default in-memory cache: B serves the version it cached until CACHE_TTL_SECONDS pass", async () => {
  const ttlSeconds = 2;
  const { a, b } = await pair({ CACHE_TTL_SECONDS: String(ttlSeconds) });
  await a.store("k", "v1");
  const cachedFrom = Date.now();
  expect(await b.retrieve("k")).toBe("v1"); // B caches v1
  const writtenAt = Date.now();
  await a.store("k", "v2");
  expect(await a.retrieve("k")).toBe("v2"); // A's own cache was invalidated by its write
  expect(await b.retrieve("k")).toBe("v1"); // B still serves its cached copy
  await waitFor("B to see v2", async () => (await b.retrieve("k")) === "v2", (ttlSeconds + 5) * 1000);
  const seenAt = Date.now();
  console.log(
    `two daemons, in-memory cache: B saw A's new version ${seenAt - writtenAt} ms after A's write ` +
      `(CACHE_TTL_SECONDS=${ttlSeconds}; B had cached the old one just before)`,
  );
  // Not before B's entry expired, and soon after.
  expect(seenAt - cachedFrom).toBeGreaterThanOrEqual(ttlSeconds * 1000 - 20);
  expect(seenAt - writtenAt).toBeLessThan((ttlSeconds + 2) * 1000);
  // A delete on A leaves B's cached copy readable until the TTL too.
  expect(await b.retrieve("k")).toBe("v2");
  await a.delete("k");
  expect(await b.retrieve("k")).toBe("v2");
  await waitFor("B to see the delete", async () => (await b.retrieve("k")) === null, (ttlSeconds + 5) * 1000);
});

describe("shared Redis cache", () => {
  let redis: RedisServer;
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis?.stop();
  });

  test("B sees A's new version and A's delete at once", async () => {
    const { a, b } = await pair({ CACHE_URL: redis.url, CACHE_TTL_SECONDS: "60" });
    await a.store("k", "v1");
    expect(await b.retrieve("k")).toBe("v1");
    expect(await b.retrieve("k")).toBe("v1"); // now certainly served from the shared cache
    await a.store("k", "v2");
    expect(await b.retrieve("k")).toBe("v2");
    await b.store("k", "v3 from B");
    expect(await a.retrieve("k")).toBe("v3 from B");
    expect(await a.delete("k")).toBe(true);
    expect(await b.retrieve("k")).toBeNull();
    expect(await b.exists("k")).toBe(false);
  });
});


test("a write A made while cut off from GCS is invisible to B until A replicated it", async () => {
  const proxy = await startProxy(gcs.port);
  cleanups.push(() => proxy.close());
  const { a, b } = await pair({ ENABLE_CACHE: "false" }, { GCS_API_ENDPOINT: proxy.url });
  await a.store("k", "v1");
  proxy.cut();
  const local = await a.store("k", "v2 during A's outage");
  expect(local).toMatchObject({ backend: "local", pendingReplication: true });
  expect(await a.retrieve("k")).toBe("v2 during A's outage");
  expect(await b.retrieve("k")).toBe("v1");
  proxy.restore();
  await waitFor("A's backlog to drain", async () => (await a.getStats()).pendingReplication === 0);
  expect(await b.retrieve("k")).toBe("v2 during A's outage");
});

describe("disk caches on both daemons (the default)", () => {
  const MiB = 1024 * 1024;
  const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
  async function read(c: FileStorageClient, key: string, opts: { offset?: number; limit?: number } = {}): Promise<Buffer | null> {
    try {
      const { stream } = await c.download(key, opts);
      const parts: Buffer[] = [];
      for await (const chunk of stream as AsyncIterable<Buffer>) parts.push(chunk);
      return Buffer.concat(parts);
    } catch (err) {
      if ((err as { codeName?: string }).codeName === "NOT_FOUND") return null;
      throw err;
    }
  }

  test("after A overwrites or deletes a key, B's next read never returns the old bytes from its disk cache", async () => {
    const { a, b } = await pair({ DISK_CACHE_ON_WRITE: "true" });
    let current = randomBytes(2 * MiB + 1);
    await a.upload("big", [current]);
    for (let round = 0; round < 5; round++) {
      // B reads (and caches on disk) the current version, twice: the second one from its disk cache.
      expect(sha((await read(b, "big"))!)).toBe(sha(current));
      expect(sha((await read(b, "big"))!)).toBe(sha(current));
      expect((await b.getStats()).diskCacheHits).toBeGreaterThan(round);
      // The same size every time: only the generation tells the versions apart.
      const next = randomBytes(2 * MiB + 1);
      await a.upload("big", [next]);
      // B's very next read (whole in even rounds, ranged in odd ones): the new bytes.
      const offset = MiB + round;
      if (round % 2 === 0) expect(sha((await read(b, "big"))!)).toBe(sha(next));
      else expect((await read(b, "big", { offset, limit: 1000 }))!.equals(next.subarray(offset, offset + 1000))).toBe(true);
      current = next;
    }
    expect(sha((await read(b, "big"))!)).toBe(sha(current));
    await a.delete("big");
    expect(await read(b, "big")).toBeNull();
    expect(await b.stat("big")).toBeNull();
    expect((await b.getStats()).diskCacheEntries).toBe(0);
  });

  test("with a shared Redis too: B's next read after A's overwrite is the new version, small or large", async () => {
    const redis = await startRedis();
    cleanups.push(() => redis.stop());
    const { a, b } = await pair({ CACHE_URL: redis.url, CACHE_TTL_SECONDS: "60" });
    await a.store("small", "v1");
    await a.upload("large", [randomBytes(2 * MiB)]);
    expect(await b.retrieve("small")).toBe("v1");
    await read(b, "large");
    await a.store("small", "v2");
    const v2 = randomBytes(2 * MiB);
    await a.upload("large", [v2]);
    expect(await b.retrieve("small")).toBe("v2");
    expect(sha((await read(b, "large"))!)).toBe(sha(v2));
  });
});
