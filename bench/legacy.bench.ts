/**
 * The old component's own workload (issue 9): from Python, BENCH_COUNT (100)
 * each of 1 KiB JSON task results, 100 KiB texts and 1 MiB byte strings;
 * store all, then retrieve all, one call at a time; through the daemon (a
 * spawned process on its defaults: local tier, fsync on) over gRPC with the
 * Python client (clients/python), against the component it replaces (PyPI
 * aiecs 2.2.0, `aiecs.infrastructure.persistence.file_storage.FileStorage`
 * on its local backend) run in-process beside it in the same Python process.
 * BENCH_RUNS (5) interleaved rounds after a warm-up; medians; the ratio
 * daemon / old per row, with the target (>= 1.0x) on every row the old
 * component gets right. The driver is bench/legacy/driver.py, in the venv
 * bench/legacy/install.sh makes.
 *
 * `node dist/bench/legacy.bench.js profile` also runs the daemon under
 * `node --cpu-prof` and prints where its main thread's time went (profile
 * kept in BENCH_PROFILE_DIR, default .scratch/legacy-profile).
 *
 * On request only (not in `npm run bench` nor the test command):
 *   npm run build && node dist/bench/legacy.bench.js
 */
import { execFileSync, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { spawnDaemon, type DaemonProcess } from "../test/kit/daemon-process.js";
import { repoRoot } from "../test/kit/repo-root.js";
import { makeTempDir } from "../test/kit/temp-dir.js";
import { fixed, median, mib, printTable, secondsSince } from "./support/bench-report.js";
import { machineLine, mallocTuningWanted, positiveInt, scratchRoot } from "./support/bench-settings.js";
import { cpuProfileArgs, newestProfile, printProfileSummary, summariseCpuProfile } from "./support/cpu-profile.js";
import { ownCleanup } from "../test/kit/owned-resources.js";
import { runBench } from "./support/bench-run.js";

const KINDS = ["json", "text", "bytes"] as const;
const LABELS: Record<(typeof KINDS)[number], string> = { json: "1 KiB JSON task result", text: "100 KiB text", bytes: "1 MiB bytes" };
type Rates = Record<"store" | "retrieve", Record<(typeof KINDS)[number], number[]>>;
interface SystemResult {
  rate: Rates;
  right: Record<(typeof KINDS)[number], number[]>;
}
interface DriverResult {
  rounds: number;
  count: number;
  orders: string[];
  python: string;
  /** CLOCK_MONOTONIC microseconds around the measured rounds. */
  measuredFromMicros: number;
  measuredToMicros: number;
  daemon: SystemResult;
  old: SystemResult;
}

function venvPython(): string {
  const tools = process.env.BENCH_TOOLS || path.join(repoRoot(), ".bench-tools");
  return path.join(tools, "legacy-venv", "bin", "python");
}

function runDriver(args: string[]): Promise<DriverResult> {
  const python = venvPython();
  return new Promise((resolve, reject) => {
    const child = spawn(python, [path.join(repoRoot(), "bench", "legacy", "driver.py"), ...args], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.setEncoding("utf8").on("data", (s: string) => (out += s));
    child.once("error", (err) => reject(new Error(`cannot run ${python}: ${err.message} (bash bench/legacy/install.sh makes it)`)));
    child.once("exit", (code, signal) => {
      if (code !== 0) return reject(new Error(`the Python driver exited with ${code ?? signal} (its error is above)`));
      try {
        resolve(JSON.parse(out) as DriverResult);
      } catch (err) {
        reject(new Error(`the Python driver printed no JSON result: ${(err as Error).message}`));
      }
    });
  });
}

const loadLine = () =>
  os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(" / ");

async function main(): Promise<void> {
  const mode = process.argv[2] ?? "compare";
  if (mode !== "compare" && mode !== "profile") throw new Error(`unknown mode "${mode}": compare (default) or profile`);
  const rounds = positiveInt("BENCH_RUNS", 5);
  const count = positiveInt("BENCH_COUNT", 100);
  const perRoundBytes = count * (1024 + 100 * 1024 + 1024 * 1024);
  console.log(
    `legacy: ${rounds} rounds (+ a warm-up of a tenth) of ${count} each of ${KINDS.map((k) => LABELS[k]).join(", ")}: ` +
      `store all, then retrieve all, one call at a time, daemon and old component in turn.`,
  );
  console.log(
    `bounded: about ${Math.ceil((rounds * (count / 100) * 20 + 30) / 60)} min at most on this machine; disk at most ` +
      `~${mib(2 * perRoundBytes * 1.2)} MiB at a time in ${scratchRoot()} (each round's values are deleted after it), ` +
      `the Python driver holds ~${mib(2 * perRoundBytes)} MiB; everything removed at the end and on Ctrl-C.`,
  );
  console.log("installing the venv when missing: bash bench/legacy/install.sh");
  execFileSync("bash", [path.join(repoRoot(), "bench", "legacy", "install.sh")], { stdio: "inherit" });
  console.log(`machine: ${machineLine()}`);
  console.log(`started ${new Date().toISOString()}; load average at start ${loadLine()}\n`);

  const dir = await makeTempDir("fs-bench-legacy-", scratchRoot());
  const profDir = process.env.BENCH_PROFILE_DIR || path.join(repoRoot(), ".scratch", "legacy-profile");
  let daemon: DaemonProcess | undefined;
  const stopAll = async () => {
    await daemon?.stop(30_000);
    await dir.cleanup();
  };
  const unregister = ownCleanup(stopAll);
  try {
    fs.mkdirSync(path.join(dir.path, "daemon"));
    fs.mkdirSync(path.join(dir.path, "old"));
    if (mode === "profile") {
      fs.rmSync(profDir, { recursive: true, force: true });
      fs.mkdirSync(profDir, { recursive: true });
    }
    daemon = await spawnDaemon(
      { LOCAL_STORAGE_PATH: path.join(dir.path, "daemon") },
      { mallocTuning: mallocTuningWanted(), nodeArgs: mode === "profile" ? cpuProfileArgs(profDir) : [] },
    );
    const started = process.hrtime.bigint();
    const result = await runDriver(["--address", daemon.address, "--old-dir", path.join(dir.path, "old"), "--rounds", String(rounds), "--count", String(count)]);
    const peak = daemon.peakRss();
    console.log(`\ndriver took ${secondsSince(started).toFixed(0)} s; load average at the end ${loadLine()}`);
    await daemon.stop(30_000);
    printResult(result, peak);
    if (mode === "profile") {
      console.log("");
      printProfileSummary(summariseCpuProfile(newestProfile(profDir), { fromMicros: result.measuredFromMicros, toMicros: result.measuredToMicros }));
    }
  } finally {
    unregister();
    await stopAll();
  }
}

function printResult(r: DriverResult, daemonPeakRss: number): void {
  console.log(`\n### The old component's workload, ${r.count} of each, medians of ${r.rounds} rounds (Python ${r.python})\n`);
  const rows: string[][] = [];
  let targets = 0;
  let met = 0;
  for (const op of ["store", "retrieve"] as const) {
    for (const kind of KINDS) {
      const d = median(r.daemon.rate[op][kind]);
      const o = median(r.old.rate[op][kind]);
      const oldRight = r.old.right[kind];
      const allRight = oldRight.every((n) => n === r.count);
      const rightText = allRight ? `yes (${r.count}/${r.count})` : `no: old component wrong (${Math.min(...oldRight)}/${r.count} read back right)`;
      let verdict = "excluded (old component wrong)";
      if (allRight) {
        targets++;
        if (d / o >= 1.0) met++;
        verdict = d / o >= 1.0 ? "PASS" : "FAIL";
      }
      rows.push([
        op,
        LABELS[kind],
        fixed(d, 0),
        fixed(o, 0),
        `${(d / o).toFixed(2)}x`,
        rightText,
        verdict,
        r.daemon.rate[op][kind].map((x) => x.toFixed(0)).join("/"),
        r.old.rate[op][kind].map((x) => x.toFixed(0)).join("/"),
      ]);
    }
  }
  printTable(["operation", "value", "daemon ops/s", "old ops/s", "daemon / old", "old got it right", "target >= 1.0x", "daemon runs", "old runs"], rows);
  console.log(`\n${met} of ${targets} targets met (rows the old component gets wrong are excluded). Daemon peak RSS ${mib(daemonPeakRss)} MiB.`);
  console.log(
    "Notes: the daemon ran as a spawned process on its defaults (local tier, every Store fsynced, cache and compression on), reached over gRPC " +
      "on loopback by filestorage_client; the old component runs in the same Python process on its local backend with its defaults " +
      "(in-process cache, gzip level 9 over 1 KiB) and does NOT fsync (aiofiles write + close, plus a .metadata sidecar file). " +
      "Its reads go through a fresh instance (its cache lives in the instance that stored: another process or a restart reads from disk); " +
      "it cannot read 1 MiB random bytes back (it tries pickle, JSON, then UTF-8 text, and returns None). " +
      `Round orders: ${r.orders.join(" | ")}.`,
  );
}

runBench("legacy", main);
