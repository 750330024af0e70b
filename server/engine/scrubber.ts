/**
 * The scrubber: Verify in the background, slowly. A pass walks the local
 * tier and the disk cache (never GCS: that would be a full download of the
 * bucket), re-reading at most `bytesPerSecond` (a token bucket of one
 * second's worth), repairing what it can and reporting every finding. A
 * pass starts `intervalMs` after the previous one ended (the first that
 * long after start-up); passes never overlap; stop() ends one mid-way.
 */
import { sleep } from "../signals.js";
import type { VerifyEvent, VerifyFinding, VerifyOptions, VerifySummary } from "./verify.js";

export interface ScrubberOptions {
  /** Runs one verification (verify.ts verifyCopies over the stack's tiers). */
  verify: (opts: VerifyOptions) => AsyncIterable<VerifyEvent>;
  /** SCRUB_BYTES_PER_SECOND; 0 = no scrubber. */
  bytesPerSecond: number;
  /** SCRUB_INTERVAL_SECONDS in ms. */
  intervalMs: number;
  onFinding?: (finding: VerifyFinding) => void;
  /** Bytes re-read. */
  onBytes?: (bytes: number) => void;
  onPass?: (summary: VerifySummary) => void;
  log?: { warn(obj: object, msg: string): void; info(obj: object, msg: string): void };
}

export interface Scrubber {
  /** Runs a pass now (joins one already running); resolves with its summary. */
  pass(): Promise<VerifySummary | undefined>;
  stop(): Promise<void>;
}

/** Starts the scrubber; with bytesPerSecond 0 it never runs by itself (pass() still works, unpaced). */
export function startScrubber(opts: ScrubberOptions): Scrubber {
  const stopping = new AbortController();
  let running: Promise<VerifySummary | undefined> | undefined;
  let timer: NodeJS.Timeout | undefined;
  const rate = opts.bytesPerSecond;

  // A token bucket: up to one second's worth may be read at once, then the rate.
  let tokens = rate;
  let filledAt = performance.now();
  async function pace(bytes: number): Promise<void> {
    opts.onBytes?.(bytes);
    if (rate <= 0) return;
    const now = performance.now();
    tokens = Math.min(rate, tokens + ((now - filledAt) / 1000) * rate) - bytes;
    filledAt = now;
    if (tokens < 0) await sleep((-tokens / rate) * 1000, stopping.signal);
  }

  async function run(): Promise<VerifySummary | undefined> {
    let summary: VerifySummary | undefined;
    try {
      for await (const event of opts.verify({ prefix: "", includeGcs: false, repair: true, signal: stopping.signal, pace, progressEveryMs: 60_000 })) {
        if (event.type === "finding") {
          opts.onFinding?.(event.finding);
          opts.log?.warn({ ...event.finding, generation: event.finding.generation.toString() }, "scrubber: a stored copy failed its check");
        } else if (event.type === "summary") summary = event.summary;
      }
      if (summary) opts.onPass?.(summary);
    } catch (err) {
      if (!stopping.signal.aborted) opts.log?.warn({ err }, "scrubber pass failed; the next one starts on schedule");
    }
    return summary;
  }

  function pass(): Promise<VerifySummary | undefined> {
    running ??= run().finally(() => {
      running = undefined;
      schedule();
    });
    return running;
  }

  function schedule(): void {
    if (rate <= 0 || stopping.signal.aborted) return;
    clearTimeout(timer);
    timer = setTimeout(() => void pass(), opts.intervalMs);
    timer.unref();
  }

  schedule();
  return {
    pass,
    async stop() {
      stopping.abort();
      clearTimeout(timer);
      await running;
    },
  };
}
