/**
 * Periodic background work with any period. Node's timers hold at most
 * 2^31-1 ms (about 24.8 days) and fire after 1 ms for anything longer, so a
 * 30-day GCS_SWEEP_SECONDS given to setInterval would run its sweep without
 * pause; a longer period here is waited out in steps. The timers never keep
 * the process alive.
 */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Calls `fn` every `periodMs` until the returned stop() is called. */
export function every(periodMs: number, fn: () => void): () => void {
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const wait = (remaining: number) => {
    const step = Math.min(remaining, MAX_TIMER_MS);
    timer = setTimeout(() => {
      if (stopped) return;
      if (remaining > step) return wait(remaining - step);
      fn();
      if (!stopped) wait(periodMs);
    }, step);
    timer.unref();
  };
  wait(periodMs);
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
