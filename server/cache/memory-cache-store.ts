/**
 * The in-process cache store: keyv over an lru-cache bounded in bytes.
 *
 * keyv is built without serialize/deserialize, so it hands the store its
 * `{ value, expires }` object as is: the Buffer and the record stay JS
 * objects, nothing is JSON- or base64-encoded. keyv checks `expires`; the LRU
 * also carries the TTL so expired entries stop counting once purged.
 * The byte bound (`maxBytes`) is the LRU's maxSize over entryCost(): an entry
 * that would not fit evicts the least recently used ones; an entry larger
 * than the whole bound is not kept.
 *
 * Races with writers of this process are handled by the cache layer (it
 * cancels fills that started before a write); a memory store shared by
 * nobody else needs no floor generations. Several daemons with their own
 * memory stores each serve their own copy until it expires: use Redis
 * (CACHE_URL) when daemons share a bucket and must not serve stale copies.
 */
import { Keyv, type KeyvStoreAdapter } from "keyv";
import { LRUCache } from "lru-cache";
import { entryCost, type CachedObject, type CacheStore } from "./cache-store.js";

/** What keyv gives the store when serialize is off. */
interface KeyvSlot {
  value: CachedObject;
  expires?: number;
}

/** Creates a memory store holding at most `maxBytes` (entryCost) bytes. */
export function createMemoryCacheStore(opts: { maxBytes: number; ttlMs: number; namespace?: string }): CacheStore {
  const lru = new LRUCache<string, KeyvSlot>({
    maxSize: opts.maxBytes,
    ttl: opts.ttlMs,
    // keyv prefixes keys with its namespace; the prefix is counted too, harmlessly.
    sizeCalculation: (slot, key) => entryCost(key, slot.value),
  });
  const adapter: KeyvStoreAdapter = {
    opts: {},
    namespace: undefined,
    on() {
      return adapter;
    },
    async get<Value>(key: string) {
      return lru.get(key) as Value | undefined;
    },
    async set(key: string, value: KeyvSlot, ttl?: number) {
      lru.set(key, value, { ttl });
      return true;
    },
    async delete(key: string) {
      return lru.delete(key);
    },
    async clear() {
      lru.clear();
    },
  };
  const keyv = new Keyv<CachedObject>({
    store: adapter,
    namespace: opts.namespace ?? "filestorage-cache",
    serialize: undefined,
    deserialize: undefined,
  });

  return {
    async get(key) {
      return keyv.get(key);
    },
    async set(key, entry, ttlMs) {
      await keyv.set(key, entry, ttlMs);
    },
    async invalidate(key) {
      await keyv.delete(key);
    },
    stats() {
      lru.purgeStale();
      return { entries: lru.size, bytes: lru.calculatedSize };
    },
    async close() {
      lru.clear();
    },
  };
}
