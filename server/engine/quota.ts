/**
 * Per-prefix byte quotas (config "quotas": prefix -> max bytes of original
 * data). Usage is counted at start-up by listing each quota prefix and kept up
 * to date by the engine; a write reserves its bytes before they are stored
 * (a stream its declared size, then more as bytes arrive) and the reservation
 * is released when the write fails, so a rejected write keeps nothing.
 *
 * Writes and deletes of one covered key run one at a time (`exclusive`), so
 * each knows the size it replaces and commits exactly that difference:
 * concurrent overwrites cannot all free the same old object.
 *
 * This file holds the contract and the in-process accounting (one daemon's
 * view). shared-quotas.ts keeps the same accounting in Redis for daemons
 * sharing a store.
 */
import type { Backend } from "../backends/backend.js";
import { StorageError, Code } from "../storage-error.js";
import { KeyLocks } from "./key-locks.js";

export interface QuotaReservation {
  /** Reserve `bytes` more; rejects RESOURCE_EXHAUSTED naming the quota. */
  grow(bytes: number): Promise<void>;
  /** The write committed with `finalSize`, replacing `oldSize` bytes. */
  commit(finalSize: number, oldSize: number): Promise<void>;
  release(): Promise<void>;
}

export interface Quotas {
  /** True when some quota prefix covers the key. */
  covers(key: string): boolean;
  /**
   * Reserves `bytes` for a write of `key` that replaces an object of
   * `replacing` bytes (0 when new): the old bytes count as freed for the
   * check, so rewriting an object at the limit with one of the same size fits.
   * Rejects RESOURCE_EXHAUSTED naming the prefix when the quota cannot hold it.
   */
  reserve(key: string, bytes: number, replacing?: number): Promise<QuotaReservation>;
  /** An object of `size` bytes under `key` was deleted. */
  released(key: string, size: number): Promise<void>;
  /** Runs `fn` while no other write or delete of `key` runs (in this process, or across daemons when shared). */
  exclusive<T>(key: string, fn: () => Promise<T>): Promise<T>;
  usage(): Promise<{ prefix: string; used: number; limit: number }[]>;
  close(): Promise<void>;
}

/** The message every quota refusal carries. */
export function quotaExceeded(prefix: string, limit: number, used: number, replacing: number, needed: number): StorageError {
  const freed = replacing > 0 ? ` (${replacing} of them freed by replacing the object)` : "";
  return new StorageError(
    Code.ResourceExhausted,
    `quota exceeded for prefix "${prefix}": the limit is ${limit} bytes, ${used} are used${freed} and this write needs ${needed}`,
  );
}

/** The prefixes of `limits` that cover `key`. */
export function coveringPrefixes(limits: Record<string, number>, key: string): string[] {
  return Object.keys(limits).filter((prefix) => key.startsWith(prefix));
}

/** Quotas kept in this process: exact for one daemon, unaware of writes other daemons make. */
export function createQuotas(limits: Record<string, number>, initialUsage: Record<string, number>): Quotas {
  const entries = Object.entries(limits).map(([prefix, limit]) => ({
    prefix,
    limit,
    used: initialUsage[prefix] ?? 0,
    reserved: 0,
  }));
  const matching = (key: string) => entries.filter((e) => key.startsWith(e.prefix));
  const locks = new KeyLocks();

  return {
    covers: (key) => matching(key).length > 0,
    async reserve(key, bytes, replacing = 0) {
      const hit = matching(key);
      let held = 0;
      const take = (n: number) => {
        for (const e of hit) {
          if (e.used - replacing + e.reserved + n > e.limit) throw quotaExceeded(e.prefix, e.limit, e.used, replacing, held + n);
        }
        for (const e of hit) e.reserved += n;
        held += n;
      };
      take(bytes);
      let done = false;
      const release = () => {
        if (done) return;
        done = true;
        for (const e of hit) e.reserved -= held;
      };
      return {
        grow: async (n) => take(n),
        async commit(finalSize, oldSize) {
          release();
          for (const e of hit) e.used = Math.max(0, e.used + finalSize - oldSize);
        },
        release: async () => release(),
      };
    },
    async released(key, size) {
      for (const e of matching(key)) e.used = Math.max(0, e.used - size);
    },
    exclusive: (key, fn) => locks.run(key, fn),
    usage: async () => entries.map(({ prefix, used, limit }) => ({ prefix, used, limit })),
    close: async () => undefined,
  };
}

/** The bytes stored under each of `prefixes` now, by listing `store` (the quotas' start-up count). */
export async function countUsage(store: Backend, prefixes: string[]): Promise<Record<string, number>> {
  const usage: Record<string, number> = {};
  for (const prefix of prefixes) {
    let used = 0;
    let startAfter: string | undefined;
    do {
      const page = await store.list({ prefix, startAfter, limit: 1000 });
      for (const r of page.objects) used += r.size;
      startAfter = page.next;
    } while (startAfter !== undefined);
    usage[prefix] = used;
  }
  return usage;
}
