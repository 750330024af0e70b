/**
 * Committing a new version of a key (an upload, a compose, a tombstone) in
 * as few requests as correctness allows.
 *
 * - No precondition from the caller: the first attempt goes without one (one
 *   request: an online write is the newest there is). A RETRY after an
 *   ambiguous failure (timeout, 5xx, reset: the attempt may or may not have
 *   landed) could clobber a newer write another daemon made meanwhile, so the
 *   key is looked up first: our own write there means the attempt landed (done);
 *   a newer origin means ours lost (ABORTED, nothing overwritten); otherwise the
 *   retry is guarded by the generation seen.
 * - An attempt that cannot be repeated (a stream read once) is only judged:
 *   after an ambiguous failure the look-up says whether it landed.
 * - A precondition from the caller (or the generation observed by the caller):
 *   every attempt carries it; when GCS refuses it, the look-up says whether it
 *   failed (FAILED_PRECONDITION naming the generation there now), whether our
 *   own earlier attempt is what is there (done), or whether what is there still
 *   satisfies it (a tombstone is absence: `0` holds on a deleted key) and the
 *   attempt is repeated guarded by that generation.
 */
import type { FileMetadata } from "@google-cloud/storage";
import { compareOrigins, type WriteOrigin } from "../write-origin.js";
import { Code, StorageError, generationMismatch } from "../../storage-error.js";
import { abortError, sleep, throwIfAborted } from "../../signals.js";
import type { GcsContext } from "./gcs-context.js";
import { httpStatus, isRetryable } from "./gcs-errors.js";
import { backoffCeiling } from "./retry.js";
import { toRecord } from "./object-metadata.js";

/** Refusals in a row (racing writers) before giving up. */
const MAX_REFUSALS = 3;

export interface Commit {
  key: string;
  /** The origin the new version carries. */
  origin: WriteOrigin;
  /** The caller's precondition (0 = only if absent; a tombstone is absence). */
  expected?: bigint;
  /** The GCS precondition of the first attempt when already observed (else `expected`, or none). */
  guard?: bigint;
  /** What the write replaces, in the error messages ("the write", "the delete"). */
  what: string;
  /** One attempt: writes the version with ifGenerationMatch = `guard` (undefined = none). */
  attempt(guard: bigint | undefined, signal: AbortSignal | undefined): Promise<FileMetadata>;
  /** The key's raw metadata now (tombstones included), or undefined. */
  look(signal: AbortSignal | undefined): Promise<FileMetadata | undefined>;
  /** The attempt cannot be repeated (its stream was read once): after a failure the look-up only says whether it landed. */
  once?: boolean;
}

/** Runs `c` (see the file comment); resolves with the metadata of the version written. */
export async function commitVersion(ctx: GcsContext, c: Commit, signal?: AbortSignal): Promise<FileMetadata> {
  let guard = c.guard ?? c.expected;
  let retries = 0;
  let refusals = 0;
  for (;;) {
    throwIfAborted(signal);
    let failure: unknown;
    try {
      return await c.attempt(guard, signal);
    } catch (err) {
      if (signal?.aborted) throw abortError(signal, err);
      failure = err;
      const refused = StorageError.is(err, Code.FailedPrecondition) && httpStatus(err.cause) === 412;
      if (c.once) {
        if (!refused && !isRetryable(err)) throw err;
      } else if (refused) {
        if (++refusals > MAX_REFUSALS) {
          throw new StorageError(Code.Aborted, `concurrent writes to key "${c.key}" kept winning over ${c.what}; retry it`, { cause: err });
        }
      } else {
        if (!isRetryable(err) || retries >= ctx.maxRetries) throw err;
        retries++;
        await sleep(Math.random() * backoffCeiling(retries), signal);
        throwIfAborted(signal);
      }
    }
    const now = await c.look(signal);
    const there = now && toRecord(c.key, now);
    const order = there ? compareOrigins(there.origin, c.origin) : -1;
    // Our own earlier attempt landed (its answer was lost).
    if (order === 0) return now!;
    if (c.expected === undefined) {
      if (order > 0) {
        throw new StorageError(Code.Aborted, `a newer write of key "${c.key}" by another writer landed meanwhile; it was kept and ${c.what} given up`);
      }
    } else {
      const live = there?.deleted ? undefined : there;
      const holds = c.expected === 0n ? live === undefined : there?.generation === c.expected;
      if (!holds) throw generationMismatch(c.key, c.expected, live?.generation);
    }
    if (c.once) {
      throw StorageError.is(failure, Code.FailedPrecondition)
        ? new StorageError(Code.Aborted, `a concurrent write to key "${c.key}" won over ${c.what}; retry it`, { cause: failure })
        : failure;
    }
    guard = there?.generation ?? 0n;
  }
}
