/**
 * What an upload_id costs: BENCH_MIB (default 1024) MiB of incompressible
 * bytes uploaded to the daemon's local tier as a plain StoreStream and as a
 * resumable one (the same client call with `resumable: true`: the daemon
 * checkpoints every 16 MiB or 1 s, fsync + an index commit each, and the
 * client keeps its replay window), interleaved runs (BENCH_RUNS, default 5),
 * medians and the ratio resumable / plain printed, with the daemon's CPU
 * seconds per GiB (/proc utime+stime across each upload) and peak RSS.
 * Optionally a third row through a TCP proxy dropping the connection
 * BENCH_DROPS times (default 0: off) per upload.
 *
 * Run:  npm run build && node dist/bench/resumable.bench.js
 *       BENCH_MIB=256 BENCH_RUNS=3 BENCH_DROPS=10 node dist/bench/resumable.bench.js
 */
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { FileStorageClient, type UploadOptions } from "../client/src/index.js";
import { spawnDaemon, type DaemonProcess } from "../test/kit/daemon-process.js";
import { startProxy, type TcpProxy } from "../test/kit/tcp-proxy.js";
import { makeTempDir } from "../test/kit/temp-dir.js";
import { machineLine, mallocTuningWanted, MiB, positiveInt, scratchRoot } from "./support/bench-settings.js";
import { fixed, median, mib, printTable, ratio, secondsSince } from "./support/bench-report.js";

const CHUNK = MiB;

interface Path {
  name: string;
  client: FileStorageClient;
  opts: UploadOptions;
  /** Set for the row through the dropping proxy. */
  proxy?: TcpProxy;
  rates: number[];
  cpuPerGiB: number[];
}

/** CPU seconds (user + system) the process has used so far. */
function cpuSeconds(pid: number): number {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  // utime and stime are fields 14 and 15 of stat; after "pid (comm) " they are at 11 and 12.
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** `total` bytes as views of one random block, as a network source would hand them over. */
function* pieces(block: Buffer, total: number): Generator<Buffer> {
  for (let sent = 0; sent < total; sent += block.length) yield block.subarray(0, Math.min(block.length, total - sent));
}

async function main(): Promise<void> {
  const total = positiveInt("BENCH_MIB", 1024) * MiB;
  const runs = positiveInt("BENCH_RUNS", 5);
  const drops = Number(process.env.BENCH_DROPS ?? 0);
  const block = randomBytes(CHUNK);
  const dir = await makeTempDir("fs-bench-resumable-", scratchRoot());
  let daemon: DaemonProcess | undefined;
  const closers: (() => unknown)[] = [];
  try {
    daemon = await spawnDaemon({ LOCAL_STORAGE_PATH: path.join(dir.path, "storage"), ENABLE_COMPRESSION: "false" }, { mallocTuning: mallocTuningWanted() });
    const client = new FileStorageClient(daemon.address);
    closers.push(() => client.close());
    const paths: Path[] = [
      { name: "plain StoreStream", client, opts: {}, rates: [], cpuPerGiB: [] },
      { name: "StoreStream with upload_id", client, opts: { resumable: true }, rates: [], cpuPerGiB: [] },
    ];
    if (drops > 0) {
      const proxy = await startProxy(Number(daemon.address.split(":")[1]));
      const viaProxy = new FileStorageClient(proxy.address);
      closers.push(() => viaProxy.close(), () => proxy.close());
      paths.push({ name: `upload_id, ${drops} dropped connections`, client: viaProxy, opts: { resumable: true }, proxy, rates: [], cpuPerGiB: [] });
    }
    console.log(`resumable upload overhead: ${total / MiB} MiB, ${CHUNK / MiB} MiB chunks, incompressible, median of ${runs} interleaved runs`);
    console.log(`machine: ${machineLine()}`);
    for (const p of paths) await p.client.upload("bench/warm-up", pieces(block, 32 * MiB), p.opts);
    let maxRss = 0;
    for (let run = 0; run < runs; run++) {
      for (const p of paths) {
        if (p.proxy) p.proxy.dropAt(Array.from({ length: drops }, (_, i) => Math.floor(((i + 1) * total) / (drops + 1))));
        daemon.resetPeakRss();
        const cpu = cpuSeconds(daemon.pid);
        const started = process.hrtime.bigint();
        const info = await p.client.upload("bench/resumable.bin", pieces(block, total), { ...p.opts, size: total });
        const seconds = secondsSince(started);
        if (Number(info.size) !== total) throw new Error(`stored ${info.size} bytes, expected ${total}`);
        p.rates.push(total / MiB / seconds);
        p.cpuPerGiB.push((cpuSeconds(daemon.pid) - cpu) / (total / (1024 * MiB)));
        maxRss = Math.max(maxRss, daemon.peakRss());
      }
    }
    const [plain] = paths as [Path];
    printTable(
      ["path", "MiB/s", "vs plain", "daemon CPU s/GiB", "runs MiB/s"],
      paths.map((p) => [p.name, fixed(median(p.rates)), ratio(median(p.rates), median(plain.rates)), fixed(median(p.cpuPerGiB), 2), p.rates.map((r) => r.toFixed(0)).join("/")]),
    );
    console.log(`daemon peak RSS (any run): ${mib(maxRss)} MiB`);
  } finally {
    for (const close of closers.reverse()) await Promise.resolve(close()).catch(() => undefined);
    await daemon?.stop();
    await dir.cleanup();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
