/**
 * Repairs between the local tier and GCS, for copies of the same write (the
 * same origin, write-origin.ts: a pending local copy that GCS holds already,
 * copied before a crash). Which copy is good is decided by reading it back:
 * a local copy against the size and CRC32C its row records, a GCS copy
 * through the codec (its original size and CRC32C, and for an encrypted
 * object its authentication). Nothing is repaired from a copy of another
 * write: which write wins is the replicator's business.
 *
 * - retirePendingCopy: the local copy is bad and GCS's is intact: the
 *   outbox entry is done and the local copy dropped, as the replicator does
 *   after copying it; the key reads from GCS from now on.
 * - recopyToGcs: GCS's copy is bad and the local one intact: the local
 *   stored bytes are written over it, guarded on its generation, then the
 *   entry is done.
 * Both answer false when the state is not that one (no pending write, GCS
 * holds another write or none, the good copy is not intact after all).
 */
import { compareOrigins } from "../backends/write-origin.js";
import type { Backend, Outbox } from "../backends/backend.js";
import type { FsBackend } from "../backends/fs/fs-backend.js";
import { Code, StorageError } from "../storage-error.js";
import type { CircuitBreaker } from "./circuit-breaker.js";
import { metaOf } from "./replicator.js";

/** Where a copy lives, as integrity findings, repairs and their metrics name it. */
export type IntegrityTier = "local" | "disk_cache" | "gcs";

export interface RepairOptions {
  /** The local tier, raw (stored bytes). */
  local: FsBackend;
  /** The outbox of the local tier. */
  outbox: Outbox;
  /** GCS as the replicator writes it (raw, or through the shared cache so it invalidates). */
  gcs: Backend;
  /** GCS raw under the codec: a whole read checks the original bytes. */
  gcsDecoded: Backend;
  breaker: CircuitBreaker;
  /** After a repair changed what serves `key` (caches above drop it). */
  afterChange?: (key: string) => void;
  onRepaired?: (tier: IntegrityTier, key: string) => void;
}

export interface Repairs {
  /**
   * Whether GCS's copy of `key` at `generation` reads back intact: false for
   * DATA_LOSS or when it is gone or replaced; other failures (UNAVAILABLE)
   * are thrown. `pace` is awaited after each chunk read.
   */
  gcsCopyIntact(key: string, generation: bigint, opts?: { signal?: AbortSignal; pace?: (bytes: number) => Promise<void> }): Promise<boolean>;
  retirePendingCopy(key: string): Promise<boolean>;
  recopyToGcs(key: string): Promise<boolean>;
}

const isOutage = (e: unknown) => StorageError.is(e, Code.Unavailable, Code.DeadlineExceeded);

export function createRepairs(opts: RepairOptions): Repairs {
  const { local, outbox, gcs, gcsDecoded, breaker } = opts;
  const onGcs = <T>(fn: () => Promise<T>): Promise<T> => breaker.run(fn, isOutage);

  async function gcsCopyIntact(key: string, generation: bigint, readOpts: { signal?: AbortSignal; pace?: (bytes: number) => Promise<void> } = {}): Promise<boolean> {
    try {
      const got = await onGcs(() => gcsDecoded.get(key, { ifGenerationMatch: generation, signal: readOpts.signal }));
      if (got === undefined) return false;
      for await (const chunk of got.body as AsyncIterable<Buffer>) await readOpts.pace?.(chunk.length);
      return true;
    } catch (err) {
      if (StorageError.is(err, Code.DataLoss)) return false;
      // Replaced meanwhile: that copy is not the one asked about.
      if (StorageError.is(err, Code.FailedPrecondition) && /generation/.test(err.message)) return false;
      throw err;
    }
  }

  /** The pending put of `key` and GCS's record of the same write, when that is the state. */
  async function sameWrite(key: string) {
    const entry = outbox.get(key);
    if (entry === undefined || entry.op !== "put") return undefined;
    const remote = await onGcs(() => gcs.head(key, { tombstones: true }));
    if (remote === undefined || remote.deleted || compareOrigins(remote.origin, entry.origin) !== 0) return undefined;
    return { entry, remote };
  }

  return {
    gcsCopyIntact,

    async retirePendingCopy(key) {
      const same = await sameWrite(key);
      if (same === undefined) return false;
      if (!(await gcsCopyIntact(key, same.remote.generation))) return false;
      if (!outbox.complete(same.entry, { dropLocalCopy: true })) return false;
      opts.afterChange?.(key);
      opts.onRepaired?.("local", key);
      return true;
    },

    async recopyToGcs(key) {
      const same = await sameWrite(key);
      if (same === undefined) return false;
      const copy = await local.get(key);
      if (copy === undefined) return false;
      try {
        if (copy.record.generation !== same.entry.generation) return false;
        // The local tier checks its bytes as they are read: a bad one fails the write, which keeps GCS's copy.
        await onGcs(() => gcs.put(key, copy.body, metaOf(copy.record), { ifGenerationMatch: same.remote.generation }));
      } catch (err) {
        if (StorageError.is(err, Code.DataLoss, Code.FailedPrecondition, Code.Aborted)) return false;
        throw err;
      } finally {
        copy.body.destroy();
      }
      outbox.complete(same.entry, { dropLocalCopy: true });
      opts.afterChange?.(key);
      opts.onRepaired?.("gcs", key);
      return true;
    },
  };
}
