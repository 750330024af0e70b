/** The circuit breaker (with an injected clock). withRetry: test/unit/backends/gcs-retry.test.ts. */
import { CircuitBreaker, type BreakerState } from "../../../server/engine/circuit-breaker.js";
import { Code, StorageError } from "../../../server/storage-error.js";
import { expectStorageError } from "../../support/backend-io.js";

const unavailable = () => new StorageError(Code.Unavailable, "down");

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
