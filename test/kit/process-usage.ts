/**
 * What a process holds, read from Linux /proc: resident memory (VmRSS) and
 * open file descriptors (entries of /proc/<pid>/fd), once or sampled on a
 * timer, and whether a series of them stayed flat.
 */
import * as fs from "node:fs";
import { median } from "./bench-report.js";

export interface Usage {
  /** Milliseconds since the sampler started (0 for a single reading). */
  atMs: number;
  rssBytes: number;
  fds: number;
}

/** The process's usage now; throws when the process is gone. */
export function usageOf(pid: number): Usage {
  const kb = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
  return { atMs: 0, rssBytes: kb ? Number(kb[1]) * 1024 : NaN, fds: fs.readdirSync(`/proc/${pid}/fd`).length };
}

export interface Sampler {
  /** Stops sampling; returns every sample taken (one at the start, then one per interval). */
  stop(): Usage[];
}

/** Samples `pid` now and every `everyMs` until stop(). */
export function sampleUsage(pid: number, everyMs = 1000): Sampler {
  const started = Date.now();
  const samples: Usage[] = [];
  const take = () => {
    try {
      samples.push({ ...usageOf(pid), atMs: Date.now() - started });
    } catch {
      // The process ended; the caller finds out on its own.
    }
  };
  take();
  const timer = setInterval(take, everyMs);
  return {
    stop() {
      clearInterval(timer);
      take();
      return samples;
    },
  };
}

export interface Flatness {
  start: number;
  /** Median over the early window (after warm-up): the level the end is compared with. */
  early: number;
  max: number;
  /** Median over the last window. */
  end: number;
  /** end - early. */
  growth: number;
  allowed: number;
  flat: boolean;
}

/**
 * Whether `field` stayed flat over `samples`: the median of the last
 * `windowMs` is at most `allowed(early)` above the median of the window that
 * starts after `warmupMs` (so ramp-up is not mistaken for growth).
 */
export function flatness(samples: Usage[], field: "rssBytes" | "fds", opts: { warmupMs: number; windowMs: number; allowed: (early: number) => number }): Flatness {
  const values = (from: number, to: number) => samples.filter((s) => s.atMs >= from && s.atMs <= to).map((s) => s[field]);
  const last = samples.at(-1)?.atMs ?? 0;
  const early = median(values(opts.warmupMs, opts.warmupMs + opts.windowMs));
  const end = median(values(last - opts.windowMs, last));
  const allowed = opts.allowed(early);
  return {
    start: samples[0]?.[field] ?? NaN,
    early,
    max: Math.max(...samples.map((s) => s[field])),
    end,
    growth: end - early,
    allowed,
    flat: end - early <= allowed,
  };
}
