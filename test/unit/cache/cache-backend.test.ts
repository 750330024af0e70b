import { randomBytes, randomUUID } from "node:crypto";
import { Readable } from "node:stream";
import { createClient } from "@redis/client";
import type { Backend, PutMeta } from "../../../server/backends/backend.js";
import { createCacheBackend, type CacheBackend, type CacheOptions } from "../../../server/cache/cache-backend.js";
import { fixedCacheKey } from "../../../server/cache/cache-key.js";
import { createMemoryBackend as createMapBackend, createMemoryBucket as createMapBucket, type MemoryBucket as MapBucket } from "../../support/memory-backend.js";
import { startRedis, type RedisServer } from "../../kit/redis.js";

const META: PutMeta = { kind: "BYTES", contentType: "application/octet-stream", metadata: {} };

async function readAll(body: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function* once(data: Buffer): AsyncGenerator<Uint8Array> {
  yield data;
}

async function put(backend: Backend, key: string, data: Buffer, meta: Partial<PutMeta> = {}) {
  return backend.put(key, once(data), { ...META, ...meta });
}

async function read(backend: Backend, key: string, opts?: Parameters<Backend["get"]>[1]) {
  const got = await backend.get(key, opts);
  return got && { record: got.record, data: await readAll(got.body) };
}

/** Wraps `inner`; after `hold()`, the bodies of its gets end only once the returned release is called. */
function gated(inner: Backend): { backend: Backend; hold(): () => void } {
  let gate: Promise<void> | undefined;
  const backend: Backend = {
    ...inner,
    async get(key, opts) {
      const held = gate;
      const got = await inner.get(key, opts);
      if (!got) return undefined;
      async function* body() {
        yield* got!.body;
        await held;
      }
      return { record: got.record, body: Readable.from(body(), { objectMode: false }) };
    },
  };
  return {
    backend,
    hold() {
      let release!: () => void;
      gate = new Promise<void>((r) => (release = r));
      return () => {
        gate = undefined;
        release();
      };
    },
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One store's shared-cache options: its namespace and its frame key. */
function sharedStore(namespace: string, key = fixedCacheKey(randomBytes(32))) {
  return { url: redis.url, namespace, key };
}

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

describe.each(["memory", "redis"] as const)("cache backend (%s store)", (mode) => {
  let namespace: string;
  beforeEach(() => {
    namespace = `t-${randomUUID()}`;
  });

  async function open(inner: Backend, opts: Partial<CacheOptions> = {}): Promise<CacheBackend> {
    const cache = await createCacheBackend(inner, {
      maxBytes: 1024 * 1024,
      ttlMs: 60_000,
      maxObjectBytes: 64 * 1024,
      shared: mode === "redis" ? sharedStore(namespace) : undefined,
      ...opts,
    });
    opened.push(cache);
    return cache;
  }

  test("counts hits and misses; a hit does not reach the inner backend", async () => {
    const inner = createMapBackend();
    const cache = await open(inner);
    await put(inner, "a", Buffer.from("hello")); // behind the cache's back: not cached
    expect((await read(cache, "a"))?.data.toString()).toBe("hello");
    expect(cache.cacheStats()).toMatchObject({ hits: 0, misses: 1, entries: 1 });
    expect((await read(cache, "a"))?.data.toString()).toBe("hello");
    expect(await cache.head("a")).toMatchObject({ key: "a", size: 5 });
    expect(cache.cacheStats()).toMatchObject({ hits: 2, misses: 1 });
    expect(inner.calls.get).toBe(1);
    // A range of a cached object is sliced from the cache.
    expect((await read(cache, "a", { range: { offset: 1, length: 3 } }))?.data.toString()).toBe("ell");
    expect(inner.calls.get).toBe(1);
    expect(await read(cache, "missing")).toBeUndefined();
    expect(cache.cacheStats().misses).toBe(2);
  });

  test("never holds more than maxBytes while writing and reading objects of random sizes", async () => {
    const maxBytes = 64 * 1024;
    const inner = createMapBackend();
    const cache = await open(inner, { maxBytes, maxObjectBytes: 20 * 1024 });
    for (let i = 0; i < 150; i++) {
      const key = `k${i % 37}`;
      if (i % 3 === 0) await put(cache, key, randomBytes(Math.floor(Math.random() * 24 * 1024)));
      else if (i % 3 === 1) await put(inner, key, randomBytes(Math.floor(Math.random() * 24 * 1024)));
      else await read(cache, key);
      await read(cache, key);
      expect(cache.cacheStats().bytes).toBeLessThanOrEqual(maxBytes);
    }
    expect(cache.cacheStats().entries).toBeGreaterThan(0);
    if (mode === "redis") {
      // What this daemon left in Redis is bounded too (evicted entries are unlinked).
      await sleep(50);
      const client = createClient({ url: redis.url });
      await client.connect();
      try {
        let total = 0;
        for await (const keys of client.scanIterator({ MATCH: `${namespace}:v:*` })) {
          for (const key of keys) total += await client.strLen(key);
        }
        expect(total).toBeGreaterThan(0);
        expect(total).toBeLessThanOrEqual(maxBytes);
      } finally {
        await client.close();
      }
    }
  });

  test("never caches objects above the admission limit", async () => {
    const inner = createMapBackend();
    const cache = await open(inner, { maxObjectBytes: 1000 });
    await put(inner, "big", randomBytes(1001));
    await put(cache, "big2", randomBytes(1001));
    await put(cache, "small", randomBytes(1000));
    for (let i = 0; i < 2; i++) {
      expect((await read(cache, "big"))?.data.length).toBe(1001);
      expect((await read(cache, "big2"))?.data.length).toBe(1001);
    }
    expect(inner.calls.get).toBe(4);
    expect(cache.cacheStats().entries).toBe(1); // "small", populated by its put
  });

  test("expires entries after the TTL and never serves an expired record", async () => {
    const inner = createMapBackend();
    const cache = await open(inner, { ttlMs: 300 });
    await put(inner, "a", Buffer.from("v1"));
    await read(cache, "a");
    await read(cache, "a");
    expect(inner.calls.get).toBe(1);
    await sleep(400);
    await read(cache, "a");
    expect(inner.calls.get).toBe(2);

    await put(cache, "short", Buffer.from("soon gone"), { expiresAt: Date.now() + 150 });
    expect((await read(cache, "short"))?.data.toString()).toBe("soon gone");
    await sleep(200);
    // Past expiresAt the cache never answers from its copy, nor caches it again (else the second
    // read would be a hit): each read reaches the inner tier. Hiding expired objects from callers
    // is the engine's job, tested through the server.
    const before = inner.calls.get;
    await read(cache, "short");
    await read(cache, "short");
    expect(inner.calls.get).toBe(before + 2);
  });

  test("a put invalidates and a delete invalidates", async () => {
    const inner = createMapBackend();
    const cache = await open(inner);
    await put(inner, "a", Buffer.from("v1"));
    expect((await read(cache, "a"))?.data.toString()).toBe("v1");
    const v2 = await put(cache, "a", Buffer.from("v2"));
    const got = await read(cache, "a");
    expect(got?.data.toString()).toBe("v2");
    expect(got?.record.generation).toBe(v2.generation);
    expect(await cache.delete("a")).toBe(true);
    expect(await read(cache, "a")).toBeUndefined();
    expect(await cache.head("a")).toBeUndefined();
    expect(cache.cacheStats().entries).toBe(0);
  });

  test("a failing put leaves no cache entry and the old value is served", async () => {
    const inner = createMapBackend();
    const cache = await open(inner);
    await put(inner, "a", Buffer.from("old"));
    await read(cache, "a");
    expect(cache.cacheStats().entries).toBe(1);
    async function* failing() {
      yield Buffer.from("new and partial");
      throw new Error("source broke");
    }
    await expect(cache.put("a", failing(), META)).rejects.toThrow("source broke");
    expect(cache.cacheStats().entries).toBe(0);
    expect((await read(cache, "a"))?.data.toString()).toBe("old");
    expect((await read(cache, "a"))?.data.toString()).toBe("old");
  });

  test("a read that raced a write does not put the older version back", async () => {
    const inner = createMapBackend();
    const { backend, hold } = gated(inner);
    const cache = await open(backend);
    await put(inner, "a", Buffer.from("v1"));
    const release = hold();
    const slow = await cache.get("a"); // v1 read from inner; its stream ends after the write
    await put(cache, "a", Buffer.from("v2"));
    release();
    expect((await readAll(slow!.body)).toString()).toBe("v1");
    expect((await read(cache, "a"))?.data.toString()).toBe("v2");
  });
});

describe("cache backend over Redis", () => {
  test("stores raw bytes: all 256 byte values round-trip, frame is data plus a small header", async () => {
    const namespace = `raw-${randomUUID()}`;
    const inner = createMapBackend();
    const opts = { maxBytes: 1 << 20, ttlMs: 60_000, maxObjectBytes: 1 << 20, shared: sharedStore(namespace) };
    const a = await createCacheBackend(inner, opts);
    opened.push(a);
    const data = Buffer.concat(Array.from({ length: 64 }, () => Buffer.from(Array.from({ length: 256 }, (_, i) => i))));
    await put(inner, "bin/all-bytes", data);
    expect((await read(a, "bin/all-bytes"))?.data.equals(data)).toBe(true); // miss: fills Redis

    const b = await createCacheBackend(inner, opts); // another daemon: served from Redis
    opened.push(b);
    const before = inner.calls.get;
    expect((await read(b, "bin/all-bytes"))?.data.equals(data)).toBe(true);
    expect(inner.calls.get).toBe(before);
    expect(b.cacheStats().hits).toBe(1);

    const client = createClient({ url: redis.url });
    await client.connect();
    try {
      const length = await client.strLen(`${namespace}:v:bin/all-bytes`);
      expect(length).toBeGreaterThan(data.length);
      expect(length).toBeLessThan(data.length + 1024); // not 1.33x
    } finally {
      await client.close();
    }
  });

  test("daemon B never serves what daemon A overwrote or deleted", async () => {
    const namespace = `shared-${randomUUID()}`;
    const bucket: MapBucket = createMapBucket();
    const innerA = createMapBackend(bucket);
    const { backend: innerB, hold } = gated(createMapBackend(bucket));
    const opts = { maxBytes: 1 << 20, ttlMs: 60_000, maxObjectBytes: 1 << 20, shared: sharedStore(namespace) };
    const a = await createCacheBackend(innerA, opts);
    const b = await createCacheBackend(innerB, opts);
    opened.push(a, b);

    await put(a, "k", Buffer.from("v1"));
    expect((await read(b, "k"))?.data.toString()).toBe("v1");
    expect((await read(b, "k"))?.data.toString()).toBe("v1");
    await put(a, "k", Buffer.from("v2"));
    expect((await read(b, "k"))?.data.toString()).toBe("v2");
    expect((await read(b, "k"))?.data.toString()).toBe("v2");

    // B reads r=v1 from the bucket but finishes only after A wrote v2: the floor keeps v1 out
    // (without it, B's fill would replace the v2 that A's put cached).
    await put(innerA, "r", Buffer.from("v1")); // behind the caches: nothing cached for "r"
    let release = hold();
    const slowB = await b.get("r");
    await put(a, "r", Buffer.from("v2"));
    release();
    expect((await readAll(slowB!.body)).toString()).toBe("v1");
    expect((await read(b, "r"))?.data.toString()).toBe("v2");
    expect((await read(a, "r"))?.data.toString()).toBe("v2");

    // Same for a delete: a read that began before it cannot cache the deleted object.
    await put(innerA, "d", Buffer.from("doomed"));
    release = hold();
    const slowD = await b.get("d");
    await a.delete("d");
    release();
    expect((await readAll(slowD!.body)).toString()).toBe("doomed");
    expect(await read(b, "d")).toBeUndefined();
    expect(await b.head("d")).toBeUndefined();
  });
});
