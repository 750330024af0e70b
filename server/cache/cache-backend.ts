/**
 * The cache layer: a Backend that wraps another and keeps small objects in a
 * cache store (in-memory LRU bounded in bytes, or a shared Redis).
 *
 * Where it sits (engine.ts): the in-memory cache above the codec (it holds
 * original bytes, private to the process); the shared Redis cache under the
 * codec, right above the raw tier (it holds stored bytes: compressed and
 * encrypted exactly as at rest, never plaintext of an encrypted store). The
 * layer does not care which: `holds` says whether its inner get returns
 * original bytes (entries checked against record.size) or stored bytes
 * (record.storedSize). Either way it keeps the record its inner backend gave,
 * so callers above see the same records (original size and CRC32C, stored
 * size, encoding) whether an answer came from the cache or not.
 *
 * - get (whole object, or a range of a cached one) and head are served from
 *   the cache on a hit. On a miss the inner get's bytes are teed while the
 *   caller reads and cached only when the stream ended successfully with
 *   exactly the record's size of those bytes (the cache holds what its inner
 *   get returns). Ranges are in the same bytes, so a range of a cached object
 *   is a slice. Objects above `maxObjectBytes` (of those bytes) are never
 *   held: collecting stops as soon as the limit is passed.
 * - Records with expiresAt <= now are never served from the cache, and an
 *   entry never outlives its record's expiresAt.
 * - put / delete invalidate after the inner call resolved (durable); a small
 *   put then caches the bytes it already passed through. A failed put or
 *   delete whose outcome may be unknown invalidates too, so the cache never
 *   holds something other than what is stored. Nothing enters the cache
 *   before it is durable.
 * - Races within this process: every fill (a read's or a put's) registers
 *   before its inner call; an invalidation cancels the fills registered
 *   before it and waits for one already storing, so a read that raced a write
 *   cannot put the older version back. Across daemons the Redis store adds
 *   floor generations (see redis-cache-store.ts for the races that remain).
 */
import { Readable, Transform, pipeline } from "node:stream";
import { BufferedSource, ReplayableSource, checkRange, type Backend, type DeleteOptions, type GetOptions, type ObjectRecord, type PutMeta, type PutOptions } from "../backends/backend.js";
import { Code, StorageError } from "../storage-error.js";
import { throwIfAborted } from "../signals.js";
import type { CachedObject, CacheStore } from "./cache-store.js";
import { createMemoryCacheStore } from "./memory-cache-store.js";
import { createRedisCacheStore, type RedisCacheStoreOptions } from "./redis-cache-store.js";

export interface CacheOptions {
  /** Bound of the cache in bytes (data plus record estimate). */
  maxBytes: number;
  /** How long an entry may be served, in milliseconds. */
  ttlMs: number;
  /** Admission limit: larger objects (in the bytes held) are never cached. */
  maxObjectBytes: number;
  /** What the inner get returns: "original" bytes (above the codec, the
   * default) or "stored" bytes (under it, on a raw tier). */
  holds?: "original" | "stored";
  /** A cache shared by several daemons of one store (Redis, CACHE_URL);
   * in-memory without. */
  shared?: Omit<RedisCacheStoreOptions, "maxBytes" | "ttlMs">;
  /** Called on every get/head answered by the cache (metrics). */
  onHit?: () => void;
  /** Called on every get/head the cache could not answer (metrics). */
  onMiss?: () => void;
}

export interface CacheStats {
  /** Entries and bytes held (Redis: those this daemon stored, see redis-cache-store.ts). */
  entries: number;
  bytes: number;
  /** get and head lookups answered / not answered by the cache. */
  hits: number;
  misses: number;
}

export type CacheBackend = Backend & {
  cacheStats(): CacheStats;
  /** Drops what the cache holds of `key` (a change made below it, e.g. by the replicator). */
  forget(key: string): Promise<void>;
};

/** A pending cache fill; cancelled by an invalidation of its key. */
interface Fill {
  cancelled: boolean;
  startedAt: number;
  storing?: Promise<void>;
}

// Cached bodies are sent in pieces of this size (views, not copies).
const BODY_CHUNK = 1024 * 1024;

/** Wraps `inner` with a cache; connects to Redis first when `opts.shared` is set (UNAVAILABLE when unreachable). */
export async function createCacheBackend(inner: Backend, opts: CacheOptions): Promise<CacheBackend> {
  const store: CacheStore = opts.shared
    ? await createRedisCacheStore({ ...opts.shared, maxBytes: opts.maxBytes, ttlMs: opts.ttlMs })
    : createMemoryCacheStore({ maxBytes: opts.maxBytes, ttlMs: opts.ttlMs });
  // The length of the bytes an entry holds, by the record its inner backend gave.
  const heldSize = (record: ObjectRecord) => (opts.holds === "stored" ? record.storedSize : record.size);
  const fills = new Map<string, Set<Fill>>();
  let hits = 0;
  let misses = 0;
  const hit = () => {
    hits++;
    opts.onHit?.();
  };
  const miss = () => {
    misses++;
    opts.onMiss?.();
  };

  function register(key: string): Fill {
    const fill: Fill = { cancelled: false, startedAt: Date.now() };
    let set = fills.get(key);
    if (!set) fills.set(key, (set = new Set()));
    set.add(fill);
    return fill;
  }

  function unregister(key: string, fill: Fill): void {
    const set = fills.get(key);
    if (set?.delete(fill) && set.size === 0) fills.delete(key);
  }

  /** Caches `entry` unless an invalidation cancelled `fill` meanwhile. */
  async function admit(key: string, fill: Fill, entry: CachedObject): Promise<void> {
    try {
      const now = Date.now();
      const { expiresAt } = entry.record;
      const ttl = Math.min(opts.ttlMs, expiresAt === undefined ? Infinity : expiresAt - now);
      // A fill older than the TTL may have outlived the shared store's floor for this key.
      if (fill.cancelled || ttl <= 0 || now - fill.startedAt >= opts.ttlMs) return;
      // A copy waiting for replication changes tier and generation when the
      // replicator moves it: caching it would serve a stale ObjectInfo. A
      // disk-cache copy served during an outage may be older than GCS's.
      if (entry.record.pendingReplication || entry.record.cachedCopy) return;
      // Checking `cancelled` and publishing `storing` happen in one tick: an
      // invalidation either cancels this fill first or waits for it and then deletes.
      fill.storing = store.set(key, entry, ttl).catch(() => undefined);
      await fill.storing;
    } finally {
      unregister(key, fill);
    }
  }

  /** Drops `key` after a write or delete (generation undefined: delete or unknown outcome). */
  async function invalidate(key: string, generation: bigint | undefined, except?: Fill): Promise<void> {
    const pending = fills.get(key);
    const storing: Promise<void>[] = [];
    for (const fill of pending ?? []) {
      if (fill === except) continue;
      fill.cancelled = true;
      if (fill.storing) storing.push(fill.storing);
    }
    await Promise.all(storing);
    await store.invalidate(key, generation);
  }

  /** The cached entry of `key` when it may be served now. */
  async function lookup(key: string): Promise<CachedObject | undefined> {
    const entry = await store.get(key);
    return entry && !isExpired(entry.record) ? entry : undefined;
  }

  return {
    name: `cache(${inner.name})`,
    outbox: inner.outbox,

    async get(key, getOpts: GetOptions = {}) {
      throwIfAborted(getOpts.signal);
      const { range, ifGenerationMatch } = getOpts;
      const cached = await lookup(key);
      if (cached && (ifGenerationMatch === undefined || ifGenerationMatch === cached.record.generation)) {
        if (range) checkRange(range);
        // Past the end of the cached copy: the tier would say the same, without a request.
        if (range && range.offset > cached.bytes.length) {
          hit();
          throw new StorageError(Code.OutOfRange, `offset ${range.offset} is past the end of key "${key}" (${cached.bytes.length} bytes)`);
        }
        hit();
        return { record: { ...cached.record }, body: bodyOf(sliceRange(cached.bytes, range)) };
      }
      miss();
      if (range) return inner.get(key, getOpts);

      const fill = register(key);
      let got: Awaited<ReturnType<Backend["get"]>>;
      try {
        got = await inner.get(key, getOpts);
      } catch (err) {
        unregister(key, fill);
        throw err;
      }
      if (!got || heldSize(got.record) > opts.maxObjectBytes || isExpired(got.record)) {
        unregister(key, fill);
        return got;
      }
      const { record } = got;
      let chunks: Buffer[] | undefined = [];
      let length = 0;
      const tee = new Transform({
        transform(chunk: Buffer, _encoding, done) {
          length += chunk.length;
          if (length > opts.maxObjectBytes) chunks = undefined; // the record lied: let go
          else chunks?.push(chunk);
          done(null, chunk);
        },
        flush(done) {
          // The inner stream ended successfully: cache it before the caller sees the end.
          if (!chunks || length !== heldSize(record)) return done();
          const entry = { record: { ...record }, bytes: Buffer.concat(chunks, length) };
          chunks = undefined;
          admit(key, fill, entry).then(() => done(), () => done());
        },
      });
      pipeline(got.body, tee, () => unregister(key, fill));
      return { record, body: tee };
    },

    async head(key, headOpts) {
      throwIfAborted(headOpts?.signal);
      const cached = await lookup(key);
      if (cached) {
        hit();
        return { ...cached.record };
      }
      miss();
      return inner.head(key, headOpts);
    },

    async put(key, source, meta: PutMeta, putOpts?: PutOptions) {
      const fill = register(key);
      let chunks: Buffer[] | undefined = [];
      let length = 0;
      // Keep references to the chunks of a small upload only; never copy or buffer a large one.
      async function* teed(): AsyncGenerator<Uint8Array> {
        for await (const chunk of source) {
          length += chunk.length;
          if (length > opts.maxObjectBytes) chunks = undefined;
          else chunks?.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
          yield chunk;
        }
      }
      // A unary body stays a BufferedSource, so a lower layer can replay it (the
      // chain, on the fallback tier); its chunks are already in memory.
      const buffered = source instanceof BufferedSource ? source : undefined;
      if (buffered) {
        length = buffered.byteLength;
        chunks = length > opts.maxObjectBytes ? undefined : buffered.chunks.map((c) => Buffer.from(c.buffer, c.byteOffset, c.byteLength));
      }
      // Another replayable source (a completed upload's file) passes as it is, so it stays
      // replayable; its bytes are never held here (it is read from disk, not from memory).
      const replayable = buffered ?? (source instanceof ReplayableSource ? source : undefined);
      if (replayable && !buffered) chunks = undefined;
      let record: ObjectRecord;
      try {
        record = await inner.put(key, replayable ?? teed(), meta, putOpts);
      } catch (err) {
        unregister(key, fill);
        // A precondition failure changed nothing; any other failure may have committed.
        if (!StorageError.is(err, Code.FailedPrecondition)) await invalidate(key, undefined).catch(() => undefined);
        throw err;
      }
      try {
        await invalidate(key, record.generation, fill);
      } catch (err) {
        unregister(key, fill);
        throw err;
      }
      if (chunks && length === heldSize(record) && !fill.cancelled) {
        await admit(key, fill, { record: { ...record }, bytes: Buffer.concat(chunks, length) });
      } else {
        unregister(key, fill);
      }
      return record;
    },

    async delete(key, deleteOpts?: DeleteOptions) {
      let deleted: boolean;
      try {
        deleted = await inner.delete(key, deleteOpts);
      } catch (err) {
        if (!StorageError.is(err, Code.FailedPrecondition)) await invalidate(key, undefined).catch(() => undefined);
        throw err;
      }
      await invalidate(key, undefined);
      return deleted;
    },

    list: (listOpts) => inner.list(listOpts),
    probe: (signal) => inner.probe(signal),

    async close() {
      await store.close();
      await inner.close();
    },

    forget: (key) => invalidate(key, undefined),

    cacheStats() {
      return { ...store.stats(), hits, misses };
    },
  };
}

function isExpired(record: ObjectRecord, now = Date.now()): boolean {
  return record.expiresAt !== undefined && record.expiresAt <= now;
}

/** The requested part of cached bytes (a range checked already, its offset within them). */
function sliceRange(bytes: Buffer, range: GetOptions["range"]): Buffer {
  if (!range) return bytes;
  const { offset, length } = range;
  return bytes.subarray(offset, length === undefined ? undefined : Math.min(bytes.length, offset + length));
}

function bodyOf(bytes: Buffer): Readable {
  function* pieces(): Generator<Buffer> {
    for (let at = 0; at < bytes.length; at += BODY_CHUNK) yield bytes.subarray(at, at + BODY_CHUNK);
  }
  return Readable.from(pieces(), { objectMode: false });
}
