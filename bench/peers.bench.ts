/**
 * The daemon against the servers a user would pick instead, MinIO and
 * bazel-remote, each at its defaults on local disk, driven by one neutral
 * client in another language (Go, bench/peers/driver: clients/go for the
 * daemon, minio-go for MinIO, bazel-remote's HTTP CAS API) with the same
 * workload, the servers interleaved in every round (issue 9, "Against the
 * peers"):
 *   - download of a 1 GiB object (BENCH_MIB) and upload of 1 GiB of fresh
 *     content (MinIO: one single-stream PUT), with each server's CPU seconds
 *     per GiB (/proc/<pid>/stat utime+stime across each transfer);
 *   - 16 KiB reads, hot (every object read in a warm-up first), and 4 KiB
 *     durable writes under new names, each at 1 and 16 in flight
 *     (BENCH_IN_FLIGHT), closed loop for BENCH_SECONDS (2), p50/p99 over all rounds;
 *   - each server's peak RSS (VmHWM) over the whole run.
 * BENCH_RUNS (16) rounds after one warm-up round; medians; ratios daemon /
 * best peer; the targets with PASS/FAIL.
 *
 * `node dist/bench/peers.bench.js report FILE` prints the tables of a run
 * kept with BENCH_JSON=FILE again.
 *
 * `node dist/bench/peers.bench.js profile` instead runs the daemon alone,
 * once per workload (BENCH_RUNS default 3 there), under `node --cpu-prof`,
 * and prints where its main thread's time went (profiles kept in
 * BENCH_PROFILE_DIR, default .scratch/peers-profiles).
 *
 * On request only (not in `npm run bench` nor the test command):
 *   bash bench/peers/run.sh              (= npm run build && node dist/bench/peers.bench.js)
 *   bash bench/peers/run.sh profile
 * It installs MinIO, bazel-remote and the driver first (bench/peers/install.sh).
 */
import { execFileSync, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { spawnDaemon, type DaemonProcess } from "../test/kit/daemon-process.js";
import { repoRoot } from "../test/kit/repo-root.js";
import { makeTempDir, type TempDir } from "../test/kit/temp-dir.js";
import { fixed, median, mib, printTable, secondsSince } from "./support/bench-report.js";
import { machineLine, mallocTuningWanted, positiveInt, positiveInts, scratchRoot } from "./support/bench-settings.js";
import { cpuProfileArgs, newestProfile, printProfileSummary, summariseCpuProfile } from "./support/cpu-profile.js";
import { ownCleanup } from "../test/kit/owned-resources.js";
import { runBench } from "./support/bench-run.js";
import { MINIO_PASSWORD, MINIO_USER, startBazelRemote, startMinio, type PeerProcess } from "./support/peer-servers.js";

const GiB = 1024 ** 3;

interface TransferSample {
  mibPerSec: number;
  seconds: number;
  serverCpuSecPerGiB: number;
  clientCpuSecPerGiB: number;
}
interface TransferReport {
  warmup: TransferSample;
  rounds: TransferSample[];
}
interface LoopSample {
  opsPerSec: number;
  ops: number;
  serverCpuMicrosPerOp: number;
  clientCpuMicrosPerOp: number;
}
interface LoopReport {
  inFlight: number;
  warmupOpsPerSec: number;
  rounds: LoopSample[];
  p50Ms: number;
  p99Ms: number;
}
interface ServerReport {
  name: string;
  pid: number;
  peakRssBytes: number;
  download?: TransferReport;
  upload?: TransferReport;
  read?: LoopReport[];
  write?: LoopReport[];
}
interface DriverReport {
  config: { rounds: number; bigBytes: number; readBytes: number; writeBytes: number; loopSeconds: number; inFlight: number[] };
  servers: ServerReport[];
  /** CLOCK_MONOTONIC microseconds around the measured rounds. */
  measuredFromMicros: number;
  measuredToMicros: number;
}

interface Settings {
  rounds: number;
  bigMiB: number;
  seconds: number;
  inFlight: number[];
  bazelMaxGiB: number;
}

function tools(): { bin: string; versions: Record<string, string> } {
  const dir = process.env.BENCH_TOOLS || path.join(repoRoot(), ".bench-tools");
  const bin = path.join(dir, "bin");
  const version = (name: string) => {
    try {
      return fs.readFileSync(path.join(bin, `.${name}-version`), "utf8").trim();
    } catch {
      return "?";
    }
  };
  return { bin, versions: { minio: version("minio"), "bazel-remote": version("bazel-remote") } };
}

function install(): void {
  console.log("installing the peers when missing: bash bench/peers/install.sh");
  execFileSync("bash", [path.join(repoRoot(), "bench", "peers", "install.sh")], { stdio: "inherit" });
}

function clockTicks(): number {
  const out = execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim();
  const n = Number(out);
  if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`getconf CLK_TCK said "${out}"`);
  return n;
}

/** Runs the driver; resolves with its JSON report. Its progress lines pass through to stderr. */
function runDriver(args: string[]): Promise<DriverReport> {
  const driver = path.join(tools().bin, "peers-driver");
  return new Promise((resolve, reject) => {
    const child = spawn(driver, args, { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.setEncoding("utf8").on("data", (s: string) => (out += s));
    child.once("error", (err) => reject(new Error(`cannot run ${driver}: ${err.message}`)));
    child.once("exit", (code, signal) => {
      if (code !== 0) return reject(new Error(`the driver exited with ${code ?? signal} (its error is above)`));
      try {
        resolve(JSON.parse(out) as DriverReport);
      } catch (err) {
        reject(new Error(`the driver printed no JSON report: ${(err as Error).message}`));
      }
    });
  });
}

function freeBytes(dir: string): number {
  const s = fs.statfsSync(dir);
  return s.bavail * s.bsize;
}

async function compare(s: Settings): Promise<void> {
  const t = tools();
  // Rough upper bounds, from the slowest server per workload on 2 shared cores.
  const transferSeconds = 3 * 2 * (s.bigMiB / 150);
  const loopSeconds = 3 * 2 * s.inFlight.length * s.seconds;
  const minutes = ((s.rounds + 1) * (transferSeconds + loopSeconds + 2 * (s.bigMiB / 1024)) + 60) / 60;
  const smallWrites = 3 * (s.rounds + 1) * s.inFlight.length * s.seconds * 3000 * 8 * 1024;
  const diskBytes = 4 * s.bigMiB * 1024 * 1024 + s.bazelMaxGiB * GiB + smallWrites;
  const root = scratchRoot();
  console.log(
    `peers: ${s.rounds} rounds (+1 warm-up) of: ${s.bigMiB} MiB download and upload; ${16} KiB reads and 4 KiB writes ` +
      `at ${s.inFlight.join(" and ")} in flight, ${s.seconds} s each; for the daemon, MinIO and bazel-remote in turn.`,
  );
  console.log(
    `bounded: about ${Math.ceil(minutes)} min at most on this machine (each call times out after 10 min; the first error stops the run); ` +
      `disk up to ~${(diskBytes / GiB).toFixed(1)} GiB in ${root} (daemon and MinIO ${2 * s.bigMiB} MiB each, ` +
      `bazel-remote its --max_size ${s.bazelMaxGiB} GiB: it has no delete, its LRU evicts past that), removed at the end and on Ctrl-C.`,
  );
  const free = freeBytes(root);
  if (free < diskBytes + 2 * GiB) {
    throw new Error(`${root} has ${(free / GiB).toFixed(1)} GiB free; this run needs ~${(diskBytes / GiB).toFixed(1)} GiB plus 2 GiB to spare (BENCH_DIR picks another folder)`);
  }
  install();
  console.log(`versions: daemon ${repoVersion()} (node ${process.version}), MinIO ${t.versions.minio} (go install), bazel-remote ${t.versions["bazel-remote"]}, minio-go v7.4.1`);
  console.log(`machine: ${machineLine()}`);
  console.log(`started ${new Date().toISOString()}; load average at start ${loadLine()}\n`);

  const dir = await makeTempDir("fs-bench-peers-", root);
  const running: { stop(): Promise<void> }[] = [];
  const stopAll = async () => {
    for (const p of running.splice(0)) await p.stop();
    await dir.cleanup();
  };
  const unregister = ownCleanup(stopAll);
  try {
    for (const sub of ["daemon", "minio", "bazel-remote"]) fs.mkdirSync(path.join(dir.path, sub));
    const daemon = await spawnDaemon({ LOCAL_STORAGE_PATH: path.join(dir.path, "daemon") }, { mallocTuning: mallocTuningWanted() });
    running.push(daemon);
    const minio = await startMinio(path.join(t.bin, "minio"), path.join(dir.path, "minio"), dir.path);
    running.push(minio);
    const bazel = await startBazelRemote(path.join(t.bin, "bazel-remote"), path.join(dir.path, "bazel-remote"), dir.path, s.bazelMaxGiB);
    running.push(bazel);
    console.log(`daemon ${daemon.address} (pid ${daemon.pid}), MinIO ${minio.address} (pid ${minio.pid}), bazel-remote ${bazel.address} (pid ${bazel.pid})\n`);
    const started = process.hrtime.bigint();
    const report = await runDriver([
      ...driverArgs(s),
      ...["-daemon", daemon.address, "-daemon-pid", String(daemon.pid)],
      ...["-minio", minio.address, "-minio-pid", String(minio.pid), "-minio-user", MINIO_USER, "-minio-password", MINIO_PASSWORD],
      ...["-bazel", bazel.address, "-bazel-pid", String(bazel.pid)],
    ]);
    console.log(`\ndriver took ${(secondsSince(started) / 60).toFixed(1)} min; load average at the end ${loadLine()}`);
    saveReport(report);
    printComparison(report, s, { daemon, peers: [minio, bazel] });
  } finally {
    unregister();
    await stopAll();
  }
}

function driverArgs(s: Settings): string[] {
  return ["-rounds", String(s.rounds), "-big-mib", String(s.bigMiB), "-seconds", String(s.seconds), "-in-flight", s.inFlight.join(","), "-clk-tck", String(clockTicks())];
}

function saveReport(report: DriverReport): void {
  const file = process.env.BENCH_JSON;
  if (!file) return;
  fs.writeFileSync(file, JSON.stringify(report, null, 1));
  console.log(`driver report written to ${file}`);
}

function loadLine(): string {
  return os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(" / ");
}

function repoVersion(): string {
  try {
    return execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: repoRoot(), encoding: "utf8" }).trim();
  } catch {
    return "(not a git checkout)";
  }
}

const runs = (xs: number[], digits = 0) => (xs.length ? `${fixed(Math.min(...xs), digits)}..${fixed(Math.max(...xs), digits)}` : "-");
const med = <T>(xs: T[] | undefined, f: (x: T) => number) => median((xs ?? []).map(f));

function printComparison(report: DriverReport, s: Settings, run?: { daemon: DaemonProcess; peers: PeerProcess[] }): void {
  const servers = report.servers;
  const byName = (n: string) => servers.find((x) => x.name === n)!;
  console.log(`\n### Big objects (${s.bigMiB} MiB), medians of ${s.rounds} rounds\n`);
  printTable(
    ["server", "download MiB/s", "upload MiB/s", "server CPU s/GiB down", "server CPU s/GiB up", "driver CPU s/GiB down/up", "down runs", "up runs", "warm-up down/up", "peak RSS MiB"],
    servers.map((x) => [
      x.name,
      fixed(med(x.download?.rounds, (r) => r.mibPerSec)),
      fixed(med(x.upload?.rounds, (r) => r.mibPerSec)),
      fixed(med(x.download?.rounds, (r) => r.serverCpuSecPerGiB), 2),
      fixed(med(x.upload?.rounds, (r) => r.serverCpuSecPerGiB), 2),
      `${fixed(med(x.download?.rounds, (r) => r.clientCpuSecPerGiB), 2)} / ${fixed(med(x.upload?.rounds, (r) => r.clientCpuSecPerGiB), 2)}`,
      runs((x.download?.rounds ?? []).map((r) => r.mibPerSec)),
      runs((x.upload?.rounds ?? []).map((r) => r.mibPerSec)),
      `${fixed(x.download?.warmup.mibPerSec ?? NaN, 0)} / ${fixed(x.upload?.warmup.mibPerSec ?? NaN, 0)}`,
      mib(x.peakRssBytes),
    ]),
  );
  for (const [kind, label, bytes] of [
    ["read", "reads (hot)", report.config.readBytes],
    ["write", "durable writes, new names", report.config.writeBytes],
  ] as const) {
    console.log(`\n### ${bytes / 1024} KiB ${label}, closed loop ${s.seconds} s per round; ops/s median of ${s.rounds} rounds, latency over all calls\n`);
    const rows: string[][] = [];
    for (const n of s.inFlight) {
      for (const x of servers) {
        const l = x[kind]?.find((r) => r.inFlight === n);
        if (!l) continue;
        rows.push([
          String(n),
          x.name,
          fixed(med(l.rounds, (r) => r.opsPerSec), 0),
          fixed(l.p50Ms, 2),
          fixed(l.p99Ms, 2),
          fixed(med(l.rounds, (r) => r.serverCpuMicrosPerOp), 0),
          fixed(med(l.rounds, (r) => r.clientCpuMicrosPerOp), 0),
          runs(l.rounds.map((r) => r.opsPerSec)),
          fixed(l.warmupOpsPerSec, 0),
        ]);
      }
    }
    printTable(["in flight", "server", "ops/s", "p50 ms", "p99 ms", "server CPU us/op", "driver CPU us/op", "runs ops/s", "warm-up ops/s"], rows);
  }

  // Daemon / best peer, per row.
  const d = byName("daemon");
  const others = servers.filter((x) => x.name !== "daemon");
  const ratioRows: string[][] = [];
  const best = (f: (x: ServerReport) => number, higherIsBetter = true) =>
    others.map((x) => ({ name: x.name, v: f(x) })).filter((c) => Number.isFinite(c.v)).sort((a, b) => (higherIsBetter ? b.v - a.v : a.v - b.v))[0];
  const addRatio = (row: string, f: (x: ServerReport) => number, unit: string, higherIsBetter = true) => {
    const b = best(f, higherIsBetter);
    const dv = f(d);
    ratioRows.push([row, `${fixed(dv, unit === "s/GiB" || unit === "ms" ? 2 : 0)} ${unit}`, b ? `${b.name} ${fixed(b.v, unit === "s/GiB" || unit === "ms" ? 2 : 0)}` : "-", b ? `${(dv / b.v).toFixed(2)}x` : "-"]);
  };
  addRatio("download", (x) => med(x.download?.rounds, (r) => r.mibPerSec), "MiB/s");
  addRatio("upload", (x) => med(x.upload?.rounds, (r) => r.mibPerSec), "MiB/s");
  addRatio("server CPU per GiB down (lower is better)", (x) => med(x.download?.rounds, (r) => r.serverCpuSecPerGiB), "s/GiB", false);
  addRatio("server CPU per GiB up (lower is better)", (x) => med(x.upload?.rounds, (r) => r.serverCpuSecPerGiB), "s/GiB", false);
  for (const kind of ["read", "write"] as const) {
    for (const n of s.inFlight) {
      const l = (x: ServerReport) => x[kind]?.find((r) => r.inFlight === n);
      const size = kind === "read" ? `${report.config.readBytes / 1024} KiB reads` : `${report.config.writeBytes / 1024} KiB writes`;
      addRatio(`${size} x${n}`, (x) => med(l(x)?.rounds, (r) => r.opsPerSec), "ops/s");
      addRatio(`${size} x${n} p99 (lower is better)`, (x) => l(x)?.p99Ms ?? NaN, "ms", false);
    }
  }
  addRatio("peak RSS (lower is better)", (x) => x.peakRssBytes / (1024 * 1024), "MiB", false);
  console.log("\n### Daemon / best peer (per row; for 'lower is better' rows the best peer is the lowest)\n");
  printTable(["row", "daemon", "best peer", "daemon / best"], ratioRows);

  // The targets.
  const peer = (n: string) => byName(n);
  const targets: string[][] = [];
  const verdict = (ok: boolean) => (ok ? "PASS" : "FAIL");
  // Verdicts on the ratio of medians (the measure); beside it the median of the
  // per-round ratios: each round runs the servers back to back, so that one is less
  // moved by load from elsewhere on the machine.
  const atLeast = (what: string, dRounds: number[], pRounds: number[], who: string) => {
    const dv = median(dRounds);
    const pv = median(pRounds);
    const paired = median(dRounds.map((x, i) => x / pRounds[i]!).filter(Number.isFinite));
    targets.push([what, `>= 1.0x ${who}`, `${(dv / pv).toFixed(2)}x (${fixed(dv, 0)} vs ${fixed(pv, 0)})`, `${paired.toFixed(2)}x`, verdict(dv / pv >= 1.0)]);
  };
  const dl = (x: ServerReport) => (x.download?.rounds ?? []).map((r) => r.mibPerSec);
  const ul = (x: ServerReport) => (x.upload?.rounds ?? []).map((r) => r.mibPerSec);
  const ops = (l: LoopReport | undefined) => (l?.rounds ?? []).map((r) => r.opsPerSec);
  atLeast(`${s.bigMiB} MiB download`, dl(d), dl(peer("minio")), "MinIO");
  atLeast(`${s.bigMiB} MiB upload`, ul(d), ul(peer("bazel-remote")), "bazel-remote");
  atLeast(`${s.bigMiB} MiB upload`, ul(d), ul(peer("minio")), "MinIO single-stream PUT");
  for (const n of s.inFlight) {
    const rd = (x: ServerReport) => x.read?.find((r) => r.inFlight === n);
    atLeast(`16 KiB reads x${n}`, ops(rd(d)), ops(rd(peer("bazel-remote"))), "bazel-remote");
  }
  for (const n of s.inFlight) {
    const wr = (x: ServerReport) => x.write?.find((r) => r.inFlight === n);
    atLeast(`4 KiB durable writes x${n}`, ops(wr(d)), ops(wr(peer("bazel-remote"))), "bazel-remote");
    const dp = wr(d)?.p99Ms ?? NaN;
    const bp = wr(peer("bazel-remote"))?.p99Ms ?? NaN;
    targets.push([`4 KiB durable writes x${n} p99`, "<= 1.5x bazel-remote's", `${(dp / bp).toFixed(2)}x (${fixed(dp, 2)} vs ${fixed(bp, 2)} ms)`, "-", verdict(dp / bp <= 1.5)]);
  }
  const cpuDown = med(d.download?.rounds, (r) => r.serverCpuSecPerGiB);
  const cpuUp = med(d.upload?.rounds, (r) => r.serverCpuSecPerGiB);
  targets.push(["daemon CPU per GiB, download", "<= 1.5 s", `${fixed(cpuDown, 2)} s`, "-", verdict(cpuDown <= 1.5)]);
  targets.push(["daemon CPU per GiB, upload", "<= 1.5 s", `${fixed(cpuUp, 2)} s`, "-", verdict(cpuUp <= 1.5)]);
  console.log("\n### Targets (issue 9, 'Against the peers'; medians of this run)\n");
  printTable(["row", "target", "measured (ratio of medians)", "median of per-round ratios", "verdict"], targets);
  const failed = targets.filter((r) => r[4] === "FAIL").length;
  console.log(`\n${targets.length - failed} of ${targets.length} targets met.`);
  console.log(
    `Notes: daemon on its defaults (local tier, fsync on, cache and compression on; malloc tuning ${mallocTuningWanted() ? "on" : "off"}); ` +
      `MinIO single drive at its defaults (fdatasync per file); bazel-remote at its defaults (zstd storage, access log on, fsync per blob) with --max_size ${s.bazelMaxGiB}.` +
      (run ? ` Logs: daemon in memory, ${run.peers.map((p) => path.basename(p.logFile)).join(", ")} in the (removed) temp folder; daemon pid was ${run.daemon.pid}.` : ""),
  );
}

/** The daemon alone, under --cpu-prof, one fresh daemon per workload. */
async function profile(s: Settings): Promise<void> {
  const outDir = process.env.BENCH_PROFILE_DIR || path.join(repoRoot(), ".scratch", "peers-profiles");
  console.log(
    `peers profile: the daemon alone under node --cpu-prof, one fresh daemon per workload, ${s.rounds} rounds each (+1 warm-up); ` +
      `bounded: about ${Math.ceil(((s.rounds + 1) * (2 * (s.bigMiB / 150) + 4 * s.inFlight.length * s.seconds) + 60) / 60)} min, ` +
      `disk ~${((2 * s.bigMiB) / 1024).toFixed(1)} GiB in ${scratchRoot()} (removed) plus the profiles in ${outDir}.`,
  );
  install();
  console.log(`machine: ${machineLine()}\n`);
  for (const workload of ["download", "upload", "read", "write"]) {
    const dir: TempDir = await makeTempDir("fs-bench-peers-prof-", scratchRoot());
    const profDir = path.join(outDir, workload);
    fs.rmSync(profDir, { recursive: true, force: true });
    fs.mkdirSync(profDir, { recursive: true });
    let daemon: DaemonProcess | undefined;
    const stop = async () => {
      await daemon?.stop(30_000);
      await dir.cleanup();
    };
    const unregister = ownCleanup(stop);
    try {
      daemon = await spawnDaemon({ LOCAL_STORAGE_PATH: dir.path }, { mallocTuning: mallocTuningWanted(), nodeArgs: cpuProfileArgs(profDir) });
      console.log(`## ${workload}: daemon pid ${daemon.pid}, load average ${loadLine()}`);
      const report = await runDriver([...driverArgs(s), "-only", workload, "-daemon", daemon.address, "-daemon-pid", String(daemon.pid)]);
      const x = report.servers[0]!;
      if (x.download) console.log(`download ${fixed(med(x.download.rounds, (r) => r.mibPerSec))} MiB/s, daemon CPU ${fixed(med(x.download.rounds, (r) => r.serverCpuSecPerGiB), 2)} s/GiB`);
      if (x.upload) console.log(`upload ${fixed(med(x.upload.rounds, (r) => r.mibPerSec))} MiB/s, daemon CPU ${fixed(med(x.upload.rounds, (r) => r.serverCpuSecPerGiB), 2)} s/GiB`);
      for (const l of [...(x.read ?? []), ...(x.write ?? [])]) {
        console.log(`${x.read?.includes(l) ? "read" : "write"} x${l.inFlight}: ${fixed(med(l.rounds, (r) => r.opsPerSec), 0)} ops/s, p99 ${fixed(l.p99Ms, 2)} ms, daemon CPU ${fixed(med(l.rounds, (r) => r.serverCpuMicrosPerOp), 0)} us/op`);
      }
      await daemon.stop(30_000);
      console.log("");
      printProfileSummary(summariseCpuProfile(newestProfile(profDir), { fromMicros: report.measuredFromMicros, toMicros: report.measuredToMicros }));
      console.log("");
    } finally {
      unregister();
      await stop();
    }
  }
}

async function main(): Promise<void> {
  const mode = process.argv[2] ?? "compare";
  if (mode !== "compare" && mode !== "profile" && mode !== "report") throw new Error(`unknown mode "${mode}": compare (default), profile, or report FILE`);
  if (mode === "report") {
    // Prints the tables of a report a run kept (BENCH_JSON) again, measuring nothing.
    const file = process.argv[3];
    if (!file) throw new Error("report needs the file a run wrote with BENCH_JSON");
    const report = JSON.parse(fs.readFileSync(file, "utf8")) as DriverReport;
    const c = report.config;
    printComparison(report, { rounds: c.rounds, bigMiB: c.bigBytes / (1024 * 1024), seconds: c.loopSeconds, inFlight: c.inFlight, bazelMaxGiB: positiveInt("BENCH_BAZEL_MAX_SIZE_GIB", 5) });
    return;
  }
  const settings: Settings = {
    rounds: positiveInt("BENCH_RUNS", mode === "profile" ? 3 : 16),
    bigMiB: positiveInt("BENCH_MIB", 1024),
    seconds: positiveInt("BENCH_SECONDS", 2),
    inFlight: positiveInts("BENCH_IN_FLIGHT", [1, 16]),
    bazelMaxGiB: positiveInt("BENCH_BAZEL_MAX_SIZE_GIB", 5),
  };
  if (mode === "profile") await profile(settings);
  else await compare(settings);
}

runBench("peers", main);
