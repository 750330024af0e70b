/**
 * The shared Redis cache (CACHE_URL) through the real gRPC server, with a real
 * redis-server and the real fake-gcs-server: what holds when several
 * deployments share one Redis and someone else can write to it.
 *
 * - Entries are namespaced by store (bucket, or the local folder's id): two
 *   deployments never serve each other's objects for the same key.
 * - Redis holds stored bytes (the cache is under the codec): with encryption
 *   on, no plaintext reaches Redis, and reads (whole, ranges, Stat) are right.
 * - Every frame is authenticated with the store's key (kept in the store): a
 *   planted, altered, moved or cross-namespace frame is a miss, counted in
 *   fs_cache_rejected_frames_total, and the real object is served.
 * - The replicator writes through the cached primary: its copies invalidate.
 * - GCS unreachable at start-up: the cache is bypassed until the store's key
 *   is read from the bucket, then used.
 */
import { crc32c } from "@node-rs/crc32";
import { createClient, RESP_TYPES } from "@redis/client";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { FileStorageClient } from "../../client/src/index.js";
import { decodeFrame, encodeFrame } from "../../server/cache/cache-frame.js";
import { CACHE_KEY_OBJECT, parseCacheKey } from "../../server/cache/cache-key.js";
import { cacheNamespace } from "../../server/cache/cache-namespace.js";
import { recordFromJson, recordToJson } from "../../server/cache/cache-store.js";
import { startDaemon, type TestDaemon } from "../support/daemon.js";
import { startFakeGcs, type FakeGcs } from "../kit/fake-gcs.js";
import { startRedis, type RedisServer } from "../kit/redis.js";
import { startProxy } from "../kit/tcp-proxy.js";

const KiB = 1024;
const ENCRYPTION_KEY = randomBytes(32).toString("base64");

let gcs: FakeGcs;
let redis: RedisServer;
let redisClient: ReturnType<typeof openRedis>;
/** Plain client for SCAN: with blob strings mapped to Buffer, the SCAN cursor would never read as "0". */
let scanClient: ReturnType<typeof createClient>;
let bucketCounter = 0;
const cleanups: (() => Promise<void> | void)[] = [];

function openRedis(url: string) {
  return createClient({ url }).withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer });
}

beforeAll(async () => {
  [gcs, redis] = await Promise.all([startFakeGcs(), startRedis()]);
  redisClient = openRedis(redis.url);
  scanClient = createClient({ url: redis.url });
  await Promise.all([redisClient.connect(), scanClient.connect()]);
});
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});
afterAll(async () => {
  await redisClient?.close();
  await scanClient?.close();
  await Promise.all([gcs?.stop(), redis?.stop()]);
});

const newBucket = () => `fs-shared-${process.pid}-${++bucketCounter}`;

/** A daemon on `bucket` (or local-only without) with the shared cache, and its client. */
async function daemon(env: Record<string, string>): Promise<{ d: TestDaemon; c: FileStorageClient }> {
  const d = await startDaemon({
    GCS_PROJECT_ID: "test",
    GCS_API_ENDPOINT: gcs.url,
    CACHE_URL: redis.url,
    CACHE_TTL_SECONDS: "60",
    MAX_RETRIES: "0",
    TIMEOUT_SECONDS: "2",
    REPLICATION_INTERVAL_MS: "200",
    ...env,
  });
  const c = new FileStorageClient(d.address, { retries: 0 });
  cleanups.push(() => d.stop(), () => c.close());
  return { d, c };
}

async function rejectedFrames(d: TestDaemon): Promise<number> {
  const metric = d.server.metrics.registry.getSingleMetric("fs_cache_rejected_frames_total");
  return metric ? (await metric.get()).values.reduce((n, v) => n + v.value, 0) : 0;
}

/** Every value in Redis, by key. */
async function allRedisValues(): Promise<Map<string, Buffer>> {
  const values = new Map<string, Buffer>();
  for await (const keys of scanClient.scanIterator({ MATCH: "*" })) {
    for (const key of keys) {
      const value = await redisClient.get(key);
      if (value !== null) values.set(key, value as unknown as Buffer);
    }
  }
  return values;
}

const entryKey = (namespace: string, key: string) => `${namespace}:v:${key}`;

async function frameOf(redisKey: string): Promise<Buffer> {
  const frame = (await redisClient.get(redisKey)) as unknown as Buffer | null;
  if (frame === null) throw new Error(`no frame under ${redisKey}`);
  return frame;
}

/** The record JSON of a frame (readable without the key: only its MAC is secret). */
function recordInFrame(frame: Buffer) {
  const jsonLength = frame.readUInt32BE(1 + 32 + 8);
  return recordFromJson(frame.subarray(45, 45 + jsonLength).toString("utf8"));
}

async function waitFor(what: string, cond: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const started = Date.now();
  while (!(await cond())) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The bucket's cache key object, read straight from the emulator. */
async function bucketCacheKey(bucket: string): Promise<Buffer | undefined> {
  const res = await fetch(`${gcs.url}/storage/v1/b/${bucket}/o/${encodeURIComponent(CACHE_KEY_OBJECT)}?alt=media`);
  const text = await res.text();
  return res.ok ? parseCacheKey(text) : undefined;
}

describe("two deployments on one Redis", () => {
  test("two buckets: neither serves the other's object for the same key", async () => {
    const bucketX = newBucket();
    const bucketY = newBucket();
    const x = await daemon({ GCS_BUCKET_NAME: bucketX });
    const y = await daemon({ GCS_BUCKET_NAME: bucketY });
    await x.c.store("same/key", "from X");
    await y.c.store("same/key", "from Y");
    await x.c.store("only/in-x", "X alone");
    for (let i = 0; i < 3; i++) {
      expect(await x.c.retrieve("same/key")).toBe("from X");
      expect(await y.c.retrieve("same/key")).toBe("from Y");
      expect(await x.c.retrieve("only/in-x")).toBe("X alone");
      expect(await y.c.retrieve("only/in-x")).toBeNull();
      expect(await y.c.exists("only/in-x")).toBe(false);
    }
    // Both really use the shared cache, each in its own namespace.
    expect((await x.c.getStats()).cacheHits).toBeGreaterThan(0);
    expect((await y.c.getStats()).cacheHits).toBeGreaterThan(0);
    const keys = [...(await allRedisValues()).keys()];
    expect(keys).toContain(entryKey(cacheNamespace({ bucket: bucketX }), "same/key"));
    expect(keys).toContain(entryKey(cacheNamespace({ bucket: bucketY }), "same/key"));
    expect(keys.some((k) => k.includes(bucketX) || k.includes(bucketY))).toBe(false); // bucket names are hashed
    expect(await rejectedFrames(x.d)).toBe(0);
    expect(await rejectedFrames(y.d)).toBe(0);
  });

  test("two local-only folders: neither serves the other's object for the same key", async () => {
    const folder = await fs.mkdtemp(path.join(os.tmpdir(), "fs-shared-local-"));
    cleanups.push(() => fs.rm(folder, { recursive: true, force: true }));
    const x = await daemon({ LOCAL_STORAGE_PATH: folder });
    const y = await daemon({});
    await x.c.store("same/key", "from X");
    await y.c.store("same/key", "from Y");
    await x.c.store("only/in-x", "X alone");
    for (let i = 0; i < 3; i++) {
      expect(await x.c.retrieve("same/key")).toBe("from X");
      expect(await y.c.retrieve("same/key")).toBe("from Y");
      expect(await y.c.retrieve("only/in-x")).toBeNull();
      expect(await x.c.retrieve("only/in-x")).toBe("X alone");
    }
    expect((await x.c.getStats()).cacheHits).toBeGreaterThan(0);
    expect((await y.c.getStats()).cacheHits).toBeGreaterThan(0);
    // The folder keeps its namespace and key across a restart: the frames X left are served again.
    await x.d.stop();
    const restarted = await daemon({ LOCAL_STORAGE_PATH: folder });
    expect(await restarted.c.retrieve("same/key")).toBe("from X");
    const stats = await restarted.c.getStats();
    expect(stats.cacheHits).toBeGreaterThan(0);
    expect(stats.cacheMisses).toBe(0);
    expect(await rejectedFrames(restarted.d)).toBe(0);
  });
});

describe("encryption on", () => {
  test("Redis holds no plaintext, and whole reads, ranges and Stat through the cache are right", async () => {
    const bucket = newBucket();
    const env = { GCS_BUCKET_NAME: bucket, ENABLE_ENCRYPTION: "true", ENCRYPTION_KEY, CACHE_MAX_OBJECT_BYTES: String(512 * KiB) };
    const a = await daemon(env);
    const b = await daemon(env);
    const marker = `PLAINTEXT-MARKER-${randomBytes(6).toString("hex")}`;
    // Compressed and encrypted (text above the threshold), encrypted only (random bytes), and small.
    const text = `${marker} `.repeat(2000);
    const binary = Buffer.concat([randomBytes(70 * KiB), Buffer.from(marker), randomBytes(130 * KiB)]);
    const small = `${marker} small`;
    await a.c.store("enc/text", text, { contentType: "text/plain" });
    await a.c.store("enc/binary", binary);
    await a.c.store("enc/small", small);

    for (const reader of [a, b, b]) {
      expect(await reader.c.retrieve("enc/text")).toBe(text);
      expect((await reader.c.retrieve<Buffer>("enc/binary"))!.equals(binary)).toBe(true);
      expect(await reader.c.retrieve("enc/small")).toBe(small);
      // Ranges: across a 64 KiB segment boundary of the encrypted-only object, and inside the gzip stream.
      const range = await reader.c.download("enc/binary", { offset: 60 * KiB, limit: 20 * KiB });
      const parts: Buffer[] = [];
      for await (const c of range.stream) parts.push(c as Buffer);
      expect(Buffer.concat(parts).equals(binary.subarray(60 * KiB, 80 * KiB))).toBe(true);
      const textRange = await reader.c.download("enc/text", { offset: 5000, limit: 100 });
      const textParts: Buffer[] = [];
      for await (const c of textRange.stream) textParts.push(c as Buffer);
      expect(Buffer.concat(textParts).toString()).toBe(text.slice(5000, 5100));
      const info = await reader.c.stat("enc/binary");
      expect(info).toMatchObject({ size: binary.length, crc32c: crc32c(binary), encrypted: true });
      expect(info!.storedSize).toBeGreaterThan(binary.length);
      expect(await reader.c.stat("enc/text")).toMatchObject({ size: text.length, compressed: true, encrypted: true });
    }
    // B read A's frames from Redis (hits), so frames verified across daemons of the store.
    expect((await b.c.getStats()).cacheHits).toBeGreaterThan(3);
    const values = await allRedisValues();
    for (const [key, value] of values) {
      expect({ key, hasMarker: value.includes(marker) }).toEqual({ key, hasMarker: false });
    }
    const namespace = cacheNamespace({ bucket });
    expect([...values.keys()]).toEqual(expect.arrayContaining(["enc/text", "enc/binary", "enc/small"].map((k) => entryKey(namespace, k))));
  });
});

describe("authenticated frames", () => {
  test("a forged frame under the daemon's key is not served: the stored object is, and the frame is counted", async () => {
    const bucket = newBucket();
    const { d, c } = await daemon({ GCS_BUCKET_NAME: bucket });
    await c.store("forge/k", "the real object");
    expect(await c.retrieve("forge/k")).toBe("the real object");
    const redisKey = entryKey(cacheNamespace({ bucket }), "forge/k");
    const genuine = await frameOf(redisKey);
    const record = recordInFrame(genuine);

    const fake = Buffer.from("forged bytes!!!");
    const fakeRecord = { ...record, size: fake.length, storedSize: fake.length, crc32c: crc32c(fake) };
    const json = Buffer.from(recordToJson(fakeRecord));
    const noMac = Buffer.from(encodeFrame({ record: fakeRecord, bytes: fake }, { key: randomBytes(32), redisKey, cachedUntil: Date.now() + 60_000 }));
    noMac.fill(0, 1, 33);
    const forgeries: [string, Buffer][] = [
      ["signed with another key", encodeFrame({ record: fakeRecord, bytes: fake }, { key: randomBytes(32), redisKey, cachedUntil: Date.now() + 60_000 })],
      ["no MAC (zeros)", noMac],
      ["the unauthenticated layout [length][record][bytes]", Buffer.concat([Buffer.from([0, 0, 0, json.length]), json, fake])],
      ["the genuine frame with its bytes altered", Buffer.concat([genuine.subarray(0, genuine.length - 4), Buffer.from("XXXX")])],
      ["the genuine frame truncated", genuine.subarray(0, 20)],
      ["garbage", randomBytes(200)],
    ];
    for (const [what, frame] of forgeries) {
      await redisClient.set(redisKey, frame, { PX: 60_000 });
      const before = await rejectedFrames(d);
      expect({ what, value: await c.retrieve("forge/k") }).toEqual({ what, value: "the real object" });
      expect({ what, stat: (await c.stat("forge/k"))?.size }).toEqual({ what, stat: "the real object".length });
      expect({ what, rejected: (await rejectedFrames(d)) > before }).toEqual({ what, rejected: true });
    }
    // The miss refilled the entry with the genuine frame: served again as a hit.
    const hits = (await c.getStats()).cacheHits;
    expect(await c.retrieve("forge/k")).toBe("the real object");
    expect((await c.getStats()).cacheHits).toBeGreaterThan(hits);
  });

  test("a frame copied to another deployment's namespace, or to another key, is rejected", async () => {
    const bucketX = newBucket();
    const bucketY = newBucket();
    const x = await daemon({ GCS_BUCKET_NAME: bucketX });
    const y = await daemon({ GCS_BUCKET_NAME: bucketY });
    await x.c.store("k", "X's k");
    await y.c.store("k", "Y's k");
    await x.c.store("other", "X's other");
    expect(await x.c.retrieve("k")).toBe("X's k");
    expect(await y.c.retrieve("k")).toBe("Y's k");
    const nsX = cacheNamespace({ bucket: bucketX });
    const nsY = cacheNamespace({ bucket: bucketY });

    await redisClient.set(entryKey(nsY, "k"), await frameOf(entryKey(nsX, "k")), { PX: 60_000 });
    const beforeY = await rejectedFrames(y.d);
    expect(await y.c.retrieve("k")).toBe("Y's k");
    expect(await rejectedFrames(y.d)).toBeGreaterThan(beforeY);

    // Within one store: X's frame of "other" moved under "k".
    expect(await x.c.retrieve("other")).toBe("X's other");
    await redisClient.set(entryKey(nsX, "k"), await frameOf(entryKey(nsX, "other")), { PX: 60_000 });
    const beforeX = await rejectedFrames(x.d);
    expect(await x.c.retrieve("k")).toBe("X's k");
    expect(await rejectedFrames(x.d)).toBeGreaterThan(beforeX);
  });
});

describe("daemons of one store", () => {
  test("daemons starting together on a new bucket converge on one cache key", async () => {
    const bucket = newBucket();
    const [a, b, c] = await Promise.all([0, 1, 2].map(() => daemon({ GCS_BUCKET_NAME: bucket })));
    const key = await bucketCacheKey(bucket);
    expect(key).toBeDefined();
    for (const [writer, reader] of [[a, b], [b, c], [c, a]] as const) {
      const name = `converge/${randomBytes(4).toString("hex")}`;
      await writer.c.store(name, name);
      const hits = (await reader.c.getStats()).cacheHits;
      expect(await reader.c.retrieve(name)).toBe(name); // served from the frame the writer's put cached
      expect((await reader.c.getStats()).cacheHits).toBeGreaterThan(hits);
      const redisKey = entryKey(cacheNamespace({ bucket }), name);
      expect(decodeFrame(await frameOf(redisKey), { key: key!, redisKey, objectKey: name }).ok).toBe(true);
    }
    for (const { d } of [a, b, c]) expect(await rejectedFrames(d)).toBe(0);
  });

  test("a copy the replicator makes invalidates the shared entry: B sees it at once", async () => {
    const ttlSeconds = 4;
    const bucket = newBucket();
    const proxy = await startProxy(gcs.port);
    cleanups.push(() => proxy.close());
    const a = await daemon({ GCS_BUCKET_NAME: bucket, GCS_API_ENDPOINT: proxy.url, CACHE_TTL_SECONDS: String(ttlSeconds) });
    const b = await daemon({ GCS_BUCKET_NAME: bucket, CACHE_TTL_SECONDS: String(ttlSeconds) });
    await a.c.store("k", "v1");
    proxy.cut();
    expect(await a.c.store("k", "v2 during A's outage")).toMatchObject({ backend: "local", pendingReplication: true });
    // Once the floor A's write left has expired, B caches the GCS copy (v1) again.
    await new Promise((r) => setTimeout(r, ttlSeconds * 1000 + 500));
    expect(await b.c.retrieve("k")).toBe("v1");
    const hits = (await b.c.getStats()).cacheHits;
    expect(await b.c.retrieve("k")).toBe("v1");
    expect((await b.c.getStats()).cacheHits).toBeGreaterThan(hits); // v1 is in Redis
    proxy.restore();
    await waitFor("A's backlog to drain", async () => (await a.c.getStats()).pendingReplication === 0);
    // Well within v1's cache lifetime: only the replicator's invalidation makes B read GCS.
    expect(await b.c.retrieve("k")).toBe("v2 during A's outage");
  }, 30_000);

  test("GCS unreachable at start-up: reads work once it returns, and the cache is used once the key loaded", async () => {
    const bucket = newBucket();
    const b = await daemon({ GCS_BUCKET_NAME: bucket }); // creates the bucket and its cache key
    await b.c.store("k1", "v1");
    expect(await b.c.retrieve("k1")).toBe("v1");
    const key = await bucketCacheKey(bucket);
    expect(key).toBeDefined();

    const proxy = await startProxy(gcs.port);
    cleanups.push(() => proxy.close());
    proxy.cut();
    const a = await daemon({ GCS_BUCKET_NAME: bucket, GCS_API_ENDPOINT: proxy.url });
    expect(await a.c.store("k2", "v2 while A cannot reach GCS")).toMatchObject({ backend: "local" });
    expect(await a.c.retrieve("k2")).toBe("v2 while A cannot reach GCS");
    // Without GCS (nor its key) A serves nothing that only GCS and Redis hold.
    await expect(a.c.retrieve("k1")).rejects.toMatchObject({ code: 14 }); // UNAVAILABLE
    expect((await a.c.getStats()).cacheHits).toBe(0);

    proxy.restore();
    await waitFor("A to read k1 from GCS", async () => (await a.c.retrieve("k1").catch(() => null)) === "v1");
    await waitFor("A to serve k1 from the shared cache", async () => {
      const hits = (await a.c.getStats()).cacheHits;
      expect(await a.c.retrieve("k1")).toBe("v1");
      return (await a.c.getStats()).cacheHits > hits;
    });
    expect(await rejectedFrames(a.d)).toBe(0); // A loaded B's key: B's frames verify
    await waitFor("A's backlog to drain", async () => (await a.c.getStats()).pendingReplication === 0);
    expect(await b.c.retrieve("k2")).toBe("v2 while A cannot reach GCS");
    expect(await bucketCacheKey(bucket)).toEqual(key); // A did not replace the key
  });
});
