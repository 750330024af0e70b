/**
 * Progress bars of the client commands, on stderr and only when stderr is a
 * terminal (piped or redirected output stays clean): bytes for put and get,
 * writes for flush, a running count for usage, bytes per tier for verify.
 */
import { MultiBar, Presets, SingleBar } from "cli-progress";
import type { FlushProgress, Usage } from "../../client/src/index.js";
import { humanSize } from "./list-format.js";

const MiB = 1024 * 1024;

export interface Progress<A extends unknown[]> {
  update: (...args: A) => void;
  stop: () => void;
}

/** A bar that starts at its first update and stops once. */
function lazyBar<A extends unknown[]>(format: string, first: (bar: SingleBar, ...args: A) => void, next: (bar: SingleBar, ...args: A) => void): Progress<A> | undefined {
  if (!process.stderr.isTTY) return undefined;
  const bar = new SingleBar({ stream: process.stderr, format, hideCursor: true }, Presets.shades_classic);
  let started = false;
  let stopped = false;
  return {
    update: (...args) => {
      if (stopped) return;
      if (!started) {
        started = true;
        first(bar, ...args);
      } else {
        next(bar, ...args);
      }
    },
    stop: () => {
      if (started && !stopped) bar.stop();
      stopped = true;
    },
  };
}

/** A byte progress bar ("put [====] 40% | 12.0/30.0 MiB"), or undefined when stderr is not a terminal. */
export function byteBar(label: string): Progress<[done: number, total?: number]> | undefined {
  const mib = (n: number): string => (n / MiB).toFixed(1);
  const payload = (done: number, total?: number) => ({ doneMiB: mib(done), totalMiB: total === undefined ? "?" : mib(total) });
  return lazyBar<[number, number?]>(
    `${label} [{bar}] {percentage}% | {doneMiB}/{totalMiB} MiB`,
    (bar, done, total) => bar.start(total ?? 0, done, payload(done, total)),
    (bar, done, total) => {
      if (total !== undefined) bar.setTotal(total);
      bar.update(done, payload(done, total));
    },
  );
}

/** The flush bar ("flush [====] 12/30 writes | 18 pending, oldest 42 s | 0 failed attempts"), or undefined off a terminal. */
export function flushBar(): Progress<[p: FlushProgress]> | undefined {
  const payload = (p: FlushProgress) => ({ pending: p.pending, oldest: Math.round(p.oldestPendingAgeSeconds), failed: p.failed });
  // The total grows if writes keep arriving at the fallback while the flush runs.
  const total = (p: FlushProgress) => Math.max(1, p.replicated + p.pending);
  // A flush with nothing to do ends full, not at 0/1.
  const value = (p: FlushProgress) => (p.done ? total(p) : p.replicated);
  return lazyBar<[FlushProgress]>(
    "flush [{bar}] {value}/{total} writes | {pending} pending, oldest {oldest} s | {failed} failed attempts",
    (bar, p) => bar.start(total(p), value(p), payload(p)),
    (bar, p) => {
      bar.setTotal(total(p));
      bar.update(value(p), payload(p));
    },
  );
}

/** The running count of usage while the daemon lists ("usage logs/ | 12000 objects | 3.1 GiB"), or undefined off a terminal. */
export function countBar(prefix: string): Progress<[u: Usage]> | undefined {
  const payload = (u: Usage) => ({ objects: u.objectCount, bytes: humanSize(u.totalBytes) });
  return lazyBar<[Usage]>(
    `usage ${prefix || "(every key)"} | {objects} objects | {bytes}`,
    (bar, u) => bar.start(0, 0, payload(u)),
    (bar, u) => bar.update(0, payload(u)),
  );
}

/**
 * Verify's progress bar on stderr when it is a terminal, and where findings
 * go meanwhile: `write` (stdout), or above the bar when both are the same terminal.
 */
export function verifyBar(write: (text: string) => Promise<void>): { update?: (done: number, total: number, tier: string) => void; print(line: string): Promise<void>; stop(): void } {
  if (!process.stderr.isTTY) return { print: write, stop: () => undefined };
  const bars = new MultiBar(
    { stream: process.stderr, format: "verify {tier} [{bar}] {percentage}% | {doneMiB}/{totalMiB} MiB", hideCursor: true, clearOnComplete: false },
    Presets.shades_classic,
  );
  const mib = (n: number): string => (n / MiB).toFixed(1);
  let bar: SingleBar | undefined;
  return {
    update(done, total, tier) {
      const payload = { doneMiB: mib(done), totalMiB: mib(total), tier };
      if (bar === undefined) bar = bars.create(total, done, payload);
      else {
        bar.setTotal(total);
        bar.update(done, payload);
      }
    },
    async print(line) {
      if (process.stdout.isTTY) bars.log(line);
      else await write(line);
    },
    stop() {
      // Lines logged since the last redraw are written by a redraw only, not by stop().
      bars.update();
      bars.stop();
    },
  };
}
