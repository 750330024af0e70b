/**
 * Whether a series of process readings (test/kit/process-usage.ts) stayed
 * flat: the soak's verdict on memory and descriptors.
 */
import type { Usage } from "../../test/kit/process-usage.js";
import { median } from "./bench-report.js";

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
