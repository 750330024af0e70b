/**
 * The benchmarks from a fresh shell: `node dist/bench/run-all.js gcs` gets
 * its tools from test/setup/install-tools.sh, runs, and ends with its run
 * time and peak disk use; interrupted mid-run (SIGINT to run-all, as Ctrl-C
 * would, or SIGTERM to a bench started on its own, which relaunches itself
 * with the malloc tuning), it exits 130 and leaves no process it started
 * and nothing in its temp folder. The GCS bench is used because it starts the
 * most: a daemon and the emulator. Sizes are tiny (BENCH_* settings), so the
 * measurement itself takes seconds. Needs dist/ (`npm run build`).
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { repoRoot } from "../kit/repo-root.js";
import { makeTempDir, type TempDir } from "../kit/temp-dir.js";
import { descendants, stillRunning, type ProcessInfo } from "../support/process-tree.js";

const root = repoRoot();
const TINY = { BENCH_GCS_OBJECTS: "5", BENCH_GCS_OBJECT_KIB: "4", BENCH_GCS_LARGE_MIB: "1", BENCH_IN_FLIGHT: "1" };

interface BenchRun {
  pid: number;
  output(): string;
  exited: Promise<number | null>;
}

/** Starts `node <script> args` with its own TMPDIR (so whatever it leaves is seen) and `env`. */
function startBench(script: string, args: string[], tmp: string, env: Record<string, string>): BenchRun {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, TMPDIR: tmp, ...env };
  // A bench started on its own relaunches itself only when the tuning is missing.
  delete childEnv.MALLOC_MMAP_THRESHOLD_;
  delete childEnv.MALLOC_TRIM_THRESHOLD_;
  const child = spawn(process.execPath, [path.join(root, script), ...args], { cwd: root, env: childEnv, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr.on("data", (d: Buffer) => (out += d.toString()));
  return { pid: child.pid!, output: () => out, exited: new Promise((resolve) => child.once("exit", (code) => resolve(code))) };
}

/** Waits until the bench measures (its header is out) with a daemon and the emulator running under it; returns its descendants then. */
async function whenMeasuring(run: BenchRun, timeoutMs = 60_000): Promise<ProcessInfo[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const tree = descendants(run.pid);
    const daemon = tree.some((p) => p.cmdline.includes("bin/filestorage.js serve"));
    const emulator = tree.some((p) => p.cmdline.includes("fake-gcs-server"));
    if (daemon && emulator && run.output().includes("GCS tier vs the SDK")) return tree;
    if (Date.now() > deadline) throw new Error(`the bench did not start measuring in ${timeoutMs / 1000} s:\n${run.output()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

let tmp: TempDir;
beforeEach(async () => {
  tmp = await makeTempDir("fs-bench-tmpdir-");
});
afterEach(async () => {
  await tmp.cleanup();
});

test("a short run installs its tools, measures and ends with its run time and peak disk use", async () => {
  const run = startBench("dist/bench/run-all.js", ["gcs"], tmp.path, { ...TINY, BENCH_RUNS: "1" });
  const code = await run.exited;
  expect({ code, output: run.output() }).toMatchObject({ code: 0 });
  expect(run.output()).toMatch(/install-tools: ok/);
  const report = /\(gcs: run time (\d+\.\d) s, peak disk (\d+\.\d) MiB \((\d+) bytes\) under its temp folders\)/.exec(run.output());
  expect(report).not.toBeNull();
  // The daemon's index and the bench's folders take some disk (a tiny run may round to 0.0 MiB).
  expect(Number(report![3])).toBeGreaterThan(0);
  expect(fs.readdirSync(tmp.path)).toEqual([]);
}, 120_000);

test.each([
  { what: "SIGINT to npm run bench's run-all", script: "dist/bench/run-all.js", args: ["gcs"], signal: "SIGINT" as const },
  { what: "SIGTERM to the bench on its own (relaunched with the malloc tuning)", script: "dist/bench/gcs.bench.js", args: [], signal: "SIGTERM" as const },
])("$what mid-run: exit 130, no process left, temp folder empty", async ({ script, args, signal }) => {
  const run = startBench(script, args, tmp.path, { ...TINY, BENCH_RUNS: "100000" });
  const tree = await whenMeasuring(run);
  process.kill(run.pid, signal);
  const code = await Promise.race([run.exited, new Promise<"late">((r) => setTimeout(() => r("late"), 40_000).unref())]);
  expect({ code, output: run.output() }).toMatchObject({ code: 130 });
  expect(run.output()).toMatch(new RegExp(`gcs: ${signal}: stopping what it started and removing its temp folders`));
  expect(run.output()).not.toMatch(/FAILED|\n\s+at /);
  expect(tree.filter(stillRunning).map((p) => `${p.pid} ${p.cmdline}`)).toEqual([]);
  expect(fs.readdirSync(tmp.path)).toEqual([]);
}, 120_000);

test("a bench that fails says why in one line, without a stack trace", async () => {
  const run = startBench("dist/bench/gcs.bench.js", [], tmp.path, { BENCH_RUNS: "many" });
  expect(await run.exited).toBe(1);
  const lines = run.output().trim().split("\n");
  expect(lines[0]).toBe('gcs: FAILED: BENCH_RUNS must be a positive integer, got "many"');
  expect(lines[1]).toMatch(/^\(gcs: run time \d+\.\d s, peak disk 0\.0 MiB \(0 bytes\) under its temp folders\)$/);
  expect(lines).toHaveLength(2);
});
