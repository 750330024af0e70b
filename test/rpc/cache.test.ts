/**
 * The cache through the real gRPC server: GetStats counters move as reads
 * hit and miss, the byte bound holds with many objects, objects above the
 * admission limit are never cached, ENABLE_CACHE=false turns it off, and two
 * daemons on one bucket sharing a real Redis never serve each other's stale
 * copies.
 */
import { randomBytes } from "node:crypto";
import { FileStorageClient } from "../../client/src/index.js";
import { startDaemon, type TestDaemon } from "../support/daemon.js";
import { startFakeGcs, type FakeGcs } from "../kit/fake-gcs.js";
import { startRedis, type RedisServer } from "../kit/redis.js";

const KiB = 1024;

/** Byte equality without jest's element-by-element diff (seconds on 200 KiB). */
function expectBytes(actual: unknown, expected: Buffer): void {
  expect(Buffer.isBuffer(actual)).toBe(true);
  expect((actual as Buffer).equals(expected)).toBe(true);
}
const MiB = 1024 * KiB;

describe("in-memory cache", () => {
  let daemon: TestDaemon;
  let client: FileStorageClient;

  beforeAll(async () => {
    daemon = await startDaemon({
      MAX_CACHE_SIZE_MB: "1",
      CACHE_MAX_OBJECT_BYTES: String(256 * KiB),
      ENABLE_COMPRESSION: "false",
    });
    client = new FileStorageClient(daemon.address);
  });
  afterAll(async () => {
    client.close();
    await daemon.stop();
  });

  test("a stored small object is cached; reads hit; delete and overwrite invalidate", async () => {
    const before = await client.getStats();
    expect(before.cacheEnabled).toBe(true);
    const v1 = randomBytes(1000);
    await client.store("stats/a", v1);
    const afterStore = await client.getStats();
    expect(afterStore.cacheEntries).toBe(before.cacheEntries + 1);
    expect(afterStore.cacheBytes).toBeGreaterThanOrEqual(before.cacheBytes + 1000);

    expectBytes(await client.retrieve("stats/a"), v1);
    const afterRead = await client.getStats();
    expect(afterRead.cacheHits).toBeGreaterThan(afterStore.cacheHits);
    expect(afterRead.cacheMisses).toBe(afterStore.cacheMisses);

    const v2 = randomBytes(1200);
    await client.store("stats/a", v2);
    expectBytes(await client.retrieve("stats/a"), v2);
    expect((await client.getStats()).cacheEntries).toBe(afterStore.cacheEntries);

    expect(await client.delete("stats/a")).toBe(true);
    const afterDelete = await client.getStats();
    expect(afterDelete.cacheEntries).toBe(before.cacheEntries);
    expect(await client.retrieve("stats/a")).toBeNull();
    expect((await client.getStats()).cacheMisses).toBeGreaterThan(afterDelete.cacheMisses);
  });

  test("the byte bound is never exceeded, and every object still reads back right", async () => {
    const bound = 1 * MiB;
    const values = new Map<string, Buffer>();
    for (let i = 0; i < 30; i++) {
      const key = `bound/${String(i).padStart(2, "0")}`;
      const value = randomBytes(200 * KiB);
      values.set(key, value);
      await client.store(key, value);
      const s = await client.getStats();
      expect(s.cacheBytes).toBeLessThanOrEqual(bound);
    }
    for (const [key, value] of values) {
      expectBytes(await client.retrieve(key), value);
      const s = await client.getStats();
      expect(s.cacheBytes).toBeLessThanOrEqual(bound);
      expect(s.cacheEntries).toBeLessThanOrEqual(5);
    }
    const s = await client.getStats();
    expect(s.cacheEntries).toBeGreaterThan(0);
    await client.deleteMany({ prefix: "bound/" });
  });

  test("objects above CACHE_MAX_OBJECT_BYTES are never cached; one at the limit is", async () => {
    await client.deleteMany({ prefix: "bound/" }).catch(() => 0);
    const big = randomBytes(256 * KiB + 1);
    const s0 = await client.getStats();
    await client.store("admit/big", big);
    const s1 = await client.getStats();
    expect(s1.cacheEntries).toBe(s0.cacheEntries);
    for (let i = 0; i < 2; i++) expectBytes(await client.retrieve("admit/big"), big);
    const s2 = await client.getStats();
    expect(s2.cacheEntries).toBe(s0.cacheEntries);
    expect(s2.cacheBytes).toBe(s1.cacheBytes);
    expect(s2.cacheMisses).toBeGreaterThanOrEqual(s1.cacheMisses + 2);
    expect(s2.cacheHits).toBe(s1.cacheHits);

    // A download stream of it does not fill the cache either.
    const { stream } = await client.download("admit/big");
    for await (const _ of stream) void _;
    expect((await client.getStats()).cacheEntries).toBe(s0.cacheEntries);

    const atLimit = randomBytes(256 * KiB);
    await client.store("admit/at-limit", atLimit);
    expect((await client.getStats()).cacheEntries).toBe(s0.cacheEntries + 1);
  });

  test("a miss fills the cache once the object was read whole", async () => {
    // Evict by writing other objects, then read: a miss, and the next read hits.
    const value = randomBytes(100 * KiB);
    await client.store("fill/x", value);
    for (let i = 0; i < 12; i++) await client.store(`fill/evict-${i}`, randomBytes(200 * KiB));
    const s0 = await client.getStats();
    expectBytes(await client.retrieve("fill/x"), value);
    const s1 = await client.getStats();
    expect(s1.cacheMisses).toBeGreaterThan(s0.cacheMisses);
    expectBytes(await client.retrieve("fill/x"), value);
    const s2 = await client.getStats();
    expect(s2.cacheHits).toBeGreaterThan(s1.cacheHits);
    expect(s2.cacheMisses).toBe(s1.cacheMisses);
  });
});

test("ENABLE_CACHE=false: no cache, nothing counted", async () => {
  const daemon = await startDaemon({ ENABLE_CACHE: "false" });
  const client = new FileStorageClient(daemon.address);
  try {
    await client.store("off/a", "hello");
    expect(await client.retrieve("off/a")).toBe("hello");
    expect(await client.retrieve("off/a")).toBe("hello");
    const s = await client.getStats();
    expect(s.cacheEnabled).toBe(false);
    expect([s.cacheEntries, s.cacheBytes, s.cacheHits, s.cacheMisses]).toEqual([0, 0, 0, 0]);
  } finally {
    client.close();
    await daemon.stop();
  }
});

describe("two daemons, one bucket, one Redis cache", () => {
  let gcs: FakeGcs;
  let redis: RedisServer;
  let a: TestDaemon;
  let b: TestDaemon;
  let ca: FileStorageClient;
  let cb: FileStorageClient;

  beforeAll(async () => {
    [gcs, redis] = await Promise.all([startFakeGcs(), startRedis()]);
    const env = {
      GCS_BUCKET_NAME: "shared-cache-bucket",
      GCS_PROJECT_ID: "test",
      GCS_API_ENDPOINT: gcs.url,
      CACHE_URL: redis.url,
      MAX_RETRIES: "0",
    };
    a = await startDaemon(env);
    b = await startDaemon(env);
    ca = new FileStorageClient(a.address);
    cb = new FileStorageClient(b.address);
  });
  afterAll(async () => {
    ca?.close();
    cb?.close();
    await a?.stop();
    await b?.stop();
    await Promise.all([gcs?.stop(), redis?.stop()]);
  });

  test("a write through A is never served stale by B", async () => {
    for (let round = 0; round < 5; round++) {
      const key = `shared/obj-${round}`;
      await ca.store(key, `v1-${round}`);
      expect(await cb.retrieve(key)).toBe(`v1-${round}`);
      // Now cached (by A's write, or B's read): B serves it from Redis.
      const hitsBefore = (await cb.getStats()).cacheHits;
      expect(await cb.retrieve(key)).toBe(`v1-${round}`);
      expect((await cb.getStats()).cacheHits).toBeGreaterThan(hitsBefore);

      await ca.store(key, `v2-${round}`);
      expect(await cb.retrieve(key)).toBe(`v2-${round}`);
      expect((await cb.stat(key))?.size).toBe(`v2-${round}`.length);
    }
  });

  test("a delete through A is seen by B at once", async () => {
    await ca.store("shared/del", "alive");
    expect(await cb.retrieve("shared/del")).toBe("alive");
    expect(await cb.retrieve("shared/del")).toBe("alive");
    expect(await ca.delete("shared/del")).toBe(true);
    expect(await cb.retrieve("shared/del")).toBeNull();
    expect(await cb.exists("shared/del")).toBe(false);
    expect(await cb.stat("shared/del")).toBeNull();
    // Re-created through A: B sees the new one, not a cached "deleted".
    await ca.store("shared/del", "reborn");
    expect(await cb.retrieve("shared/del")).toBe("reborn");
  });

  test("binary objects too, read by Retrieve and by RetrieveStream", async () => {
    const v1 = randomBytes(300 * KiB);
    const v2 = randomBytes(300 * KiB);
    await cb.store("shared/bin", v1);
    expectBytes(await ca.retrieve("shared/bin"), v1);
    await cb.store("shared/bin", v2);
    const { stream } = await ca.download("shared/bin");
    const parts: Buffer[] = [];
    for await (const c of stream) parts.push(c as Buffer);
    expectBytes(Buffer.concat(parts), v2);
  });
});
