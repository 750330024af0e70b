/**
 * A circuit breaker keeps a dead tier from costing every request its full
 * timeout. Closed: calls pass and consecutive failures are counted; at
 * `failureThreshold` it opens. Open: calls fail at once with UNAVAILABLE
 * until `resetTimeoutMs` has passed; then it is half-open and lets exactly
 * one trial call through: success closes it, failure opens it again.
 *
 * Only failures that say "the tier cannot be reached" count; any other error
 * is an answer from a working tier (success), and a call cancelled by its
 * caller says nothing about the tier (neither). So no single caller can open
 * it with requests of its own making. The daemon's own probe (health checks)
 * is a tier-wide signal: its failure opens the breaker at once (trip()).
 */
import { Code, StorageError } from "../storage-error.js";

export type BreakerState = "closed" | "open" | "half-open";

export interface CircuitBreakerOptions {
  failureThreshold: number;
  resetTimeoutMs: number;
  /** Clock in milliseconds (injected by tests). */
  now?: () => number;
}

/** By default only "cannot reach the tier" counts as a failure; a miss or a precondition failure is an answer. */
const isOutage = (e: unknown): boolean => StorageError.is(e, Code.Unavailable, Code.DeadlineExceeded);

export class CircuitBreaker {
  /** Called on every state change (metrics, logs, health). */
  onStateChange?: (state: BreakerState) => void;

  private current: BreakerState = "closed";
  private failures = 0;
  private openedAt = 0;
  private trialInFlight = false;
  private readonly now: () => number;

  constructor(private readonly opts: CircuitBreakerOptions) {
    this.now = opts.now ?? Date.now;
  }

  /** The state now; an open breaker whose reset timeout has passed reads as half-open. */
  get state(): BreakerState {
    if (this.current === "open" && this.now() - this.openedAt >= this.opts.resetTimeoutMs) this.transition("half-open");
    return this.current;
  }

  /**
   * Runs `fn` unless the breaker is open (or a half-open trial is already
   * running), in which case it throws UNAVAILABLE without calling it.
   * `isFailure` decides which errors count against the tier (default:
   * UNAVAILABLE and DEADLINE_EXCEEDED); other errors pass through and count
   * as a working tier.
   */
  async run<T>(fn: () => Promise<T>, isFailure: (e: unknown) => boolean = isOutage): Promise<T> {
    const state = this.state;
    if (state === "open" || (state === "half-open" && this.trialInFlight)) {
      const waitMs = state === "open" ? Math.max(0, this.opts.resetTimeoutMs - (this.now() - this.openedAt)) : 0;
      throw new StorageError(
        Code.Unavailable,
        `storage tier unavailable: circuit open after ${this.opts.failureThreshold} consecutive failures` +
          (state === "open" ? `; next trial in ${Math.ceil(waitMs)} ms` : "; a trial call is running"),
      );
    }
    const trial = state === "half-open";
    if (trial) this.trialInFlight = true;
    try {
      const result = await fn();
      this.succeeded();
      return result;
    } catch (err) {
      if (isFailure(err)) this.failed(trial);
      else if (!StorageError.is(err, Code.Cancelled)) this.succeeded();
      throw err;
    } finally {
      if (trial) this.trialInFlight = false;
    }
  }

  /** Opens the breaker now: a tier-wide check (the daemon's probe) found the tier down. */
  trip(): void {
    this.failures = Math.max(this.failures, this.opts.failureThreshold);
    this.openedAt = this.now();
    this.transition("open");
  }

  private succeeded(): void {
    this.failures = 0;
    if (this.current !== "closed") this.transition("closed");
  }

  private failed(trial: boolean): void {
    this.failures++;
    if (trial || (this.current === "closed" && this.failures >= this.opts.failureThreshold)) {
      this.openedAt = this.now();
      this.transition("open");
    }
  }

  private transition(next: BreakerState): void {
    if (next === this.current) return;
    this.current = next;
    this.onStateChange?.(next);
  }
}
