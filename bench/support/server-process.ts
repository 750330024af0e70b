/**
 * A server under test as its own process: the FileStorage daemon
 * (`node bin/filestorage.js serve`, the built dist/) or a benchmark's baseline
 * server. Both announce themselves with a JSON log line carrying `msg` and
 * `address`. The benchmark process stays the client, so client and server
 * never share an event loop, for the product and the baseline alike.
 */
import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import * as readline from "node:readline";
import { mallocEnv, repoRoot } from "./bench-settings.js";

export interface ServerProcess {
  /** host:port the server listens on. */
  address: string;
  pid: number;
  /** Peak resident memory (VmHWM) since start or the last resetPeakRss(), bytes. */
  peakRss(): number;
  /** Restarts the peak (Linux clear_refs "5"); false when the kernel does not allow it. */
  resetPeakRss(): boolean;
  /** SIGTERM, then SIGKILL after 10 s; resolves once the process is gone. */
  stop(): Promise<void>;
}

/**
 * Spawns `node <args>` with the malloc tuning (unless BENCH_MALLOC_TUNING=off)
 * and `env` on top of PATH, and resolves once it logs `readyMsg` with an
 * address. Rejects if it exits first or takes more than 30 s.
 */
export async function spawnServerProcess(args: string[], env: Record<string, string>, readyMsg: string): Promise<ServerProcess> {
  const child = spawn(process.execPath, args, {
    env: { PATH: process.env.PATH ?? "", ...mallocEnv(), ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const address = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${args.join(" ")} did not start in 30 s: ${stderr}`)), 30_000);
    readline.createInterface({ input: child.stdout! }).on("line", (line) => {
      try {
        const entry = JSON.parse(line) as { msg?: string; address?: string };
        if (entry.msg === readyMsg && entry.address) {
          clearTimeout(timer);
          resolve(entry.address);
        }
      } catch {
        // Not a JSON log line.
      }
    });
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`${args.join(" ")} exited before serving: ${stderr}`));
    });
  });
  return describe(child, address, exited);
}

/** The FileStorage daemon with `env` (LISTEN_ADDRESS and METRICS_PORT default to a free port and off). */
export function spawnDaemon(env: Record<string, string>): Promise<ServerProcess> {
  const bin = path.join(repoRoot(), "bin", "filestorage.js");
  if (!fs.existsSync(path.join(repoRoot(), "dist", "server", "cli", "main.js"))) {
    throw new Error("dist/ is missing: run `npm run build` first");
  }
  return spawnServerProcess(
    [bin, "serve"],
    { LISTEN_ADDRESS: "127.0.0.1:0", METRICS_PORT: "0", LOG_LEVEL: "info", ...env },
    "FileStorage is serving",
  );
}

function describe(child: ChildProcess, address: string, exited: Promise<void>): ServerProcess {
  const pid = child.pid!;
  return {
    address,
    pid,
    peakRss() {
      try {
        const kb = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
        return kb ? Number(kb[1]) * 1024 : NaN;
      } catch {
        return NaN;
      }
    },
    resetPeakRss() {
      try {
        fs.writeFileSync(`/proc/${pid}/clear_refs`, "5");
        return true;
      } catch {
        return false;
      }
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
