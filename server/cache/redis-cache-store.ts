/**
 * The shared cache store: one Redis for several daemons (CACHE_URL).
 *
 * Values are binary frames: [4-byte big-endian length][record JSON, generation
 * as a string][raw bytes], so a cached object costs its size plus a small
 * header, never base64 or JSON inflation. The client maps RESP blob strings
 * to Buffer, so GET hands the frame back byte for byte.
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
 *
 * Accounting: entries/bytes count the frames this daemon stored that have
 * not expired, been invalidated or been seen missing by this daemon. That
 * share is bounded by maxBytes: when a new fill would exceed it, the least
 * recently used of this daemon's entries is deleted from Redis (UNLINK).
 * Redis' own maxmemory policy bounds the whole server.
 */
import { createClient, RESP_TYPES } from "@redis/client";
import { LRUCache } from "lru-cache";
import { unavailable } from "../storage-error.js";
import { recordFromJson, recordToJson, type CachedObject, type CacheStore } from "./cache-store.js";

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

/** Connects to `url` (redis://...) and returns the store; UNAVAILABLE when unreachable. */
export async function createRedisCacheStore(opts: {
  url: string;
  maxBytes: number;
  ttlMs: number;
  namespace?: string;
}): Promise<CacheStore> {
  const client = createClient({
    url: opts.url,
    // Fail fast while disconnected instead of queueing: a cache must not stall reads,
    // and a writer must learn at once that its invalidation did not happen.
    disableOfflineQueue: true,
    socket: { reconnectStrategy: (retries: number) => Math.min(100 * 2 ** retries, 5000), connectTimeout: 5000 },
  }).withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer });
  // Without a listener a connection error would crash the process; failures surface per command.
  client.on("error", () => undefined);
  try {
    await client.connect();
  } catch (err) {
    client.destroy();
    // The URL may carry a password: not in the message.
    throw unavailable("cannot connect to the shared cache (CACHE_URL)", err);
  }

  const ns = opts.namespace ?? "filestorage-cache";
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

  return {
    async get(key) {
      let frame: Buffer | null;
      try {
        frame = (await client.get(entryKey(key))) as Buffer | null;
      } catch {
        return undefined; // a cache that cannot answer is a miss
      }
      if (frame === null) {
        mine.delete(key);
        return undefined;
      }
      mine.get(key); // refresh recency
      return decodeFrame(frame);
    },

    async set(key, entry, ttlMs) {
      const frame = encodeFrame(entry);
      if (frame.length > opts.maxBytes) return;
      mine.set(key, frame.length, { ttl: ttlMs }); // may evict (unlink) older entries first
      try {
        const stored = await client.eval(FILL_SCRIPT, {
          keys: [entryKey(key), floorKey(key)],
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

/** [4-byte big-endian JSON length][record JSON][raw bytes]. */
export function encodeFrame(entry: CachedObject): Buffer {
  const json = Buffer.from(recordToJson(entry.record), "utf8");
  const header = Buffer.allocUnsafe(4);
  header.writeUInt32BE(json.length, 0);
  return Buffer.concat([header, json, entry.bytes], 4 + json.length + entry.bytes.length);
}

/** The inverse of encodeFrame; the bytes are a view of `frame`, not a copy. */
export function decodeFrame(frame: Buffer): CachedObject {
  const length = frame.readUInt32BE(0);
  const record = recordFromJson(frame.subarray(4, 4 + length).toString("utf8"));
  return { record, bytes: frame.subarray(4 + length) };
}
