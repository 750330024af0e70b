/**
 * How every benchmark runs, so each behaves the same from `npm run bench` and
 * on its own:
 *   - with the glibc malloc tuning of `npm start` (relaunching itself with it
 *     when asked and missing: glibc reads it at start-up only);
 *   - a failure ends it with one line ("<name>: FAILED: <message>", exit 1),
 *     not a stack trace;
 *   - SIGINT or SIGTERM (Ctrl-C) stops what it started (daemons, emulators:
 *     SIGTERM, SIGKILL after 3 s), removes its temp folders and exits 130;
 *   - at the end it prints its run time and its peak disk use: the bytes
 *     allocated under its temp folders (test/kit/temp-dir.ts), sampled every
 *     BENCH_DISK_SAMPLE_SECONDS (default 2; the walk costs a little CPU) and
 *     once more just before each folder is removed.
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { MALLOC_TUNING } from "../../test/kit/malloc-tuning.js";
import { beforeFolderRemoved, ownChild, ownedFolders, releaseAll } from "../../test/kit/owned-resources.js";
import { secondsSince } from "./bench-report.js";
import { mallocTuningWanted, MiB, positiveInt } from "./bench-settings.js";

/** The exit code of a benchmark stopped by SIGINT or SIGTERM (128 + SIGINT, as shells report Ctrl-C). */
export const INTERRUPTED_EXIT_CODE = 130;
/** How long an interrupted relaunch waits for its child to clean up before killing it. */
const CHILD_CLEANUP_MS = 30_000;

export interface BenchOptions {
  /** Relaunch with MALLOC_TUNING unless BENCH_MALLOC_TUNING=off (benches whose numbers depend on malloc). */
  mallocTuning?: boolean;
}

/** Runs `main` as the benchmark `name` (see the file comment); call it once, at the bottom of the bench. */
export function runBench(name: string, main: () => Promise<void>, opts: BenchOptions = {}): void {
  if (opts.mallocTuning && mallocTuningWanted() && !Object.entries(MALLOC_TUNING).every(([k, v]) => process.env[k] === v)) {
    relaunch();
    return;
  }
  const started = process.hrtime.bigint();
  let interrupted = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupted) return;
    interrupted = true;
    console.error(`\n${name}: ${signal}: stopping what it started and removing its temp folders`);
    void releaseAll().finally(() => process.exit(INTERRUPTED_EXIT_CODE));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  const disk = startDiskSampler();
  void main()
    .then(
      () => true,
      (err: unknown) => {
        if (!interrupted) console.error(`${name}: FAILED: ${oneLine(err)}`);
        return false;
      },
    )
    .then(async (ok) => {
      if (interrupted) return;
      // A bench that failed half-way may not have stopped everything.
      await releaseAll();
      disk.stop();
      console.log(`(${name}: run time ${secondsSince(started).toFixed(1)} s, peak disk ${(disk.peak() / MiB).toFixed(1)} MiB (${disk.peak()} bytes) under its temp folders)`);
      if (!ok) process.exitCode = 1;
    });
}

/** The first line of an error's message (a stack trace helps nobody running a bench). */
function oneLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.split("\n", 1)[0]!.trim();
}

/** This script again, with the malloc tuning; signals go to it, and its exit code becomes ours. */
function relaunch(): void {
  const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
    stdio: "inherit",
    env: { ...process.env, ...MALLOC_TUNING },
  });
  ownChild(child);
  let interrupted = false;
  const forward = (signal: NodeJS.Signals) => {
    interrupted = true;
    child.kill(signal);
    setTimeout(() => child.kill("SIGKILL"), CHILD_CLEANUP_MS).unref();
  };
  process.on("SIGINT", forward);
  process.on("SIGTERM", forward);
  child.once("exit", (code) => process.exit(interrupted ? INTERRUPTED_EXIT_CODE : (code ?? 1)));
}

interface DiskSampler {
  peak(): number;
  stop(): void;
}

/** Samples the bytes allocated under the registered temp folders, and each folder once more before it goes. */
function startDiskSampler(): DiskSampler {
  let peak = 0;
  let busy = false;
  const sample = async (extra?: string) => {
    const folders = ownedFolders();
    if (extra !== undefined && !folders.includes(extra)) folders.push(extra);
    let total = 0;
    for (const folder of folders) total += await allocatedBytes(folder);
    peak = Math.max(peak, total);
  };
  beforeFolderRemoved((folder) => sample(folder));
  const timer = setInterval(() => {
    if (busy) return;
    busy = true;
    void sample().finally(() => (busy = false));
  }, positiveInt("BENCH_DISK_SAMPLE_SECONDS", 2) * 1000);
  timer.unref();
  return { peak: () => peak, stop: () => clearInterval(timer) };
}

/** Bytes allocated on disk (st_blocks, as du counts) by everything under `dir`; files vanishing meanwhile count 0. */
async function allocatedBytes(dir: string): Promise<number> {
  let entries: import("node:fs").Dirent[];
  try {
    entries = await fs.readdir(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  let total = 0;
  for (const entry of entries) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) total += await allocatedBytes(full);
    else total += await fs.lstat(full).then((s) => s.blocks * 512, () => 0);
  }
  return total;
}
