/** withRetry (attempts, backoff, timeouts, cancellation) and the circuit breaker (with an injected clock). */
import { CircuitBreaker, type BreakerState } from "../server/engine/circuit-breaker.js";
import { backoffCeiling, withRetry } from "../server/backends/gcs/retry.js";
import { Code, StorageError } from "../server/storage-error.js";
import { expectStorageError } from "./backend-conformance.js";

const unavailable = () => new StorageError(Code.Unavailable, "down");

describe("withRetry", () => {
  test("returns the first success and counts attempts", async () => {
    let attempts = 0;
    const result = await withRetry(
      async () => {
        attempts++;
        if (attempts < 3) throw unavailable();
        return "ok";
      },
      { maxRetries: 5, timeoutMs: 1000, baseDelayMs: 1 },
    );
    expect(result).toBe("ok");
    expect(attempts).toBe(3);
  });

  test("gives up after maxRetries retries with the last error", async () => {
    let attempts = 0;
    const retries: number[] = [];
    const err = await expectStorageError(
      withRetry(
        async () => {
          attempts++;
          throw new StorageError(Code.Unavailable, `down ${attempts}`);
        },
        { maxRetries: 3, timeoutMs: 1000, baseDelayMs: 1, onRetry: (n) => retries.push(n) },
      ),
      Code.Unavailable,
    );
    expect(attempts).toBe(4);
    expect(retries).toEqual([1, 2, 3]);
    expect(err.message).toBe("down 4");
  });

  test("maxRetries 0 is one attempt", async () => {
    let attempts = 0;
    await expectStorageError(withRetry(async () => { attempts++; throw unavailable(); }, { maxRetries: 0, timeoutMs: 1000 }), Code.Unavailable);
    expect(attempts).toBe(1);
  });

  test("stops at once on a non-retryable error", async () => {
    for (const code of [Code.NotFound, Code.FailedPrecondition, Code.InvalidArgument, Code.DataLoss]) {
      let attempts = 0;
      await expectStorageError(
        withRetry(async () => { attempts++; throw new StorageError(code, "no"); }, { maxRetries: 5, timeoutMs: 1000, baseDelayMs: 1 }),
        code,
      );
      expect(attempts).toBe(1);
    }
    // Plain errors are not retried by default either.
    let attempts = 0;
    await expect(withRetry(async () => { attempts++; throw new Error("bug"); }, { maxRetries: 5, timeoutMs: 1000 })).rejects.toThrow("bug");
    expect(attempts).toBe(1);
  });

  test("a custom retryable rule decides", async () => {
    let attempts = 0;
    await expect(
      withRetry(async () => { attempts++; throw new Error("flaky"); }, { maxRetries: 2, timeoutMs: 1000, baseDelayMs: 1, retryable: () => true }),
    ).rejects.toThrow("flaky");
    expect(attempts).toBe(3);
  });

  test("backoff delays stay within the full-jitter ceiling", async () => {
    expect([1, 2, 3, 4, 10].map((n) => backoffCeiling(n, 10, 50))).toEqual([10, 20, 40, 50, 50]);
    const delays: number[] = [];
    await expectStorageError(
      withRetry(async () => { throw unavailable(); }, {
        maxRetries: 6, timeoutMs: 1000, baseDelayMs: 10, maxDelayMs: 40, onRetry: (_, __, d) => delays.push(d),
      }),
      Code.Unavailable,
    );
    expect(delays).toHaveLength(6);
    delays.forEach((d, i) => {
      expect(d).toBeGreaterThanOrEqual(0);
      expect(d).toBeLessThan(backoffCeiling(i + 1, 10, 40));
    });
  });

  test("the total time is bounded by the backoff ceilings", async () => {
    const started = Date.now();
    await expectStorageError(
      withRetry(async () => { throw unavailable(); }, { maxRetries: 4, timeoutMs: 1000, baseDelayMs: 20, maxDelayMs: 40 }),
      Code.Unavailable,
    );
    // Ceilings 20 + 40 + 40 + 40 = 140 ms at most, plus scheduling slack.
    expect(Date.now() - started).toBeLessThan(600);
  });

  test("an attempt past its timeout is abandoned, its signal aborted, and it counts as DEADLINE_EXCEEDED", async () => {
    const signals: AbortSignal[] = [];
    const started = Date.now();
    await expectStorageError(
      withRetry((signal) => { signals.push(signal); return new Promise(() => undefined); }, { maxRetries: 2, timeoutMs: 50, baseDelayMs: 1 }),
      Code.DeadlineExceeded,
    );
    expect(signals).toHaveLength(3);
    expect(signals.every((s) => s.aborted)).toBe(true);
    expect(Date.now() - started).toBeLessThan(1000);
  });

  test("a timeout of 0 means no per-attempt deadline", async () => {
    const result = await withRetry(() => new Promise((r) => setTimeout(() => r("late"), 60)), { maxRetries: 0, timeoutMs: 0 });
    expect(result).toBe("late");
  });

  test("an aborted caller stops the attempt and any retry with CANCELLED", async () => {
    const ac = new AbortController();
    let attempts = 0;
    let attemptSignal: AbortSignal | undefined;
    const running = withRetry(
      (signal) => {
        attempts++;
        attemptSignal = signal;
        return new Promise((_, reject) => signal.addEventListener("abort", () => reject(unavailable())));
      },
      { maxRetries: 5, timeoutMs: 10_000, signal: ac.signal },
    );
    setTimeout(() => ac.abort(), 20);
    await expectStorageError(running, Code.Cancelled);
    expect(attempts).toBe(1);
    expect(attemptSignal!.aborted).toBe(true);
  });

  test("an abort during the backoff ends the wait early", async () => {
    const ac = new AbortController();
    let attempts = 0;
    const started = Date.now();
    const running = withRetry(
      async () => {
        attempts++;
        throw unavailable();
      },
      { maxRetries: 5, timeoutMs: 1000, baseDelayMs: 10_000, maxDelayMs: 10_000, signal: ac.signal },
    );
    setTimeout(() => ac.abort(), 30);
    await expectStorageError(running, Code.Cancelled);
    expect(attempts).toBeLessThanOrEqual(2);
    expect(Date.now() - started).toBeLessThan(2000);
  });

  test("an already aborted signal makes no attempt", async () => {
    let attempts = 0;
    await expectStorageError(withRetry(async () => attempts++, { maxRetries: 3, timeoutMs: 100, signal: AbortSignal.abort() }), Code.Cancelled);
    expect(attempts).toBe(0);
  });
});

describe("CircuitBreaker", () => {
  function setup(failureThreshold = 3, resetTimeoutMs = 1000) {
    let t = 0;
    const breaker = new CircuitBreaker({ failureThreshold, resetTimeoutMs, now: () => t });
    const changes: BreakerState[] = [];
    breaker.onStateChange = (s) => changes.push(s);
    return { breaker, changes, advance: (ms: number) => (t += ms) };
  }
  const fail = () => Promise.reject(unavailable());
  const ok = () => Promise.resolve("ok");

  test("opens after N consecutive failures and then fails fast without calling", async () => {
    const { breaker, changes } = setup(3);
    for (let i = 0; i < 3; i++) {
      expect(breaker.state).toBe("closed");
      await expectStorageError(breaker.run(fail), Code.Unavailable);
    }
    expect(breaker.state).toBe("open");
    expect(changes).toEqual(["open"]);
    let called = false;
    const err = await expectStorageError(breaker.run(async () => { called = true; }), Code.Unavailable);
    expect(called).toBe(false);
    expect(err.message).toContain("circuit open");
  });

  test("a success resets the count of consecutive failures", async () => {
    const { breaker } = setup(3);
    await expectStorageError(breaker.run(fail), Code.Unavailable);
    await expectStorageError(breaker.run(fail), Code.Unavailable);
    await breaker.run(ok);
    await expectStorageError(breaker.run(fail), Code.Unavailable);
    await expectStorageError(breaker.run(fail), Code.Unavailable);
    expect(breaker.state).toBe("closed");
  });

  test("errors that are answers (not found, precondition) do not count", async () => {
    const { breaker } = setup(1);
    for (let i = 0; i < 5; i++) {
      await expectStorageError(breaker.run(() => Promise.reject(new StorageError(Code.FailedPrecondition, "no"))), Code.FailedPrecondition);
    }
    expect(breaker.state).toBe("closed");
    // A custom rule can count them.
    await expect(breaker.run(() => Promise.reject(new Error("x")), () => true)).rejects.toThrow("x");
    expect(breaker.state).toBe("open");
  });

  test("half-open after the reset timeout: one trial call; success closes", async () => {
    const { breaker, changes, advance } = setup(1, 1000);
    await expectStorageError(breaker.run(fail), Code.Unavailable);
    advance(999);
    expect(breaker.state).toBe("open");
    advance(1);
    expect(breaker.state).toBe("half-open");
    let release!: () => void;
    const trial = breaker.run(() => new Promise<string>((r) => (release = () => r("trial"))));
    // Only one trial at a time.
    await expectStorageError(breaker.run(ok), Code.Unavailable);
    release();
    expect(await trial).toBe("trial");
    expect(breaker.state).toBe("closed");
    expect(changes).toEqual(["open", "half-open", "closed"]);
    expect(await breaker.run(ok)).toBe("ok");
  });

  test("a failed trial opens it again for another reset timeout", async () => {
    const { breaker, changes, advance } = setup(2, 500);
    await expectStorageError(breaker.run(fail), Code.Unavailable);
    await expectStorageError(breaker.run(fail), Code.Unavailable);
    advance(500);
    await expectStorageError(breaker.run(fail), Code.Unavailable);
    expect(breaker.state).toBe("open");
    advance(499);
    expect(breaker.state).toBe("open");
    advance(1);
    expect(breaker.state).toBe("half-open");
    expect(changes).toEqual(["open", "half-open", "open", "half-open"]);
  });
});
