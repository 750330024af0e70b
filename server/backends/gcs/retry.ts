/**
 * Retries of idempotent or precondition-guarded calls: exponential backoff
 * with full jitter and a timeout per attempt. Only failures that say "try
 * again" (UNAVAILABLE, DEADLINE_EXCEEDED) are retried by default; everything
 * else, and the caller's own cancellation, ends the loop at once.
 */
import { Code, StorageError, isTransient } from "../../storage-error.js";
import { abortError, sleep } from "../../signals.js";

export interface RetryOptions {
  /** Retries after the first attempt (0 = one attempt only). */
  maxRetries: number;
  /** Deadline of each attempt; the attempt's signal aborts when it passes. 0 or Infinity = none. */
  timeoutMs: number;
  /** First backoff ceiling (default 100 ms); doubles per retry. */
  baseDelayMs?: number;
  /** Largest backoff ceiling (default 5000 ms). */
  maxDelayMs?: number;
  /** The caller's cancellation: stops the current attempt and any further ones. */
  signal?: AbortSignal;
  /** Which failures are worth another attempt (default: UNAVAILABLE, DEADLINE_EXCEEDED). */
  retryable?: (e: unknown) => boolean;
  /** Called before each retry, e.g. for metrics. */
  onRetry?: (attempt: number, error: unknown, delayMs: number) => void;
}

/** The backoff ceiling before retry `attempt` (1-based): min(max, base * 2^(attempt-1)). */
export function backoffCeiling(attempt: number, baseDelayMs = 100, maxDelayMs = 5000): number {
  return Math.min(maxDelayMs, baseDelayMs * 2 ** (attempt - 1));
}

/**
 * Runs `fn` until it succeeds, fails with a non-retryable error, or
 * `maxRetries` retries are used up (then the last error is thrown).
 *
 * Each attempt gets its own signal that aborts when the caller's signal does
 * or when `timeoutMs` passes; an attempt that is still running at its
 * deadline is abandoned and counts as DEADLINE_EXCEEDED (retryable). A
 * cancelled caller gets CANCELLED, with no further attempt.
 */
export async function withRetry<T>(fn: (attemptSignal: AbortSignal) => Promise<T>, opts: RetryOptions): Promise<T> {
  const retryable = opts.retryable ?? isTransient;
  for (let attempt = 0; ; attempt++) {
    throwIfCancelled(opts.signal);
    try {
      return await runAttempt(fn, opts.timeoutMs, opts.signal);
    } catch (err) {
      // The caller's cancellation wins over whatever the attempt died of.
      throwIfCancelled(opts.signal, err);
      if (attempt >= opts.maxRetries || !retryable(err)) throw err;
      // Full jitter: a uniform delay in [0, ceiling) spreads retrying clients apart.
      const delay = Math.random() * backoffCeiling(attempt + 1, opts.baseDelayMs, opts.maxDelayMs);
      opts.onRetry?.(attempt + 1, err, delay);
      await sleep(delay, opts.signal);
    }
  }
}

async function runAttempt<T>(fn: (s: AbortSignal) => Promise<T>, timeoutMs: number, outer?: AbortSignal): Promise<T> {
  const ac = new AbortController();
  const onOuter = () => ac.abort(outer!.reason);
  outer?.addEventListener("abort", onOuter, { once: true });
  let timer: NodeJS.Timeout | undefined;
  try {
    const attempt = fn(ac.signal);
    if (!(timeoutMs > 0 && Number.isFinite(timeoutMs))) return await attempt;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const err = new StorageError(Code.DeadlineExceeded, `attempt timed out after ${timeoutMs} ms`);
        ac.abort(err);
        reject(err);
      }, timeoutMs);
    });
    // The attempt may still settle after its deadline; its outcome is dropped.
    attempt.catch(() => undefined);
    return await Promise.race([attempt, deadline]);
  } finally {
    clearTimeout(timer);
    outer?.removeEventListener("abort", onOuter);
  }
}

function throwIfCancelled(signal: AbortSignal | undefined, cause?: unknown): void {
  if (signal?.aborted) throw abortError(signal, cause);
}
