/**
 * Cancellation and deadlines, one way for every layer. A call's AbortSignal
 * (the client cancelled, the deadline passed, the daemon is shutting down)
 * reaches every backend call; these helpers turn it into the same
 * StorageError wherever it is noticed.
 *
 * One rule for what an aborted signal means: a StorageError reason is the
 * answer as it is (a layer that aborted with a precise error, e.g. GCS made
 * no progress); a TimeoutError (AbortSignal.timeout) is DEADLINE_EXCEEDED;
 * anything else is CANCELLED. Imports nothing but the error type.
 */
import type { Readable } from "node:stream";
import { setTimeout as delay } from "node:timers/promises";
import { Code, StorageError } from "./storage-error.js";

/** The StorageError an aborted `signal` stands for (see the rule above). */
export function abortError(signal: AbortSignal, cause?: unknown): StorageError {
  const reason = signal.reason as unknown;
  if (reason instanceof StorageError) return reason;
  if ((reason as { name?: unknown } | undefined)?.name === "TimeoutError") {
    return new StorageError(Code.DeadlineExceeded, "the deadline passed", { cause: reason });
  }
  return new StorageError(Code.Cancelled, "the call was cancelled", { cause: cause ?? reason });
}

/** Throws abortError(signal) when it has aborted. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortError(signal);
}

/** Destroys `body` with abortError(signal) when `signal` aborts (at once if it already has). */
export function bindSignal<T extends Readable>(body: T, signal: AbortSignal | undefined): T {
  if (signal === undefined) return body;
  const onAbort = () => body.destroy(abortError(signal));
  if (signal.aborted) {
    onAbort();
    return body;
  }
  signal.addEventListener("abort", onAbort, { once: true });
  body.once("close", () => signal.removeEventListener("abort", onAbort));
  return body;
}

/**
 * Resolves with `p`, or rejects with abortError(signal) as soon as `signal`
 * aborts. The listener lives only until `p` settles: racing many promises
 * against one long-lived abort promise would keep every one of them (and what
 * they hold) reachable until the signal is gone.
 */
export function untilAborted<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return p;
  if (signal.aborted) {
    // `p` may still reject (a read of the cancelled call): that outcome is moot.
    p.catch(() => undefined);
    return Promise.reject(abortError(signal));
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      p.catch(() => undefined);
      reject(abortError(signal));
    };
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
  });
}

/**
 * Iterates `source` as Buffers, stopping at once when `signal` aborts even
 * while the source is waiting. A source that throws something other than a
 * StorageError fails as UNKNOWN "the upload source failed" (its error kept as
 * cause). On an early exit the source is told to release what it holds,
 * without waiting for a source that is stuck.
 */
export async function* abortable(source: AsyncIterable<Uint8Array>, signal: AbortSignal | undefined): AsyncGenerator<Buffer> {
  const iterator = source[Symbol.asyncIterator]();
  let finished = false;
  try {
    for (;;) {
      throwIfAborted(signal);
      let step: IteratorResult<Uint8Array>;
      try {
        step = await untilAborted(iterator.next(), signal);
      } catch (err) {
        if (StorageError.is(err)) throw err;
        finished = true; // a source that threw is done
        throw new StorageError(Code.Unknown, "the upload source failed", { cause: err });
      }
      if (step.done) {
        finished = true;
        return;
      }
      const chunk = step.value;
      yield Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    }
  } finally {
    if (!finished) void Promise.resolve(iterator.return?.()).catch(() => undefined);
  }
}

/** Resolves after `ms`, or early (without error) when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  // Rejects only with the abort, which ends the wait early.
  return delay(ms, undefined, { signal }).catch(() => undefined);
}
