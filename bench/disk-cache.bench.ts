/**
 * The disk cache of GCS objects: a repeated RetrieveStream of one
 * BENCH_MIB (default 1024) MiB GCS object (fake-gcs-server, memory backend),
 * served from the daemon's disk cache, against the same download of the same
 * bytes from a daemon's local tier (embedded mode), in the same run. Target
 * (issue 10): at least 0.8x.
 *
 * Both daemons run as their own processes with the malloc tuning of `npm
 * start` and their defaults otherwise (DISK_CACHE_MAX_MB raised to hold the
 * object); the object is incompressible, so both keep it uncompressed. The
 * first download through the GCS daemon (the fill: GCS -> disk cache while
 * the client reads) is reported apart; then runs are interleaved
 * (BENCH_RUNS, default 3) and every cached run is checked to have been a
 * disk-cache hit (GetStats) and every download to have the right size and
 * CRC32C (the client checks it).
 *
 * Run:  npm run build && node dist/bench/disk-cache.bench.js
 *       (or node dist/bench/run-all.js disk-cache); BENCH_MIB=256 BENCH_RUNS=5 ...
 */
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as fsp from "node:fs/promises";
import * as path from "node:path";
import { FileStorageClient } from "../client/src/index.js";
import { spawnDaemon, type DaemonProcess } from "../test/kit/daemon-process.js";
import { startFakeGcs } from "../test/kit/fake-gcs.js";
import { makeTempDir } from "../test/kit/temp-dir.js";
import { machineLine, mallocTuningWanted, MiB, positiveInt, scratchRoot } from "./support/bench-settings.js";
import { fixed, median, mib, printTable, ratio, secondsSince } from "./support/bench-report.js";

const KEY = "bench/model.bin";

interface Side {
  name: string;
  daemon: DaemonProcess;
  client: FileStorageClient;
  rates: number[];
  /** Daemon CPU seconds (user + system) per GiB downloaded, per run: less sensitive than MiB/s to a busy machine. */
  cpuPerGiB: number[];
  peakRss: number;
}

/** User + system CPU seconds of process `pid` so far (/proc/<pid>/stat, in clock ticks of 1/100 s). */
function cpuSeconds(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

async function main(): Promise<void> {
  const total = positiveInt("BENCH_MIB", 1024) * MiB;
  const runs = positiveInt("BENCH_RUNS", 3);
  const block = randomBytes(MiB);
  const gcs = await startFakeGcs();
  const dir = await makeTempDir("fs-bench-disk-cache-", scratchRoot());
  const sides: Side[] = [];
  try {
    const tuning = { mallocTuning: mallocTuningWanted() };
    for (const [name, env] of [
      [
        "GCS object from the disk cache",
        { GCS_BUCKET_NAME: "bench-disk-cache", GCS_PROJECT_ID: "bench", GCS_API_ENDPOINT: gcs.url, DISK_CACHE_MAX_MB: String(Math.ceil((2 * total) / MiB)) },
      ],
      ["local tier (embedded mode)", {}],
    ] as const) {
      const storage = path.join(dir.path, name.startsWith("GCS") ? "gcs-daemon" : "local-daemon");
      await fsp.mkdir(storage);
      const daemon = await spawnDaemon({ LOCAL_STORAGE_PATH: storage, ...env }, tuning);
      sides.push({ name, daemon, client: new FileStorageClient(daemon.address), rates: [], cpuPerGiB: [], peakRss: 0 });
    }
    const [cached, local] = sides as [Side, Side];

    console.log(`disk cache: repeated ${total / MiB} MiB RetrieveStream of a GCS object (fake-gcs-server, memory backend), median of ${runs} interleaved runs`);
    console.log(`machine: ${machineLine()}`);
    for (const side of sides) {
      const info = await side.client.upload(KEY, pieces(block, total), { size: total });
      if (Number(info.size) !== total) throw new Error(`${side.name}: stored ${info.size} bytes, expected ${total}`);
      if (side === cached && info.backend !== "gcs") throw new Error(`the object landed on ${info.backend}, not in GCS`);
    }
    let started = process.hrtime.bigint();
    await download(cached.client, total);
    const fillRate = total / MiB / secondsSince(started);
    if ((await cached.client.getStats()).diskCacheEntries !== 1) throw new Error("the first download did not fill the disk cache");
    await download(local.client, total); // the same warm-up for the baseline

    for (let run = 0; run < runs; run++) {
      for (const side of sides) {
        side.daemon.resetPeakRss();
        const hitsBefore = (await side.client.getStats()).diskCacheHits;
        const cpuBefore = cpuSeconds(side.daemon.pid);
        started = process.hrtime.bigint();
        await download(side.client, total);
        side.rates.push(total / MiB / secondsSince(started));
        side.cpuPerGiB.push((cpuSeconds(side.daemon.pid) - cpuBefore) / (total / (1024 * MiB)));
        side.peakRss = Math.max(side.peakRss, side.daemon.peakRss());
        if (side === cached && (await side.client.getStats()).diskCacheHits !== hitsBefore + 1) throw new Error("a cached run was not a disk-cache hit");
      }
    }

    const rate = (s: Side) => median(s.rates);
    const cpu = (s: Side) => median(s.cpuPerGiB);
    printTable(
      ["path", "down MiB/s", "vs local tier", "daemon CPU s/GiB", "daemon peak RSS MiB", "runs MiB/s"],
      [
        ...sides.map((s) => [s.name, fixed(rate(s)), ratio(rate(s), rate(local)), fixed(cpu(s), 2), mib(s.peakRss), s.rates.map((r) => r.toFixed(0)).join("/")]),
        ["first read through GCS (fills the cache)", fixed(fillRate), ratio(fillRate, rate(local)), "-", "-", fillRate.toFixed(0)],
      ],
    );
    console.log(
      `key ratio: disk cache / local tier ${ratio(rate(cached), rate(local))} (target >= 0.80x); ` +
        `daemon CPU per GiB ${fixed(cpu(cached), 2)} s against ${fixed(cpu(local), 2)} s`,
    );
  } finally {
    for (const side of sides) {
      side.client.close();
      await side.daemon.stop().catch(() => undefined);
    }
    await gcs.stop();
    await dir.cleanup();
  }
}

/** `total` bytes as views of one random block. */
function* pieces(block: Buffer, total: number): Generator<Buffer> {
  for (let sent = 0; sent < total; sent += block.length) yield block.subarray(0, Math.min(block.length, total - sent));
}

async function download(client: FileStorageClient, total: number): Promise<void> {
  const { stream } = await client.download(KEY);
  let received = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) received += chunk.length;
  if (received !== total) throw new Error(`downloaded ${received} bytes, expected ${total}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
