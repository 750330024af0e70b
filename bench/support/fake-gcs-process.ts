/**
 * The fake-gcs-server emulator (memory backend) on a free loopback port, for
 * the GCS benchmark. The binary is the one the test setup installs
 * (test/setup/install-tools.sh -> .test-tools/bin/fake-gcs-server). The
 * memory backend holds every object in RAM: keep benchmark objects modest.
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { repoRoot } from "./bench-settings.js";

export interface FakeGcsProcess {
  /** Base URL for the SDK's apiEndpoint and GCS_API_ENDPOINT (no /storage/v1). */
  url: string;
  pid: number;
  /** Peak resident memory of the emulator (VmHWM), bytes. */
  peakRss(): number;
  stop(): Promise<void>;
}

/** Starts the emulator and resolves once it answers; rejects if the binary is missing. */
export async function startFakeGcs(): Promise<FakeGcsProcess> {
  const bin = path.join(repoRoot(), ".test-tools", "bin", "fake-gcs-server");
  if (!fs.existsSync(bin)) throw new Error(`fake-gcs-server is missing at ${bin}: run test/setup/install-tools.sh`);
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(
    bin,
    ["-scheme", "http", "-host", "127.0.0.1", "-port", String(port), "-backend", "memory",
      "-public-host", `127.0.0.1:${port}`, "-external-url", url, "-log-level", "error"],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let output = "";
  child.stderr!.on("data", (d: Buffer) => (output = (output + d.toString()).slice(-4000)));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`fake-gcs-server exited during start-up: ${output}`);
    try {
      const res = await fetch(`${url}/storage/v1/b?project=bench`, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      if (res.ok) break;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`fake-gcs-server did not answer within 15 s: ${output}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const pid = child.pid!;
  return {
    url,
    pid,
    peakRss() {
      try {
        const kb = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
        return kb ? Number(kb[1]) * 1024 : NaN;
      } catch {
        return NaN;
      }
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 2000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** A port the OS considers free right now. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}
