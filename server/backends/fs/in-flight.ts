/**
 * Operations a backend must not abandon when it closes. Each runs with its
 * own signal, which aborts when the caller's does or when the backend closes;
 * close() aborts the ones still running and waits, up to a bound, until each
 * has settled and so has cleaned up after itself (e.g. removed its temp file)
 * before the process may exit.
 */

export interface InFlight {
  /** Runs `fn` tracked. Once close() began it rejects at once with the factory's error. */
  run<T>(signal: AbortSignal | undefined, fn: (signal: AbortSignal) => Promise<T>): Promise<T>;
  /** How many operations are running. */
  readonly size: number;
  /**
   * Refuses new operations, aborts the running ones with `reason`, and resolves
   * once all of them settled or `waitMs` passed: true when all settled.
   */
  close(reason: unknown, waitMs: number): Promise<boolean>;
}

/** An empty tracker; `closedError` makes the rejection of work offered after close(). */
export function createInFlight(closedError: () => Error): InFlight {
  const running = new Map<Promise<unknown>, AbortController>();
  let closing = false;
  return {
    run<T>(signal: AbortSignal | undefined, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
      if (closing) return Promise.reject(closedError());
      const ac = new AbortController();
      const forward = () => ac.abort(signal!.reason);
      if (signal?.aborted) forward();
      else signal?.addEventListener("abort", forward, { once: true });
      const task = fn(ac.signal);
      const tracked = task.then(
        () => undefined,
        () => undefined,
      );
      running.set(tracked, ac);
      void tracked.then(() => {
        signal?.removeEventListener("abort", forward);
        running.delete(tracked);
      });
      return task;
    },
    get size() {
      return running.size;
    },
    async close(reason, waitMs) {
      closing = true;
      if (running.size === 0) return true;
      for (const ac of running.values()) ac.abort(reason);
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), waitMs);
      });
      try {
        return await Promise.race([Promise.all(running.keys()).then(() => true), timedOut]);
      } finally {
        clearTimeout(timer);
      }
    },
  };
}
