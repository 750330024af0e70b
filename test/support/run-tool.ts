/**
 * Runs an external tool (go, grpcurl, a script) from a test without blocking
 * the event loop: an in-process daemon must keep serving while the tool
 * calls it, which a synchronous child would starve.
 */
import { spawn } from "node:child_process";

export interface ToolRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

export interface ToolOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Killed (SIGKILL) after this long; default 30 s. */
  timeoutMs?: number;
}

/**
 * Runs `file args` to its end. Resolves with its exit code and output, also
 * for a non-zero exit; rejects only when the tool cannot be started at all
 * (the message names test/setup/install-tools.sh, which installs the tools).
 */
export function runTool(file: string, args: string[], opts: ToolOptions = {}): Promise<ToolRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    let timedOut = false;
    child.stdout.setEncoding("utf8").on("data", (s: string) => (stdout += s));
    child.stderr.setEncoding("utf8").on("data", (s: string) => (stderr += s));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, opts.timeoutMs ?? 30_000);
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${file}: ${err.message} (test/setup/install-tools.sh installs the test tools)`));
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, timedOut });
    });
  });
}

/** A run's outcome and output, for a failing assertion's message. */
export function describeRun(what: string, r: ToolRun): string {
  const how = r.timedOut ? "timed out" : `exited ${r.code ?? r.signal}`;
  return `${what} ${how}\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`;
}
