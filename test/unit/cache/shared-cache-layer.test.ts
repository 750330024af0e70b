/**
 * The shared cache's parts below the server, with a real redis-server: the
 * authenticated frame, the store key (created once, shared, loaded lazily),
 * the bypass while the key is unknown, and the codec over a cache that holds
 * stored bytes (whole reads, ranges and heads of compressed and encrypted
 * objects answered from the cache with the records the codec expects).
 * The same guarantees through the real server: test/rpc/shared-cache.test.ts.
 */
import { crc32c } from "@node-rs/crc32";
import { randomBytes, randomUUID } from "node:crypto";
import { Readable } from "node:stream";
import type { Backend, PutMeta } from "../../../server/backends/backend.js";
import { createCacheBackend, type CacheBackend } from "../../../server/cache/cache-backend.js";
import { decodeFrame, encodeFrame } from "../../../server/cache/cache-frame.js";
import { CACHE_KEY_OBJECT, createLazyCacheKey, fixedCacheKey, loadOrCreateCacheKey, parseCacheKey, type CacheKey } from "../../../server/cache/cache-key.js";
import { cacheNamespace } from "../../../server/cache/cache-namespace.js";
import { createCodecBackend, createKeyring } from "../../../server/codec/codec-backend.js";
import { Code, StorageError } from "../../../server/storage-error.js";
import { createMemoryBackend, createMemoryBucket } from "../../support/memory-backend.js";
import { startRedis, type RedisServer } from "../../kit/redis.js";

const KiB = 1024;
const META: PutMeta = { kind: "BYTES", contentType: "application/octet-stream", metadata: {} };

async function readAll(body: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function* once(data: Buffer): AsyncGenerator<Uint8Array> {
  yield data;
}

async function read(backend: Backend, key: string, range?: { offset: number; length?: number }) {
  const got = await backend.get(key, range && { range });
  return got && { record: got.record, data: await readAll(got.body) };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let redis: RedisServer;
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis?.stop();
});
const opened: CacheBackend[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((c) => c.close()));
});

/** A cache holding stored bytes in Redis under `namespace`, with a known key or a key source. */
async function sharedCache(inner: Backend, namespace: string, key: Buffer | CacheKey) {
  const cache = await createCacheBackend(inner, {
    maxBytes: 4 << 20,
    ttlMs: 60_000,
    maxObjectBytes: 1 << 20,
    holds: "stored",
    shared: { url: redis.url, namespace, key: Buffer.isBuffer(key) ? fixedCacheKey(key) : key },
  });
  opened.push(cache);
  return cache;
}

describe("frame", () => {
  const key = randomBytes(32);
  const redisKey = "fs:0123456789abcdef:v:a/b";
  const bytes = randomBytes(1000);
  const record = {
    key: "a/b", generation: 12345678901234567n, kind: "BYTES" as const, contentType: "x/y", metadata: { tag: ["t"] },
    size: 1000, crc32c: crc32c(bytes), storedSize: 1000, encoding: {}, createdAt: 1, updatedAt: 2, tier: "gcs" as const, pendingReplication: false, origin: { writtenAt: 1000, writer: "w" },
  };
  const frame = encodeFrame({ record, bytes }, { key, redisKey, cachedUntil: Date.now() + 60_000 });

  test("round-trips record and bytes under its key", () => {
    const verdict = decodeFrame(frame, { key, redisKey, objectKey: "a/b" });
    expect(verdict.ok).toBe(true);
    if (!verdict.ok) return;
    expect(verdict.entry.record).toEqual(record);
    expect(verdict.entry.bytes.equals(bytes)).toBe(true);
  });

  test("a flipped bit anywhere, another key, another Redis key, truncation or a past lifetime is refused", () => {
    for (const at of [0, 1, 20, 33, 40, 41, 44, 45, 100, frame.length - 1]) {
      const bad = Buffer.from(frame);
      bad[at] ^= 0x01;
      expect({ at, ok: decodeFrame(bad, { key, redisKey, objectKey: "a/b" }).ok }).toEqual({ at, ok: false });
    }
    expect(decodeFrame(frame, { key: randomBytes(32), redisKey, objectKey: "a/b" })).toEqual({ ok: false, reason: "bad-mac" });
    expect(decodeFrame(frame, { key, redisKey: "fs:fedcba9876543210:v:a/b", objectKey: "a/b" })).toEqual({ ok: false, reason: "bad-mac" });
    expect(decodeFrame(frame, { key, redisKey: "fs:0123456789abcdef:v:a/c", objectKey: "a/c" })).toEqual({ ok: false, reason: "bad-mac" });
    for (const length of [0, 10, 44, 45, frame.length - 1]) {
      expect(decodeFrame(frame.subarray(0, length), { key, redisKey, objectKey: "a/b" }).ok).toBe(false);
    }
    expect(decodeFrame(frame, { key, redisKey, objectKey: "a/b", now: Date.now() + 61_000 })).toEqual({ ok: false, reason: "expired" });
  });

  test("namespaces differ by store and never contain the bucket name", () => {
    const a = cacheNamespace({ bucket: "prod-bucket" });
    expect(a).toMatch(/^fs:[0-9a-f]{16}$/);
    expect(a).toBe(cacheNamespace({ bucket: "prod-bucket" }));
    expect(a).not.toBe(cacheNamespace({ bucket: "prod-bucket2" }));
    expect(a).not.toBe(cacheNamespace({ storeId: "prod-bucket" }));
  });
});

describe("store key", () => {
  test("concurrent loaders on one store end with one key, kept in the store's reserved object", async () => {
    const bucket = createMemoryBucket();
    const keys = await Promise.all(Array.from({ length: 5 }, () => loadOrCreateCacheKey(createMemoryBackend(bucket))));
    for (const k of keys) expect(k.equals(keys[0]!)).toBe(true);
    expect(keys[0]!.length).toBe(32);
    expect(parseCacheKey(bucket.objects.get(CACHE_KEY_OBJECT)!.bytes.toString()).equals(keys[0]!)).toBe(true);
    expect(() => parseCacheKey("not a key")).toThrow(StorageError);
  });

  test("a lazy key retries at most every retryMs, from lookups, without making them wait", async () => {
    let calls = 0;
    let available = false;
    const key = randomBytes(32);
    const lazy = createLazyCacheKey(
      async () => {
        calls++;
        if (!available) throw new StorageError(Code.Unavailable, "GCS is down");
        return key;
      },
      { retryMs: 200 },
    );
    expect(await lazy.loadNow()).toBe(false);
    for (let i = 0; i < 20; i++) expect(lazy.current()).toBeUndefined();
    expect(calls).toBe(1);
    await sleep(250);
    expect(lazy.current()).toBeUndefined(); // starts an attempt, does not wait for it
    await sleep(10);
    expect(calls).toBe(2);
    available = true;
    expect(lazy.current()).toBeUndefined();
    expect(calls).toBe(2);
    await sleep(250);
    lazy.current();
    await sleep(10);
    expect(lazy.current()?.equals(key)).toBe(true);
    expect(calls).toBe(3);
  });
});

describe("bypass while the store key is unknown", () => {
  test("no lookup is served and no fill made, but invalidations still reach Redis; the cache is used once the key loads", async () => {
    const namespace = `t-${randomUUID()}`;
    const key = randomBytes(32);
    const bucket = createMemoryBucket();
    const innerA = createMemoryBackend(bucket);
    const innerB = createMemoryBackend(bucket);
    const a = await sharedCache(innerA, namespace, key);
    let known = false;
    const lazy = createLazyCacheKey(async () => {
      if (!known) throw new StorageError(Code.Unavailable, "GCS is down");
      return key;
    }, { retryMs: 100 });
    const b = await sharedCache(innerB, namespace, lazy);

    await a.put("k", once(Buffer.from("v1")), META); // cached by A's put
    expect((await read(b, "k"))?.data.toString()).toBe("v1");
    expect(b.cacheStats()).toMatchObject({ hits: 0, misses: 1, entries: 0 });
    expect(innerB.calls.get).toBe(1);

    await innerB.put("j", once(Buffer.from("only j")), META);
    expect((await read(b, "j"))?.data.toString()).toBe("only j");
    const getsOfA = innerA.calls.get;
    expect((await read(a, "j"))?.data.toString()).toBe("only j");
    expect(innerA.calls.get).toBe(getsOfA + 1); // B's read filled nothing

    // B's write invalidates the entry A cached: A never serves v1 again.
    await b.put("k", once(Buffer.from("v2")), META);
    expect((await read(a, "k"))?.data.toString()).toBe("v2");
    await b.delete("k");
    expect(await read(a, "k")).toBeUndefined();

    known = true;
    await sleep(150);
    await read(b, "j"); // starts the key load
    await sleep(20);
    await read(b, "j"); // fills (A's read filled it already, or this one does)
    const hits = b.cacheStats().hits;
    expect((await read(b, "j"))?.data.toString()).toBe("only j");
    expect(b.cacheStats().hits).toBe(hits + 1);
  });
});

describe("codec over a cache of stored bytes", () => {
  test.each([
    { compress: true, encrypt: true },
    { compress: false, encrypt: true },
    { compress: true, encrypt: false },
  ])("whole reads, ranges and heads come from the cache and match the codec over the tier (%o)", async (mode) => {
    const keyring = createKeyring({ primary: randomBytes(32) });
    const options = {
      compression: { enabled: mode.compress, thresholdBytes: 100 },
      encryption: mode.encrypt ? keyring : undefined,
    };
    const bucket = createMemoryBucket();
    const tier = createMemoryBackend(bucket);
    const cached = createCodecBackend(await sharedCache(tier, `t-${randomUUID()}`, randomBytes(32)), options);
    const direct = createCodecBackend(createMemoryBackend(bucket), options);
    const text = Buffer.from(Array.from({ length: 6000 }, (_, i) => `line ${i % 50} of some text\n`).join("")).subarray(0, 150 * KiB);
    const meta = { ...META, contentType: mode.compress ? "text/plain" : "application/octet-stream" };
    const written = await cached.put("obj", once(text), meta);
    expect(written).toMatchObject({ size: text.length, crc32c: crc32c(text) });
    expect(written.encoding).toEqual({ ...(mode.compress ? { compression: "gzip" } : {}), ...(mode.encrypt ? { encryption: expect.anything() } : {}) });

    const getsAfterPut = tier.calls.get;
    const whole = await read(cached, "obj");
    expect(whole?.data.equals(text)).toBe(true);
    expect(whole?.record).toEqual((await read(direct, "obj"))?.record);
    expect(await cached.head("obj")).toEqual(await direct.head("obj"));
    for (const [offset, length] of [[0, 10], [65_530, 20], [70_000, 65_536], [text.length - 5, 100], [text.length, 0]] as const) {
      const got = await read(cached, "obj", { offset, length });
      expect({ offset, ok: got?.data.equals(text.subarray(offset, offset + length)) }).toEqual({ offset, ok: true });
    }
    // Every read above was answered by the cache (the put cached the stored bytes).
    expect(tier.calls.get).toBe(getsAfterPut);
  });
});
