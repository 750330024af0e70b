/**
 * A server as its own process: the FileStorage daemon (`node
 * bin/filestorage.js serve`, the built dist/: `npm run build` first; the test
 * command does) or a benchmark's baseline server. Each announces itself with a
 * JSON log line carrying `msg` and `address`. Tests use it to kill, signal or
 * measure the daemon; benchmarks so that client and server never share an
 * event loop.
 */
import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import * as readline from "node:readline";
import { MALLOC_TUNING } from "./malloc-tuning.js";
import { ownChild } from "./owned-resources.js";
import { fdCount, peakRssOf, resetPeakRss } from "./process-usage.js";
import { repoRoot } from "./repo-root.js";

/** The daemon's launcher. */
export const BIN = path.join(repoRoot(), "bin", "filestorage.js");

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A running server process, the daemon or another. */
export interface DaemonProcess {
  /** host:port it listens on, from its "serving" log line. */
  address: string;
  pid: number;
  child: ChildProcess;
  /** Peak resident memory (VmHWM) since start or the last resetPeakRss(), bytes; NaN once it is gone. */
  peakRss(): number;
  /** Restarts the peak (Linux clear_refs "5"); false when the kernel does not allow it. */
  resetPeakRss(): boolean;
  /** Open file descriptors now; throws once it is gone. */
  fds(): number;
  /** Resolves with the exit code (or signal) once the process ended. */
  exited: Promise<ExitStatus>;
  /** Sends `signal` (default SIGTERM) unless it has exited, and resolves once it has. */
  kill(signal?: NodeJS.Signals): Promise<ExitStatus>;
  /** SIGTERM, then SIGKILL after `graceMs` (default 10 s); resolves once it is gone. */
  stop(graceMs?: number): Promise<void>;
  /** Everything it wrote to stderr so far. */
  stderr(): string;
  /** Everything it wrote to stdout so far (the daemon's JSON log lines). */
  stdout(): string;
}

export interface SpawnOptions {
  /** Start it with MALLOC_TUNING in its environment (as `npm start` does); default false. */
  mallocTuning?: boolean;
  /** Close our end of its stdout once it serves, as `serve | head -1` does: its later log writes fail with EPIPE. */
  closeStdoutWhenServing?: boolean;
  /** How long it may take to announce itself; default 30 s. */
  startTimeoutMs?: number;
  /** Its name in errors; default "server". */
  label?: string;
  /**
   * Reads each stdout line and returns the listen address once the line (or
   * the lines so far) announce it is ready; default: a JSON log line whose
   * `msg` is the ready message and which carries `address`. For logs that are
   * not JSON (LOG_FORMAT=pretty).
   */
  ready?: (line: string) => string | undefined;
  /** Its working folder; default this process's. */
  cwd?: string;
  /** Options for node itself, before the script (e.g. --cpu-prof, which NODE_OPTIONS does not take). */
  nodeArgs?: string[];
}

/**
 * Spawns `node <args>` with `env` on top of PATH (and the malloc tuning when
 * asked) and resolves once it logs `readyMsg` with an address. Rejects, with
 * its stderr, when it exits first ("<label> exited with <code> before
 * serving: <stderr>") or takes longer than the start timeout.
 */
export async function spawnServerProcess(args: string[], env: Record<string, string>, readyMsg: string, opts: SpawnOptions = {}): Promise<DaemonProcess> {
  const label = opts.label ?? "server";
  const startTimeoutMs = opts.startTimeoutMs ?? 30_000;
  const child = spawn(process.execPath, [...(opts.nodeArgs ?? []), ...args], {
    env: { PATH: process.env.PATH ?? "", ...(opts.mallocTuning ? MALLOC_TUNING : {}), ...env },
    cwd: opts.cwd,
    stdio: ["ignore", "pipe", "pipe"],
  });
  ownChild(child);
  let err = "";
  let out = "";
  child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise<ExitStatus>((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  const address = await new Promise<string>((resolve, reject) => {
    const lines = readline.createInterface({ input: child.stdout! });
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${label} did not start in ${startTimeoutMs / 1000} s: ${err}`));
    }, startTimeoutMs);
    const ready = opts.ready ?? ((line: string) => jsonReady(line, readyMsg));
    lines.on("line", (line) => {
      const at = ready(line);
      if (at === undefined) return;
      clearTimeout(timer);
      if (opts.closeStdoutWhenServing) {
        lines.close();
        child.stdout!.destroy();
      }
      resolve(at);
    });
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`${label} exited with ${code ?? signal} before serving: ${err}`));
    });
  });
  const pid = child.pid!;
  const running = () => child.exitCode === null && child.signalCode === null;
  return {
    address,
    pid,
    child,
    exited,
    peakRss: () => peakRssOf(pid),
    resetPeakRss: () => resetPeakRss(pid),
    fds: () => fdCount(pid),
    async kill(signal: NodeJS.Signals = "SIGTERM") {
      if (running()) child.kill(signal);
      return exited;
    },
    async stop(graceMs = 10_000) {
      if (!running()) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
      await exited;
      clearTimeout(timer);
    },
    stderr: () => err,
    stdout: () => out,
  };
}

/** The address of a JSON log line `{"msg": readyMsg, "address": ...}`; undefined for any other line. */
function jsonReady(line: string, readyMsg: string): string | undefined {
  try {
    const entry = JSON.parse(line) as { msg?: string; address?: string };
    return entry.msg === readyMsg && entry.address ? entry.address : undefined;
  } catch {
    return undefined; // not a JSON log line
  }
}

/**
 * The FileStorage daemon with `env` (LISTEN_ADDRESS a free port, METRICS_PORT
 * off and LOG_LEVEL info unless `env` says otherwise).
 */
export async function spawnDaemon(env: Record<string, string>, opts: SpawnOptions = {}): Promise<DaemonProcess> {
  if (!fs.existsSync(path.join(repoRoot(), "dist", "server", "cli", "main.js"))) {
    throw new Error("dist/ is missing: run `npm run build` (npm test does) first");
  }
  return spawnServerProcess(
    [BIN, "serve"],
    { LISTEN_ADDRESS: "127.0.0.1:0", METRICS_PORT: "0", LOG_LEVEL: "info", ...env },
    "FileStorage is serving",
    { label: "daemon", ...opts },
  );
}
