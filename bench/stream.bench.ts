/**
 * Streaming throughput: BENCH_MIB (default 1024) MiB of incompressible bytes
 * uploaded (StoreStream) and downloaded (RetrieveStream) through the daemon's
 * local tier, with compression off and on, beside two baselines measured in
 * the same run on the same machine:
 *   - a bare grpc-js echo service (client stream that discards, server stream
 *     that produces bytes; raw buffers, no protobuf), same 1 MiB chunks and the
 *     same channel options as FileStorageClient;
 *   - the durable floor: a plain file written in 1 MiB pieces, fsync, rename,
 *     folder fsync, and read back with a 1 MiB stream buffer.
 * Each server runs as its own process with the malloc tuning of `npm start`;
 * this process is the client. Runs are interleaved (BENCH_RUNS, default 3) and
 * medians printed, with the ratio product/baseline and each server's peak RSS.
 *
 * Run:  npm run build && node dist/bench/stream.bench.js
 *       BENCH_MIB=256 BENCH_RUNS=5 node dist/bench/stream.bench.js
 */
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as fsp from "node:fs/promises";
import * as path from "node:path";
import { FileStorageClient } from "../client/src/index.js";
import { spawnDaemon, type DaemonProcess } from "../test/kit/daemon-process.js";
import { makeTempDir } from "../test/kit/temp-dir.js";
import { machineLine, mallocTuningWanted, MiB, positiveInt, scratchRoot } from "./support/bench-settings.js";
import { runBench } from "./support/bench-run.js";
import { fixed, median, mib, printTable, ratio, secondsSince } from "./support/bench-report.js";
import { echoClient, startEchoServer } from "./support/echo-server.js";
import { CHUNK, echoDown, echoUp, pieces, productDown, productUp } from "./support/stream-paths.js";

interface Path {
  name: string;
  server?: DaemonProcess;
  up(bytes: number): Promise<void>;
  down(bytes: number): Promise<void>;
  upRates: number[];
  downRates: number[];
  peakRss: number;
}


async function main(): Promise<void> {
  const total = positiveInt("BENCH_MIB", 1024) * MiB;
  const runs = positiveInt("BENCH_RUNS", 3);
  const block = randomBytes(CHUNK);
  const dir = await makeTempDir("fs-bench-stream-", scratchRoot());
  const stopAll: (() => Promise<void>)[] = [];
  try {
    const paths: Path[] = [];
    for (const compression of [false, true]) {
      const storage = path.join(dir.path, compression ? "daemon-gzip" : "daemon-plain");
      await fsp.mkdir(storage);
      const daemon = await spawnDaemon({ LOCAL_STORAGE_PATH: storage, ENABLE_COMPRESSION: String(compression) }, { mallocTuning: mallocTuningWanted() });
      const client = new FileStorageClient(daemon.address);
      stopAll.push(async () => {
        client.close();
        await daemon.stop();
      });
      paths.push(newPath(`daemon local, compression ${compression ? "on" : "off"}`, daemon, (n) => productUp(client, block, n), (n) => productDown(client, n)));
    }
    const echo = await startEchoServer();
    const bare = echoClient(echo.address);
    stopAll.push(async () => {
      bare.close();
      await echo.stop();
    });
    paths.push(newPath("bare grpc-js echo", echo, (n) => echoUp(bare, block, n), (n) => echoDown(bare, n)));
    const file = path.join(dir.path, "floor.bin");
    paths.push(newPath("file: write+fsync+rename / read", undefined, (n) => fileUp(file, block, n), (n) => fileDown(file, n)));

    console.log(`stream throughput: ${total / MiB} MiB each way, ${CHUNK / MiB} MiB chunks, incompressible data, median of ${runs} interleaved runs`);
    console.log(`machine: ${machineLine()}`);
    // Warm-up (connections, JIT, first allocations), not measured.
    for (const p of paths) {
      await p.up(Math.min(total, 32 * MiB));
      await p.down(Math.min(total, 32 * MiB));
    }
    for (let run = 0; run < runs; run++) {
      for (const p of paths) {
        p.server?.resetPeakRss();
        let started = process.hrtime.bigint();
        await p.up(total);
        p.upRates.push(total / MiB / secondsSince(started));
        started = process.hrtime.bigint();
        await p.down(total);
        p.downRates.push(total / MiB / secondsSince(started));
        if (p.server) p.peakRss = Math.max(p.peakRss, p.server.peakRss());
      }
    }

    const [plain, gzip, echoPath, floor] = paths as [Path, Path, Path, Path];
    const up = (p: Path) => median(p.upRates);
    const down = (p: Path) => median(p.downRates);
    const runsOf = (rates: number[]) => rates.map((r) => r.toFixed(0)).join("/");
    printTable(
      ["path", "up MiB/s", "down MiB/s", "up vs echo", "down vs echo", "up vs file", "down vs file", "server peak RSS MiB", "up runs", "down runs"],
      paths.map((p) => [
        p.name,
        fixed(up(p)),
        fixed(down(p)),
        ratio(up(p), up(echoPath)),
        ratio(down(p), down(echoPath)),
        ratio(up(p), up(floor)),
        ratio(down(p), down(floor)),
        p.server ? mib(p.peakRss) : "-",
        runsOf(p.upRates),
        runsOf(p.downRates),
      ]),
    );
    console.log(
      `key ratios: daemon/echo up ${ratio(up(plain), up(echoPath))} down ${ratio(down(plain), down(echoPath))}; ` +
        `daemon/file up ${ratio(up(plain), up(floor))}; compression on/off up ${ratio(up(gzip), up(plain))} down ${ratio(down(gzip), down(plain))}`,
    );
  } finally {
    for (const stop of stopAll.reverse()) await stop().catch(() => undefined);
    await dir.cleanup();
  }
}

function newPath(
  name: string,
  server: DaemonProcess | undefined,
  up: (bytes: number) => Promise<void>,
  down: (bytes: number) => Promise<void>,
): Path {
  return { name, server, up, down, upRates: [], downRates: [], peakRss: 0 };
}

async function fileUp(file: string, block: Buffer, total: number): Promise<void> {
  const temp = `${file}.tmp`;
  const fh = await fsp.open(temp, "w");
  try {
    for (const piece of pieces(block, total)) await fh.write(piece);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await fsp.rename(temp, file);
  const folder = await fsp.open(path.dirname(file), "r");
  await folder.sync().finally(() => folder.close());
}

async function fileDown(file: string, total: number): Promise<void> {
  let received = 0;
  for await (const chunk of fs.createReadStream(file, { highWaterMark: MiB }) as AsyncIterable<Buffer>) received += chunk.length;
  if (received !== total) throw new Error(`read ${received} bytes, expected ${total}`);
}

runBench("stream", main, { mallocTuning: true });
