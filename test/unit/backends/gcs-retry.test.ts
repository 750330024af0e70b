/** withRetry of the GCS backend: attempts, backoff, timeouts, cancellation. The circuit breaker: test/unit/engine/circuit-breaker.test.ts. */
import { backoffCeiling, withRetry } from "../../../server/backends/gcs/retry.js";
import { Code, StorageError } from "../../../server/storage-error.js";
import { expectStorageError } from "../../support/backend-io.js";

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
