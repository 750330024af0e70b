/**
 * The daemon as a child process (`node bin/filestorage.js serve`, the built
 * dist/), for tests that kill it, signal it or measure its memory. The test
 * command builds dist/ before jest runs.
 */
import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import * as readline from "node:readline";

export const BIN = path.resolve(__dirname, "../../bin/filestorage.js");

export interface DaemonProcess {
  address: string;
  child: ChildProcess;
  pid: number;
  /** Peak resident memory so far (VmHWM), bytes. */
  peakRss(): number;
  /** Resolves with the exit code (or signal) once the process ended. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr(): string;
  /** Everything the daemon wrote to stdout so far (its JSON log lines). */
  stdout(): string;
}

export interface SpawnOptions {
  mallocTuning?: boolean;
  /** Close our end of the daemon's stdout once it serves, as `serve | head -1` does: its later log writes fail with EPIPE. */
  closeStdoutWhenServing?: boolean;
}

export async function spawnDaemon(env: Record<string, string>, opts: SpawnOptions = {}): Promise<DaemonProcess> {
  if (!fs.existsSync(path.resolve(__dirname, "../../dist/server/cli/main.js"))) {
    throw new Error("dist/ is missing: run `npm run build` (npm test does) before these tests");
  }
  const child = spawn(process.execPath, [BIN, "serve"], {
    env: {
      PATH: process.env.PATH,
      LISTEN_ADDRESS: "127.0.0.1:0",
      METRICS_PORT: "0",
      LOG_LEVEL: "info",
      ...(opts.mallocTuning ? { MALLOC_MMAP_THRESHOLD_: "67108864", MALLOC_TRIM_THRESHOLD_: "134217728" } : {}),
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let err = "";
  let out = "";
  child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  const address = await new Promise<string>((resolve, reject) => {
    const lines = readline.createInterface({ input: child.stdout! });
    const timer = setTimeout(() => reject(new Error(`daemon did not start in 20 s: ${err}`)), 20_000);
    lines.on("line", (line) => {
      try {
        const entry = JSON.parse(line) as { msg?: string; address?: string };
        if (entry.msg === "FileStorage is serving" && entry.address) {
          clearTimeout(timer);
          if (opts.closeStdoutWhenServing) {
            lines.close();
            child.stdout!.destroy();
          }
          resolve(entry.address);
        }
      } catch {
        /* not a log line */
      }
    });
    void exited.then(({ code }) => {
      clearTimeout(timer);
      reject(new Error(`daemon exited with ${code} before serving: ${err}`));
    });
  });
  return {
    address,
    child,
    pid: child.pid!,
    exited,
    peakRss() {
      const status = fs.readFileSync(`/proc/${child.pid}/status`, "utf8");
      const kb = /VmHWM:\s+(\d+) kB/.exec(status);
      return kb ? Number(kb[1]) * 1024 : NaN;
    },
    async kill(signal: NodeJS.Signals = "SIGTERM") {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
    stderr: () => err,
    stdout: () => out,
  };
}
