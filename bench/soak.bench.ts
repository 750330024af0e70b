/**
 * Soak: BENCH_CLIENTS (default 64) concurrent clients, each on its own
 * connection, for BENCH_SECONDS (default 60) against a spawned daemon on its
 * local tier (default settings): store / retrieve / stat / list / delete of
 * 1 KiB..1 MiB objects, every answer checked. Then BENCH_CANCELS (default
 * 1000) StoreStreams cancelled mid-stream and as many RetrieveStreams
 * cancelled after their first chunk. The daemon's RSS and open descriptors
 * (/proc/<pid>/fd) are sampled every second. Prints p50/p99 per operation,
 * the samples, and verdicts with their tolerances; exits 1 if any fails.
 * Not in the default `npm run bench`: run it on request.
 *
 * Run:  npm run build && node dist/bench/soak.bench.js
 *       node dist/bench/run-all.js soak
 *       BENCH_SECONDS=300 BENCH_CLIENTS=128 node dist/bench/soak.bench.js
 */
import * as path from "node:path";
import { spawnDaemon } from "../test/kit/daemon-process.js";
import { freePort } from "../test/kit/free-port.js";
import { makeTempDir } from "../test/kit/temp-dir.js";
import { machineLine, mallocTuningWanted, MiB, positiveInt, scratchRoot } from "./support/bench-settings.js";
import { runBench } from "./support/bench-run.js";
import { fixed, percentile, printTable } from "./support/bench-report.js";
import { OPERATIONS, runSoak, soakVerdicts } from "./support/soak-load.js";

async function main(): Promise<void> {
  const seconds = positiveInt("BENCH_SECONDS", 60);
  const clients = positiveInt("BENCH_CLIENTS", 64);
  const cancels = positiveInt("BENCH_CANCELS", 1000);
  const dir = await makeTempDir("fs-bench-soak-", scratchRoot());
  const storagePath = path.join(dir.path, "daemon");
  const metricsPort = await freePort();
  const daemon = await spawnDaemon({ LOCAL_STORAGE_PATH: storagePath, METRICS_PORT: String(metricsPort) }, { mallocTuning: mallocTuningWanted() });
  try {
    console.log(
      `soak: ${clients} clients (one connection each), ${seconds} s, store/retrieve/stat/list/delete of 1 KiB..1 MiB objects, ` +
        `then ${cancels} cancelled uploads and ${cancels} cancelled downloads; daemon local tier, default settings`,
    );
    console.log(`machine: ${machineLine()}`);
    const result = await runSoak({
      address: daemon.address,
      pid: daemon.pid,
      metricsPort,
      storagePath,
      seconds,
      clients,
      cancelledUploads: cancels,
      cancelledDownloads: cancels,
      progress: (line) => console.log(line),
    });

    console.log("");
    const rows = OPERATIONS.map((op) => {
      const lat = result.latenciesMs[op];
      return [op, String(lat.length), fixed(lat.length / seconds, 0), fixed(percentile(lat, 50), 1), fixed(percentile(lat, 99), 1)];
    });
    const all = OPERATIONS.flatMap((op) => result.latenciesMs[op]);
    rows.push(["all", String(all.length), fixed(all.length / seconds, 0), fixed(percentile(all, 50), 1), fixed(percentile(all, 99), 1)]);
    printTable(["operation", "count", "ops/s", "p50 ms", "p99 ms"], rows);
    console.log(`errors: ${result.errors}${result.errorSamples.length ? ` (${result.errorSamples.join("; ")})` : ""}`);

    console.log("\ndaemon every 10 s during the load (RSS MiB / open fds):");
    console.log(
      result.samples
        .filter((s, i) => i % 10 === 0 || i === result.samples.length - 1)
        .map((s) => `${Math.round(s.atMs / 1000)}s ${(s.rssBytes / MiB).toFixed(0)}/${s.fds}`)
        .join("  "),
    );
    // Flat means: no growth over the second half (the first is ramp-up: cache filling, heap sizing).
    const warmupMs = (seconds * 1000) / 2;
    const windowMs = Math.min(10_000, (seconds * 1000) / 6);
    const verdicts = soakVerdicts(result, { warmupMs, windowMs });
    console.log("");
    printTable(
      ["check", "verdict", "numbers"],
      verdicts.map((v) => [v.name, v.ok ? "ok" : "FAILED", v.detail]),
    );
    if (verdicts.some((v) => !v.ok)) process.exitCode = 1;
  } finally {
    await daemon.stop();
    await dir.cleanup();
  }
}

runBench("soak", main, { mallocTuning: true });
