/**
 * What every benchmark shares before it measures anything: its settings from
 * the environment, whether the glibc malloc tuning that `npm start` uses
 * (test/kit/malloc-tuning.ts) applies (to the benchmark process itself, see
 * bench-run.ts, and to the servers it spawns), and a one-line description
 * of the machine for the results.
 */
import * as os from "node:os";
import { MALLOC_TUNING } from "../../test/kit/malloc-tuning.js";

export const MiB = 1024 * 1024;
export const KiB = 1024;

/** False when BENCH_MALLOC_TUNING=off: then neither the bench nor its servers are tuned. */
export function mallocTuningWanted(): boolean {
  const raw = (process.env.BENCH_MALLOC_TUNING ?? "on").trim().toLowerCase();
  if (raw === "on" || raw === "1" || raw === "true") return true;
  if (raw === "off" || raw === "0" || raw === "false") return false;
  throw new Error(`BENCH_MALLOC_TUNING must be on or off, got "${raw}"`);
}

/** The malloc variables for a child process, or none when tuning is off. */
export function mallocEnv(): Record<string, string> {
  return mallocTuningWanted() ? { ...MALLOC_TUNING } : {};
}

/** A positive integer from the environment variable `name`, or `fallback`. */
export function positiveInt(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === "") return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer, got "${raw}"`);
  return n;
}

/** A comma-separated list of positive integers from `name`, e.g. "1,16". */
export function positiveInts(name: string, fallback: number[]): number[] {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === "") return fallback;
  return raw.split(",").map((part) => {
    const n = Number(part.trim());
    if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`${name} must be positive integers separated by commas, got "${raw}"`);
    return n;
  });
}

/** Where benchmarks put their files: BENCH_DIR, else the system temp folder. */
export function scratchRoot(): string {
  return process.env.BENCH_DIR || os.tmpdir();
}

/** e.g. "2 cores (AMD EPYC), 23.5 GiB RAM, node v20.20.2, linux 6.1, malloc tuning on". */
export function machineLine(): string {
  const cpus = os.cpus();
  const model = cpus[0]?.model.trim() ?? "unknown cpu";
  return (
    `${os.availableParallelism()} cores (${model}), ${(os.totalmem() / 1024 ** 3).toFixed(1)} GiB RAM, ` +
    `node ${process.version}, ${os.platform()} ${os.release()}, ` +
    `load average ${os.loadavg().map((l) => l.toFixed(1)).join("/")}, ` +
    `malloc tuning ${mallocTuningWanted() ? "on (MALLOC_MMAP_THRESHOLD_=67108864 MALLOC_TRIM_THRESHOLD_=134217728, bench and servers)" : "off"}`
  );
}
