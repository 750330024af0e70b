/**
 * Runs the real fake-gcs-server emulator on a free loopback port, for one test
 * file or one benchmark. jest's globalSetup installs the binary
 * (test/setup/install-tools.sh); a missing binary fails loudly instead of
 * skipping.
 *
 * Emulator limits worth knowing: the memory backend holds every upload in RAM
 * (keep fixtures and benchmark objects modest), and a resumable-upload status
 * query finalizes the object.
 */
import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import { freePort } from "./free-port.js";
import { ownChild } from "./owned-resources.js";
import { peakRssOf } from "./process-usage.js";
import { toolPath } from "./repo-root.js";
import { makeTempDir } from "./temp-dir.js";

export const FAKE_GCS_BIN = toolPath("fake-gcs-server");

export interface FakeGcs {
  /** Base URL for the SDK's apiEndpoint: http://127.0.0.1:PORT (no /storage/v1). */
  url: string;
  port: number;
  /** Stops the emulator for good and removes its files. */
  stop(): Promise<void>;
  /** Stops and starts again on the same port (the memory backend loses all data). */
  restart(): Promise<void>;
  /** Stops the process but keeps the port reserved for a later start(). */
  kill(): Promise<void>;
  /** Starts the emulator (again) on the same port and waits until it answers. */
  start(): Promise<void>;
  /** The running emulator's pid; undefined while it is stopped. */
  readonly pid: number | undefined;
  /** Peak resident memory (VmHWM) of the running emulator, bytes; NaN while it is stopped. */
  peakRss(): number;
}

export async function startFakeGcs(opts: { backend?: "memory" | "filesystem" } = {}): Promise<FakeGcs> {
  if (!fs.existsSync(FAKE_GCS_BIN)) {
    throw new Error(`fake-gcs-server is missing at ${FAKE_GCS_BIN}: run bash test/setup/install-tools.sh (jest's globalSetup and npm run bench do)`);
  }
  const backend = opts.backend ?? "memory";
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const root = backend === "filesystem" ? await makeTempDir("fake-gcs-") : undefined;
  let child: ChildProcess | undefined;
  let output = "";

  const start = async (): Promise<void> => {
    if (child) return;
    const args = ["-scheme", "http", "-host", "127.0.0.1", "-port", String(port), "-backend", backend,
      "-public-host", `127.0.0.1:${port}`, "-external-url", url, "-log-level", "error"];
    if (root) args.push("-filesystem-root", root.path);
    output = "";
    const proc = spawn(FAKE_GCS_BIN, args, { stdio: ["ignore", "pipe", "pipe"] });
    ownChild(proc);
    child = proc;
    proc.stdout!.on("data", (d: Buffer) => (output += d.toString()));
    proc.stderr!.on("data", (d: Buffer) => (output += d.toString()));
    proc.once("exit", () => {
      if (child === proc) child = undefined;
    });
    await waitUntilReady(url, () => child === proc, () => output);
  };

  const kill = async (): Promise<void> => {
    const proc = child;
    if (!proc) return;
    child = undefined;
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      proc.once("exit", () => resolve());
      proc.kill("SIGTERM");
      // The emulator may linger on open connections; do not wait for it forever.
      setTimeout(() => proc.kill("SIGKILL"), 2000).unref();
    });
  };

  await start();
  return {
    url,
    port,
    start,
    kill,
    get pid() {
      return child?.pid;
    },
    peakRss: () => (child?.pid === undefined ? NaN : peakRssOf(child.pid)),
    restart: async () => {
      await kill();
      await start();
    },
    stop: async () => {
      await kill();
      await root?.cleanup();
    },
  };
}

async function waitUntilReady(url: string, alive: () => boolean, output: () => string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (!alive()) throw new Error(`fake-gcs-server exited during start-up: ${output().trim()}`);
    try {
      const res = await fetch(`${url}/storage/v1/b?project=test`, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      if (res.ok) return;
    } catch {
      // Not listening yet.
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`fake-gcs-server did not answer within 15 s: ${output().trim()}`);
}
