/**
 * Flush: drain the replication backlog now and wait until it is empty, for
 * planned maintenance (README "Flush"). It starts a replication pass at once
 * (joining one already running), runs passes back to back until the outbox
 * is empty, and reports progress as it goes.
 *
 * When GCS cannot be reached it fails UNAVAILABLE after one real attempt,
 * not after the timeout: an open breaker only says GCS failed recently, so
 * the flush waits for the breaker's trial call (at most
 * GCS_BREAKER_RESET_SECONDS) and fails when that attempt, or any copy, finds
 * GCS unreachable. The backlog stays and keeps draining on its own once GCS
 * answers; the operator runs the flush again. With GCS up but a backlog
 * that does not empty within `timeoutMs` (a slow GCS, or writes still
 * arriving at the fallback), it fails DEADLINE_EXCEEDED.
 */
import { sleep, throwIfAborted, untilAborted } from "../signals.js";
import { Code, StorageError, unavailable } from "../storage-error.js";
import type { CircuitBreaker } from "./circuit-breaker.js";
import type { Replicator } from "./replicator.js";

/** One progress report. */
export interface FlushProgress {
  /** Writes waiting for replication now. */
  pending: number;
  /** Writes done (copied, or found superseded in GCS) since the flush began. */
  replicated: number;
  /** Attempts that failed since the flush began. */
  failed: number;
  oldestPendingAgeSeconds: number;
  /** The backlog is empty: the last report. */
  done: boolean;
}

export interface FlushTarget {
  replicator: Replicator;
  breaker: CircuitBreaker;
  /** The outbox now. */
  backlog(): { count: number; oldestAgeSeconds: number };
}

export interface FlushOptions {
  /** Fail DEADLINE_EXCEEDED after this long with writes still pending; absent = no limit of its own. */
  timeoutMs?: number;
  /** The caller's cancel or deadline: stops waiting (CANCELLED); a pass already running finishes in the background. */
  signal?: AbortSignal;
  /** Called at once, then every `progressIntervalMs` while the flush runs (not with the last report: that is the result). */
  onProgress?: (p: FlushProgress) => void;
  progressIntervalMs?: number;
}

/** Consecutive passes that replicate nothing, with GCS reachable, before the flush pauses between passes. */
const PAUSE_AFTER_IDLE_PASSES = 2;
const IDLE_PAUSE_MS = 200;
/** How often an open breaker is looked at while waiting for its trial call. */
const BREAKER_POLL_MS = 50;

/** Drains the backlog; resolves with the final report (done) or rejects UNAVAILABLE, DEADLINE_EXCEEDED or CANCELLED. */
export async function flushBacklog(target: FlushTarget, opts: FlushOptions = {}): Promise<FlushProgress> {
  const { replicator, breaker } = target;
  const began = replicator.totals();
  const report = (done: boolean): FlushProgress => {
    const now = replicator.totals();
    const backlog = target.backlog();
    return {
      pending: backlog.count,
      replicated: now.replicated - began.replicated,
      failed: now.failed - began.failed,
      oldestPendingAgeSeconds: backlog.count === 0 ? 0 : backlog.oldestAgeSeconds,
      done,
    };
  };
  const stillPending = () => {
    const r = report(false);
    return `${r.pending} write${r.pending === 1 ? "" : "s"} still pending (oldest ${Math.round(r.oldestPendingAgeSeconds)} s)`;
  };

  // One signal for the caller's cancel and the flush's own timeout, whose reason says what was left.
  const timeout = new AbortController();
  const timeoutTimer =
    opts.timeoutMs === undefined
      ? undefined
      : setTimeout(() => {
          const message = `flush stopped after its timeout (${opts.timeoutMs! / 1000} s) with ${stillPending()}; replication goes on in the background`;
          timeout.abort(new StorageError(Code.DeadlineExceeded, message));
        }, opts.timeoutMs);
  const signal = opts.signal ? AbortSignal.any([opts.signal, timeout.signal]) : timeout.signal;
  const pause = async (ms: number) => {
    await sleep(ms, signal);
    throwIfAborted(signal);
  };

  opts.onProgress?.(report(false));
  const progressTimer = opts.onProgress ? setInterval(() => opts.onProgress!(report(false)), opts.progressIntervalMs ?? 250) : undefined;
  try {
    let idle = 0;
    for (;;) {
      throwIfAborted(signal);
      // An earlier failure opened the breaker: wait for its trial call instead of failing on an old verdict.
      while (breaker.state === "open") await pause(BREAKER_POLL_MS);
      // A pass already running is joined; waiting for it ends with the signal (the pass goes on).
      const pass = await untilAborted(replicator.drain(), signal);
      if (pass.remaining === 0) return report(true);
      if (pass.unreachable) {
        // Someone else's trial call is running: its verdict is the one to wait for.
        if (breaker.state === "half-open") {
          await pause(BREAKER_POLL_MS);
          continue;
        }
        throw unavailable(`GCS is unreachable: ${stillPending()}; they replicate on their own once GCS answers, or flush again`);
      }
      // GCS answered but nothing moved (a write raced the copy, judged next pass): do not spin.
      idle = pass.replicated > 0 ? 0 : idle + 1;
      if (idle >= PAUSE_AFTER_IDLE_PASSES) await pause(IDLE_PAUSE_MS);
    }
  } finally {
    clearInterval(progressTimer);
    clearTimeout(timeoutTimer);
  }
}
