/**
 * CPU profiles of a spawned daemon: the node options that make it write
 * one (`--cpu-prof`, written when the process exits normally, e.g. after
 * SIGTERM), and a summary of a written .cpuprofile: where the main thread's
 * time went, by function (self time) and by module (node_modules package,
 * file of this project, or Node's internals), with V8's own buckets
 * ("(garbage collector)", "(idle)", "(program)") as rows of their own.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { repoRoot } from "../../test/kit/repo-root.js";
import { printTable } from "./bench-report.js";

/** Node options (SpawnOptions.nodeArgs; NODE_OPTIONS refuses --cpu-prof) for a child that writes its CPU profile into `dir` when it exits. */
export function cpuProfileArgs(dir: string): string[] {
  return ["--cpu-prof", `--cpu-prof-dir=${dir}`];
}

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
}

interface CpuProfile {
  nodes: ProfileNode[];
  /** CLOCK_MONOTONIC microseconds, as are the samples' times. */
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** Which samples count: between these CLOCK_MONOTONIC microseconds (e.g. a driver's measured rounds). */
export interface ProfileWindow {
  fromMicros: number;
  toMicros: number;
}

/** Self time of one function or module. */
export interface ProfileRow {
  name: string;
  ms: number;
  /** Of all sampled time, idle included. */
  share: number;
  /** Of the time the thread was busy (not idle). */
  busyShare: number;
}

export interface ProfileSummary {
  file: string;
  window?: ProfileWindow;
  totalMs: number;
  idleMs: number;
  functions: ProfileRow[];
  modules: ProfileRow[];
}

const BUCKETS = new Set(["(garbage collector)", "(idle)", "(program)", "(root)"]);

function where(frame: CallFrame): string {
  const url = frame.url.replace(/^file:\/\//, "");
  if (url === "") return "";
  const root = repoRoot();
  const rel = url.startsWith(root) ? path.relative(root, url) : url;
  return `${rel}:${frame.lineNumber + 1}`;
}

function moduleOf(frame: CallFrame): string {
  if (BUCKETS.has(frame.functionName) && frame.url === "") return frame.functionName;
  const url = frame.url.replace(/^file:\/\//, "");
  if (url === "") return "(native / V8 builtins)";
  if (url.startsWith("node:")) return "node internals";
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1]!;
  const root = repoRoot();
  return url.startsWith(root) ? path.relative(root, url) : url;
}

/**
 * Reads a .cpuprofile and sums self time by function and by module (top
 * `limit` of each), counting only the samples inside `window` when given.
 */
export function summariseCpuProfile(file: string, window?: ProfileWindow, limit = 15): ProfileSummary {
  const profile = JSON.parse(fs.readFileSync(file, "utf8")) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const fnMs = new Map<string, number>();
  const modMs = new Map<string, number>();
  let totalMs = 0;
  let idleMs = 0;
  // timeDeltas[i] is the time from sample i-1 to sample i: it belongs to sample i-1.
  let at = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    at += profile.timeDeltas[i] ?? 0;
    const node = byId.get(profile.samples[i]!);
    const ms = (profile.timeDeltas[i + 1] ?? 0) / 1000;
    if (!node) continue;
    if (window && (at < window.fromMicros || at > window.toMicros)) continue;
    totalMs += ms;
    const frame = node.callFrame;
    if (frame.functionName === "(idle)") idleMs += ms;
    const name = BUCKETS.has(frame.functionName) ? frame.functionName : `${frame.functionName || "(anonymous)"} ${where(frame)}`;
    fnMs.set(name, (fnMs.get(name) ?? 0) + ms);
    const mod = moduleOf(frame);
    modMs.set(mod, (modMs.get(mod) ?? 0) + ms);
  }
  const busy = totalMs - idleMs;
  const rows = (m: Map<string, number>) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, limit)
      .map(([name, ms]) => ({ name, ms, share: ms / totalMs, busyShare: name === "(idle)" ? NaN : ms / busy }));
  if (window && totalMs === 0) throw new Error(`${file} has no sample inside the window ${window.fromMicros}..${window.toMicros} us: not the same clock?`);
  return { file, window, totalMs, idleMs, functions: rows(fnMs), modules: rows(modMs) };
}

/** The newest .cpuprofile in `dir`; throws when there is none. */
export function newestProfile(dir: string): string {
  const files = fs
    .readdirSync(dir)
    .filter((f) => f.endsWith(".cpuprofile"))
    .map((f) => path.join(dir, f))
    .sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs);
  if (files.length === 0) throw new Error(`no .cpuprofile in ${dir}: did the daemon exit normally?`);
  return files[0]!;
}

const pct = (x: number) => (Number.isFinite(x) ? `${(x * 100).toFixed(1)}%` : "-");

/** Prints a summary as two tables (modules, then functions). */
export function printProfileSummary(summary: ProfileSummary): void {
  console.log(
    `profile ${path.relative(process.cwd(), summary.file)}: ${(summary.totalMs / 1000).toFixed(1)} s sampled` +
      `${summary.window ? " (the measured rounds only)" : ""}, ` +
      `main thread idle ${pct(summary.idleMs / summary.totalMs)}`,
  );
  console.log("");
  printTable(
    ["module (self time)", "ms", "of all", "of busy"],
    summary.modules.map((r) => [r.name, r.ms.toFixed(0), pct(r.share), pct(r.busyShare)]),
  );
  console.log("");
  printTable(
    ["function (self time)", "ms", "of all", "of busy"],
    summary.functions.map((r) => [r.name, r.ms.toFixed(0), pct(r.share), pct(r.busyShare)]),
  );
}
