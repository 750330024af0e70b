/**
 * The shared cache store: one Redis for several daemons (CACHE_URL).
 *
 * Values are authenticated binary frames (cache-frame.ts): an HMAC with the
 * store's key (cache-key.ts) over the Redis key and the whole frame, then the
 * record JSON and the raw bytes, so a cached object costs its size plus a
 * small header, never base64 or JSON inflation. The client maps RESP blob
 * strings to Buffer, so GET hands the frame back byte for byte. A frame that
 * fails its check (planted, altered, moved to another key, copied from
 * another store's namespace, or malformed) is a miss, counted through
 * `onRejectedFrame` and logged at warn at most once a minute. Every Redis key
 * starts with the store's namespace (cache-namespace.ts).
 * While the store's key is unknown (`key.current()` undefined) the store is
 * bypassed: every get is a miss and fills are skipped, but invalidations are
 * still sent, so other daemons of the store never serve what this one replaced.
 *
 * Why @redis/client directly and not keyv + @keyv/redis here: keyv's write
 * path gives the store either its JSON-serialized string or, with serialize
 * off, a `{ value, expires }` object that @keyv/redis cannot write as bytes,
 * and keyv.get returns a non-string stored value only with `raw: true`. More
 * decisive: a fill must be an atomic "set unless a newer write was recorded"
 * (a Lua script), which keyv's unconditional set cannot express. keyv stays
 * the abstraction of the in-memory store; this file implements the same
 * CacheStore interface with the @redis/client that @keyv/redis ships.
 *
 * Staleness across daemons: every committed write or delete sets a per-key
 * floor (`<ns>:f:<key>`, TTL = cache TTL) and deletes the entry, in one
 * script; a fill stores only if its generation >= floor, in one script. So a
 * read that raced a write can never put the older version back after the
 * writer's invalidation. A delete sets the floor "deleted", which refuses
 * every fill until a later write replaces it with its generation.
 * Races that remain:
 * - A write whose daemon dies (or loses Redis) between its commit and its
 *   invalidation leaves the old entry until it expires (at most the TTL);
 *   a lost Redis makes invalidate throw UNAVAILABLE so the caller knows.
 * - A put and a delete of the same key committed concurrently by two daemons,
 *   with the put's invalidation reaching Redis after the delete's: a reader
 *   that read the put's version may cache it although the key is now deleted,
 *   until the entry's TTL.
 * - The floor lives one TTL; the cache layer drops fills of reads that began
 *   longer ago than that, so an expired floor cannot let a slow read in.
 * - Floors are not authenticated: someone who can write Redis can delete
 *   floors and entries (misses, or a racing fill let in) or put back an older
 *   authentic frame of the same key until that frame's own lifetime ends.
 *
 * Accounting: entries/bytes count the frames this daemon stored that have
 * not expired, been invalidated or been seen missing by this daemon. That
 * share is bounded by maxBytes: when a new fill would exceed it, the least
 * recently used of this daemon's entries is deleted from Redis (UNLINK).
 * Redis' own maxmemory policy bounds the whole server.
 */
import { createClient, RESP_TYPES } from "@redis/client";
import { connectRedis, redisClientOptions } from "../redis-connection.js";
import { LRUCache } from "lru-cache";
import { unavailable } from "../storage-error.js";
import { decodeFrame, encodeFrame } from "./cache-frame.js";
import type { CacheKey } from "./cache-key.js";
import type { CacheStore } from "./cache-store.js";

// Both scripts compare generations as decimal strings (length, then text):
// GCS generations can exceed Lua's exact integer range.
const FILL_SCRIPT = `
local floor = redis.call('GET', KEYS[2])
if floor then
  if floor == 'deleted' then return 0 end
  local gen = ARGV[2]
  if #gen < #floor or (#gen == #floor and gen < floor) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1`;

const INVALIDATE_SCRIPT = `
local floor = redis.call('GET', KEYS[2])
local new = ARGV[1]
if floor and floor ~= 'deleted' and new ~= 'deleted' then
  if #floor > #new or (#floor == #new and floor > new) then new = floor end
end
redis.call('SET', KEYS[2], new, 'PX', ARGV[2])
redis.call('DEL', KEYS[1])
return 1`;

/** Typed options of the shared store. */
export interface RedisCacheStoreOptions {
  url: string;
  maxBytes: number;
  ttlMs: number;
  /** The store's namespace (cacheNamespace()): the prefix of every Redis key. */
  namespace: string;
  /** The store's frame key; undefined while unknown (the store is bypassed then). */
  key: CacheKey;
  /** Called for every frame that failed its check (metrics). */
  onRejectedFrame?: () => void;
  log?: { warn(obj: object, msg: string): void };
}

/** Rejected frames are logged at most this often (with the count since the last line). */
const REJECTED_LOG_INTERVAL_MS = 60_000;

/** Connects to `url` (redis://...) and returns the store; UNAVAILABLE when unreachable. */
export async function createRedisCacheStore(opts: RedisCacheStoreOptions): Promise<CacheStore> {
  const client = await connectRedis(createClient(redisClientOptions(opts.url)).withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer }), "the shared cache");

  const ns = opts.namespace;
  const entryKey = (key: string) => `${ns}:v:${key}`;
  const floorKey = (key: string) => `${ns}:f:${key}`;
  // This daemon's share: key -> frame size, least recently used evicted (and unlinked) first.
  const mine = new LRUCache<string, number>({
    maxSize: opts.maxBytes,
    ttl: opts.ttlMs,
    sizeCalculation: (size) => size,
    dispose: (_size, key, reason) => {
      if (reason === "evict") void client.unlink(entryKey(key)).catch(() => undefined);
    },
  });

  let rejectedSinceLog = 0;
  let lastRejectedLog = -Infinity;
  function rejected(reason: string): void {
    opts.onRejectedFrame?.();
    rejectedSinceLog++;
    const now = Date.now();
    if (now - lastRejectedLog < REJECTED_LOG_INTERVAL_MS) return;
    opts.log?.warn(
      { rejected: rejectedSinceLog, reason },
      "shared cache: frames that failed authentication were treated as misses (written by something other than a daemon of this store?)",
    );
    lastRejectedLog = now;
    rejectedSinceLog = 0;
  }

  return {
    async get(key) {
      const hmacKey = opts.key.current();
      if (hmacKey === undefined) return undefined; // bypassed until the store's key is known
      const redisKey = entryKey(key);
      let frame: Buffer | null;
      try {
        frame = (await client.get(redisKey)) as Buffer | null;
      } catch {
        return undefined; // a cache that cannot answer is a miss
      }
      if (frame === null) {
        mine.delete(key);
        return undefined;
      }
      const verdict = decodeFrame(frame, { key: hmacKey, redisKey, objectKey: key });
      if (!verdict.ok) {
        mine.delete(key); // whatever this daemon stored there is gone
        if (verdict.reason !== "expired") rejected(verdict.reason);
        return undefined;
      }
      mine.get(key); // refresh recency
      return verdict.entry;
    },

    async set(key, entry, ttlMs) {
      const hmacKey = opts.key.current();
      if (hmacKey === undefined) return;
      const redisKey = entryKey(key);
      const frame = encodeFrame(entry, { key: hmacKey, redisKey, cachedUntil: Date.now() + ttlMs });
      if (frame.length > opts.maxBytes) return;
      mine.set(key, frame.length, { ttl: ttlMs }); // may evict (unlink) older entries first
      try {
        const stored = await client.eval(FILL_SCRIPT, {
          keys: [redisKey, floorKey(key)],
          arguments: [frame, entry.record.generation.toString(), String(Math.max(1, Math.floor(ttlMs)))],
        });
        if (stored !== 1) mine.delete(key);
      } catch {
        mine.delete(key);
      }
    },

    async invalidate(key, generation) {
      mine.delete(key);
      try {
        await client.eval(INVALIDATE_SCRIPT, {
          keys: [entryKey(key), floorKey(key)],
          arguments: [generation === undefined ? "deleted" : generation.toString(), String(Math.max(1, opts.ttlMs))],
        });
      } catch (err) {
        throw unavailable("the write was committed but the shared cache could not be invalidated", err);
      }
    },

    stats() {
      mine.purgeStale();
      return { entries: mine.size, bytes: mine.calculatedSize };
    },

    async close() {
      mine.clear(); // reason "delete": nothing is unlinked
      if (client.isOpen) await client.close();
      else client.destroy();
    },
  };
}
