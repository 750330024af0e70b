/**
 * Per-prefix byte quotas (config "quotas": prefix -> max bytes of original
 * data). Usage is counted at start-up by listing each quota prefix and kept up
 * to date by the engine; a write reserves its bytes before they are stored
 * (a stream its declared size, then more as bytes arrive) and the reservation
 * is released when the write fails, so a rejected write keeps nothing.
 */
import { StorageError, Code } from "../storage-error.js";

export interface QuotaReservation {
  /** Reserve `bytes` more; throws RESOURCE_EXHAUSTED naming the quota. */
  grow(bytes: number): void;
  /** The write committed with `finalSize`, replacing `oldSize` bytes. */
  commit(finalSize: number, oldSize: number): void;
  release(): void;
}

export interface Quotas {
  /** True when some quota prefix covers the key. */
  covers(key: string): boolean;
  /**
   * Reserves `bytes` for a write of `key` that replaces an object of
   * `replacing` bytes (0 when new): the old bytes count as freed for the
   * check, so rewriting an object at the limit with one of the same size fits.
   * Throws RESOURCE_EXHAUSTED naming the prefix when the quota cannot hold it.
   */
  reserve(key: string, bytes: number, replacing?: number): QuotaReservation;
  /** An object of `size` bytes under `key` was deleted. */
  released(key: string, size: number): void;
  usage(): { prefix: string; used: number; limit: number }[];
}

export function createQuotas(limits: Record<string, number>, initialUsage: Record<string, number>): Quotas {
  const entries = Object.entries(limits).map(([prefix, limit]) => ({
    prefix,
    limit,
    used: initialUsage[prefix] ?? 0,
    reserved: 0,
  }));
  const matching = (key: string) => entries.filter((e) => key.startsWith(e.prefix));

  return {
    covers: (key) => matching(key).length > 0,
    reserve(key, bytes, replacing = 0) {
      const hit = matching(key);
      let held = 0;
      const take = (n: number) => {
        for (const e of hit) {
          if (e.used - replacing + e.reserved + n > e.limit) {
            const freed = replacing > 0 ? ` (${replacing} of them freed by replacing the object)` : "";
            throw new StorageError(
              Code.ResourceExhausted,
              `quota exceeded for prefix "${e.prefix}": the limit is ${e.limit} bytes, ${e.used} are used${freed} and this write needs ${held + n}`,
            );
          }
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
        grow: take,
        commit(finalSize, oldSize) {
          release();
          for (const e of hit) e.used = Math.max(0, e.used + finalSize - oldSize);
        },
        release,
      };
    },
    released(key, size) {
      for (const e of matching(key)) e.used = Math.max(0, e.used - size);
    },
    usage: () => entries.map(({ prefix, used, limit }) => ({ prefix, used, limit })),
  };
}
