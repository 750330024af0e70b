/**
 * Durable small writes: unary Store of 4 KiB (BENCH_OBJECT_BYTES) random
 * objects under fresh keys, with 1 and 16 calls in flight (BENCH_IN_FLIGHT,
 * default "1,16"), to the daemon's local tier with its default settings
 * (cache and compression on: random bytes are sampled and stored as they are).
 * Beside it in the same run:
 *   - a bare grpc-js unary echo of the same bytes (the RPC floor);
 *   - the durable floor: write a file, fsync, rename; and the same plus a
 *     folder fsync (what makes the rename itself survive a crash).
 * Each path runs closed-loop for BENCH_SECONDS (default 3) per run, BENCH_RUNS
 * (default 3) interleaved runs; prints median ops/s, p50/p99 latency over all
 * runs, and ratios against the baselines.
 *
 * Run:  npm run build && node dist/bench/small-writes.bench.js
 *       BENCH_SECONDS=5 BENCH_IN_FLIGHT=1,4,16 node dist/bench/small-writes.bench.js
 */
import { randomBytes } from "node:crypto";
import * as fsp from "node:fs/promises";
import * as path from "node:path";
import { FileStorageClient } from "../client/src/index.js";
import { spawnDaemon, type DaemonProcess } from "../test/kit/daemon-process.js";
import { makeTempDir } from "../test/kit/temp-dir.js";
import { KiB, machineLine, mallocTuningWanted, positiveInt, positiveInts, scratchRoot } from "./support/bench-settings.js";
import { runBench } from "./support/bench-run.js";
import { fixed, median, mib, msSince, percentile, printTable, ratio, secondsSince } from "./support/bench-report.js";
import { echoClient, startEchoServer, type EchoClient } from "./support/echo-server.js";

interface Path {
  name: string;
  server?: DaemonProcess;
  /** One write; `n` is unique across the whole benchmark. */
  write(n: number): Promise<void>;
}

interface Result {
  rates: number[];
  latenciesMs: number[];
}

async function main(): Promise<void> {
  const objectBytes = positiveInt("BENCH_OBJECT_BYTES", 4 * KiB);
  const seconds = positiveInt("BENCH_SECONDS", 3);
  const runs = positiveInt("BENCH_RUNS", 3);
  const inFlight = positiveInts("BENCH_IN_FLIGHT", [1, 16]);
  const data = randomBytes(objectBytes);
  const dir = await makeTempDir("fs-bench-small-", scratchRoot());
  const stopAll: (() => Promise<void>)[] = [];
  try {
    await fsp.mkdir(path.join(dir.path, "daemon"));
    const daemon = await spawnDaemon({ LOCAL_STORAGE_PATH: path.join(dir.path, "daemon") }, { mallocTuning: mallocTuningWanted() });
    const client = new FileStorageClient(daemon.address);
    stopAll.push(async () => {
      client.close();
      await daemon.stop();
    });
    const echo = await startEchoServer();
    const bare = echoClient(echo.address);
    stopAll.push(async () => {
      bare.close();
      await echo.stop();
    });
    const files = path.join(dir.path, "files");
    await fsp.mkdir(files);
    const folder = await fsp.open(files, "r");
    stopAll.push(() => folder.close());

    const paths: Path[] = [
      {
        name: "daemon Store (local, defaults)",
        server: daemon,
        async write(n) {
          const info = await client.store(`small/${n}`, data);
          if (Number(info.size) !== objectBytes) throw new Error(`daemon stored ${info.size} bytes`);
        },
      },
      { name: "bare grpc-js unary echo", server: echo, write: () => echoOnce(bare, data) },
      { name: "file+fsync+rename", write: (n) => durableFile(files, n, data) },
      {
        name: "file+fsync+rename+folder fsync",
        async write(n) {
          await durableFile(files, n, data);
          await folder.sync();
        },
      },
    ];

    console.log(
      `durable small writes: ${objectBytes}-byte objects under fresh keys, ${seconds} s closed loop per run, ` +
        `median ops/s of ${runs} interleaved runs, latency percentiles over all runs`,
    );
    console.log(`machine: ${machineLine()}`);
    let counter = 0;
    const rows: string[][] = [];
    for (const concurrency of inFlight) {
      const results = new Map<Path, Result>(paths.map((p) => [p, { rates: [], latenciesMs: [] }]));
      const peaks = new Map<Path, number>();
      for (const p of paths) {
        // Warm-up: connections, JIT, the daemon's first writes.
        await closedLoop(p, concurrency, 0.5, () => counter++);
        p.server?.resetPeakRss();
      }
      for (let run = 0; run < runs; run++) {
        for (const p of paths) {
          const r = await closedLoop(p, concurrency, seconds, () => counter++);
          results.get(p)!.rates.push(r.rate);
          results.get(p)!.latenciesMs.push(...r.latenciesMs);
          if (p.server) peaks.set(p, Math.max(peaks.get(p) ?? 0, p.server.peakRss()));
        }
      }
      const rate = (p: Path) => median(results.get(p)!.rates);
      const [product, echoPath, file, fileSynced] = paths as [Path, Path, Path, Path];
      for (const p of paths) {
        const lat = results.get(p)!.latenciesMs;
        rows.push([
          p.name,
          String(concurrency),
          fixed(rate(p), 0),
          fixed(percentile(lat, 50), 2),
          fixed(percentile(lat, 99), 2),
          ratio(rate(p), rate(echoPath)),
          ratio(rate(p), rate(file)),
          ratio(rate(p), rate(fileSynced)),
          p.server ? mib(peaks.get(p)) : "-",
          results.get(p)!.rates.map((r) => r.toFixed(0)).join("/"),
        ]);
      }
      console.log(
        `in flight ${concurrency}: daemon ${fixed(rate(product), 0)} ops/s = ${ratio(rate(product), rate(echoPath))} of bare grpc-js, ` +
          `${ratio(rate(product), rate(file))} of file+fsync+rename, ${ratio(rate(product), rate(fileSynced))} of the same with folder fsync`,
      );
    }
    printTable(
      ["path", "in flight", "ops/s", "p50 ms", "p99 ms", "vs echo", "vs file+fsync", "vs +folder fsync", "server peak RSS MiB", "runs ops/s"],
      rows,
    );
  } finally {
    for (const stop of stopAll.reverse()) await stop().catch(() => undefined);
    await dir.cleanup();
  }
}

/** `concurrency` workers each writing back to back for `seconds`; ops/s and each write's latency. */
async function closedLoop(p: Path, concurrency: number, seconds: number, next: () => number): Promise<{ rate: number; latenciesMs: number[] }> {
  const latenciesMs: number[] = [];
  const started = process.hrtime.bigint();
  const deadline = started + BigInt(Math.round(seconds * 1e9));
  const worker = async (): Promise<void> => {
    while (process.hrtime.bigint() < deadline) {
      const t0 = process.hrtime.bigint();
      await p.write(next());
      latenciesMs.push(msSince(t0));
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return { rate: latenciesMs.length / secondsSince(started), latenciesMs };
}

function echoOnce(client: EchoClient, data: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    client.echo(data, (err, res) => {
      if (err) reject(err);
      else if (res!.length !== data.length) reject(new Error(`echo answered ${res!.length} bytes`));
      else resolve();
    });
  });
}

/** Write to a temp name, fsync, rename into place: a file that is whole or absent after a crash. */
async function durableFile(folder: string, n: number, data: Buffer): Promise<void> {
  const temp = path.join(folder, `.${n}.tmp`);
  const fh = await fsp.open(temp, "w");
  try {
    await fh.write(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await fsp.rename(temp, path.join(folder, String(n)));
}

runBench("small-writes", main, { mallocTuning: true });
