/**
 * The storage servers bench/peers compares the daemon with, each started at
 * its defaults on a folder of local disk, on loopback ports: MinIO (single
 * drive) and bazel-remote (disk cache, HTTP only). Their output goes to a log
 * file beside their data, so a chatty server (bazel-remote logs every
 * request by default) never blocks on a pipe.
 */
import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { freePort } from "../../test/kit/free-port.js";

/** A server process of another project. */
export interface PeerProcess {
  name: string;
  /** host:port of its HTTP API. */
  address: string;
  pid: number;
  /** Its stdout and stderr. */
  logFile: string;
  /** SIGTERM, then SIGKILL after `graceMs` (default 10 s); resolves once it is gone. */
  stop(graceMs?: number): Promise<void>;
}

/** MinIO's default credentials (what it runs with when none are set). */
export const MINIO_USER = "minioadmin";
export const MINIO_PASSWORD = "minioadmin";

/** `minio server <dataDir>` on a free loopback port (console on another); resolves once /minio/health/live answers 200. */
export async function startMinio(binary: string, dataDir: string, logDir: string): Promise<PeerProcess> {
  const [port, consolePort] = [await freePort(), await freePort()];
  const address = `127.0.0.1:${port}`;
  return startPeer({
    name: "minio",
    binary,
    args: ["server", "--address", address, "--console-address", `127.0.0.1:${consolePort}`, dataDir],
    // HOME: MinIO makes ~/.minio/certs; keep that inside the bench's folder.
    env: { MINIO_ROOT_USER: MINIO_USER, MINIO_ROOT_PASSWORD: MINIO_PASSWORD, HOME: logDir },
    address,
    readyUrl: `http://${address}/minio/health/live`,
    logFile: path.join(logDir, "minio.log"),
  });
}

/**
 * `bazel-remote --dir <dataDir> --max_size <maxSizeGiB>` (a required flag: the
 * LRU evicts past it) serving HTTP on a free loopback port, gRPC off;
 * resolves once /status answers 200.
 */
export async function startBazelRemote(binary: string, dataDir: string, logDir: string, maxSizeGiB: number): Promise<PeerProcess> {
  const address = `127.0.0.1:${await freePort()}`;
  return startPeer({
    name: "bazel-remote",
    binary,
    args: ["--dir", dataDir, "--max_size", String(maxSizeGiB), "--http_address", address, "--grpc_address", "none"],
    env: {},
    address,
    readyUrl: `http://${address}/status`,
    logFile: path.join(logDir, "bazel-remote.log"),
  });
}

interface PeerSpec {
  name: string;
  binary: string;
  args: string[];
  env: Record<string, string>;
  address: string;
  readyUrl: string;
  logFile: string;
}

async function startPeer(spec: PeerSpec): Promise<PeerProcess> {
  if (!fs.existsSync(spec.binary)) throw new Error(`${spec.name} is missing at ${spec.binary}: bash bench/peers/install.sh installs it`);
  const log = fs.openSync(spec.logFile, "a");
  const child = spawn(spec.binary, spec.args, { env: { PATH: process.env.PATH ?? "", ...spec.env }, stdio: ["ignore", log, log] });
  fs.closeSync(log);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const stop = async (graceMs = 10_000) => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
    await exited;
    clearTimeout(timer);
  };
  try {
    await waitReady(spec, child);
  } catch (err) {
    await stop(1000);
    throw err;
  }
  return { name: spec.name, address: spec.address, pid: child.pid!, logFile: spec.logFile, stop };
}

async function waitReady(spec: PeerSpec, child: ChildProcess, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${spec.name} exited with ${child.exitCode ?? child.signalCode} before serving: ${tail(spec.logFile)}`);
    }
    try {
      const res = await fetch(spec.readyUrl, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      if (res.status === 200) return;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) throw new Error(`${spec.name} did not answer ${spec.readyUrl} in ${timeoutMs / 1000} s: ${tail(spec.logFile)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

function tail(file: string): string {
  try {
    return fs.readFileSync(file, "utf8").split("\n").slice(-15).join("\n");
  } catch {
    return "(no log)";
  }
}
