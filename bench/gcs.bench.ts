/**
 * The daemon's GCS tier against the @google-cloud/storage SDK called directly,
 * both on the same fake-gcs-server emulator (memory backend) in the same run:
 *   - small objects: BENCH_GCS_OBJECTS (default 200) x BENCH_GCS_OBJECT_KIB
 *     (default 16) KiB stored, then retrieved, with 1 and 8 in flight
 *     (BENCH_IN_FLIGHT);
 *   - one large object of BENCH_GCS_LARGE_MIB (default 256) MiB uploaded and
 *     downloaded in 1 MiB pieces (the daemon in parallel parts with its
 *     default settings; the SDK with one resumable upload and one read).
 * The daemon runs with ENABLE_CACHE=false and DISK_CACHE_MAX_MB=0 (reads
 * reach GCS: this measures the GCS tier; BENCH_DISK_CACHE_MAX_MB=1024 runs it
 * with the disk cache's default, where each first read also copies the object
 * to disk; bench/disk-cache.bench.ts measures cached reads) and
 * ENABLE_COMPRESSION=false (random bytes; the same bytes go to the emulator).
 * A second daemon with GCS_PARALLEL_READ_PARTS=1 and GCS_PARALLEL_UPLOAD_PARTS=1
 * moves the large object in one stream each way, like the SDK (large object only).
 * Two SDK baselines: its defaults (pure-JS CRC32C, SDK retries on) and the
 * options the daemon itself gives the SDK (native CRC32C, retries off), so the
 * second ratio is the cost of the daemon, its RPC hop and its checks alone.
 * Every store is checked to have landed in GCS, not in the local fallback.
 *
 * Run:  npm run build && node dist/bench/gcs.bench.js
 *       BENCH_GCS_OBJECTS=500 BENCH_GCS_LARGE_MIB=128 node dist/bench/gcs.bench.js
 * The load average at the start and at the end is printed: the machine is shared.
 */
import { randomBytes } from "node:crypto";
import * as os from "node:os";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { Storage, type Bucket } from "@google-cloud/storage";
import { FileStorageClient, type ObjectInfo } from "../client/src/index.js";
import { gcsStorageOptions } from "../server/backends/gcs/gcs-backend.js";
import { spawnDaemon } from "../test/kit/daemon-process.js";
import { startFakeGcs } from "../test/kit/fake-gcs.js";
import { makeTempDir } from "../test/kit/temp-dir.js";
import { KiB, machineLine, mallocTuningWanted, MiB, positiveInt, positiveInts, scratchRoot } from "./support/bench-settings.js";
import { runBench } from "./support/bench-run.js";
import { fixed, median, mib, printTable, ratio, secondsSince } from "./support/bench-report.js";

const PROJECT = "bench";

/** One way of storing into and reading from the emulator. */
interface Path {
  name: string;
  /** Only the large object is measured. */
  largeOnly?: boolean;
  store(key: string, data: Buffer): Promise<void>;
  retrieve(key: string, size: number): Promise<void>;
  upload(key: string, source: Iterable<Buffer>, size: number): Promise<void>;
  download(key: string, size: number): Promise<void>;
}

type Measure = "store" | "retrieve" | "upload" | "download";

async function main(): Promise<void> {
  const objects = positiveInt("BENCH_GCS_OBJECTS", 200);
  const objectBytes = positiveInt("BENCH_GCS_OBJECT_KIB", 16) * KiB;
  const largeBytes = positiveInt("BENCH_GCS_LARGE_MIB", 256) * MiB;
  const runs = positiveInt("BENCH_RUNS", 3);
  const inFlight = positiveInts("BENCH_IN_FLIGHT", [1, 8]);
  const small = randomBytes(objectBytes);
  const block = randomBytes(MiB);

  const gcs = await startFakeGcs();
  const dir = await makeTempDir("fs-bench-gcs-", scratchRoot());
  const daemon = await spawnDaemon({
    LOCAL_STORAGE_PATH: dir.path,
    GCS_BUCKET_NAME: "bench-daemon",
    GCS_PROJECT_ID: PROJECT,
    GCS_API_ENDPOINT: gcs.url,
    ENABLE_CACHE: "false",
    ENABLE_COMPRESSION: "false",
    DISK_CACHE_MAX_MB: process.env.BENCH_DISK_CACHE_MAX_MB ?? "0",
  }, { mallocTuning: mallocTuningWanted() });
  const oneStreamDir = await makeTempDir("fs-bench-gcs-", scratchRoot());
  const oneStream = await spawnDaemon({
    LOCAL_STORAGE_PATH: oneStreamDir.path,
    GCS_BUCKET_NAME: "bench-daemon-one-stream",
    GCS_PROJECT_ID: PROJECT,
    GCS_API_ENDPOINT: gcs.url,
    ENABLE_CACHE: "false",
    ENABLE_COMPRESSION: "false",
    DISK_CACHE_MAX_MB: process.env.BENCH_DISK_CACHE_MAX_MB ?? "0",
    GCS_PARALLEL_READ_PARTS: "1",
    GCS_PARALLEL_UPLOAD_PARTS: "1",
  }, { mallocTuning: mallocTuningWanted() });
  const client = new FileStorageClient(daemon.address);
  const oneStreamClient = new FileStorageClient(oneStream.address);
  try {
    const paths: Path[] = [
      daemonPath("daemon", client),
      { ...daemonPath("daemon, one stream", oneStreamClient), largeOnly: true },
      await sdkPath("SDK direct, defaults", new Storage({ apiEndpoint: gcs.url, projectId: PROJECT }), "bench-sdk-defaults"),
      await sdkPath(
        "SDK direct, daemon's SDK options",
        new Storage(gcsStorageOptions({ apiEndpoint: gcs.url, projectId: PROJECT, timeoutMs: 30_000 })),
        "bench-sdk-tuned",
      ),
    ];
    console.log(
      `GCS tier vs the SDK on fake-gcs-server (memory backend): ${objects} x ${objectBytes / KiB} KiB objects, ` +
        `one ${largeBytes / MiB} MiB object in 1 MiB pieces; median of ${runs} interleaved runs`,
    );
    console.log(`machine: ${machineLine()}`);

    // "<measure>|<in flight>|<path name>" -> one figure per run.
    const rates = new Map<string, number[]>();
    const record = (label: string, p: Path, value: number) => {
      const id = `${label}|${p.name}`;
      rates.set(id, [...(rates.get(id) ?? []), value]);
    };
    // Warm-up (connections, JIT, bucket look-ups), not measured.
    for (const p of paths) {
      if (!p.largeOnly) await inParallel(["warm/0", "warm/1", "warm/2", "warm/3"], 2, async (key) => {
        await p.store(key, small);
        await p.retrieve(key, objectBytes);
      });
      await p.upload("warm/large", pieces(block, 4 * MiB), 4 * MiB);
      await p.download("warm/large", 4 * MiB);
    }
    for (let run = 0; run < runs; run++) {
      for (const p of paths) {
        for (const n of p.largeOnly ? [] : inFlight) {
          const keys = Array.from({ length: objects }, (_, i) => `small/r${run}/c${n}/${i}`);
          let started = process.hrtime.bigint();
          await inParallel(keys, n, (key) => p.store(key, small));
          record(`store|${n}`, p, objects / secondsSince(started));
          started = process.hrtime.bigint();
          await inParallel(keys, n, (key) => p.retrieve(key, objectBytes));
          record(`retrieve|${n}`, p, objects / secondsSince(started));
        }
        let started = process.hrtime.bigint();
        await p.upload("large/object.bin", pieces(block, largeBytes), largeBytes);
        record("upload|1", p, largeBytes / MiB / secondsSince(started));
        started = process.hrtime.bigint();
        await p.download("large/object.bin", largeBytes);
        record("download|1", p, largeBytes / MiB / secondsSince(started));
      }
    }

    const [product, oneStreamPath, sdkDefaults, sdkTuned] = paths as [Path, Path, Path, Path];
    const med = (label: string, p: Path) => median(rates.get(`${label}|${p.name}`) ?? []);
    const rows: string[][] = [];
    const measures: [Measure, number, string][] = [
      ...inFlight.flatMap((n): [Measure, number, string][] => [
        ["store", n, "ops/s"],
        ["retrieve", n, "ops/s"],
      ]),
      ["upload", 1, "MiB/s"],
      ["download", 1, "MiB/s"],
    ];
    for (const [measure, n, unit] of measures) {
      const label = `${measure}|${n}`;
      const large = unit === "MiB/s";
      const what = large ? `${measure} ${largeBytes / MiB} MiB` : `${measure} ${objectBytes / KiB} KiB`;
      for (const p of large ? [product, oneStreamPath] : [product]) {
        rows.push([
          what,
          p.name,
          String(n),
          unit,
          fixed(med(label, p)),
          fixed(med(label, sdkDefaults)),
          fixed(med(label, sdkTuned)),
          ratio(med(label, p), med(label, sdkDefaults)),
          ratio(med(label, p), med(label, sdkTuned)),
          (rates.get(`${label}|${p.name}`) ?? []).map((r) => r.toFixed(0)).join("/"),
          (rates.get(`${label}|${sdkTuned.name}`) ?? []).map((r) => r.toFixed(0)).join("/"),
        ]);
      }
    }
    printTable(
      ["operation", "path", "in flight", "unit", "daemon", "SDK defaults", "SDK daemon opts", "vs SDK defaults", "vs SDK daemon opts", "daemon runs", "SDK daemon opts runs"],
      rows,
    );
    console.log(`load average at the end: ${os.loadavg().map((l) => l.toFixed(1)).join("/")}`);
    console.log(`peak RSS: daemon ${mib(daemon.peakRss())} MiB, one-stream daemon ${mib(oneStream.peakRss())} MiB, emulator ${mib(gcs.peakRss())} MiB (holds every object in RAM)`);
  } finally {
    client.close();
    oneStreamClient.close();
    await daemon.stop().catch(() => undefined);
    await oneStream.stop().catch(() => undefined);
    await oneStreamDir.cleanup();
    await gcs.stop().catch(() => undefined);
    await dir.cleanup();
  }
}

function daemonPath(name: string, client: FileStorageClient): Path {
  const inGcs = (info: ObjectInfo, size: number) => {
    if (info.backend !== "gcs") throw new Error(`the daemon kept ${info.key} on its ${info.backend} tier, not in GCS`);
    if (Number(info.size) !== size) throw new Error(`the daemon stored ${info.size} bytes of ${info.key}, expected ${size}`);
  };
  return {
    name,
    async store(key, data) {
      inGcs(await client.store(key, data), data.length);
    },
    async retrieve(key, size) {
      const got = await client.retrieve<Buffer>(key);
      if (!got || got.length !== size) throw new Error(`retrieve of ${key} gave ${got?.length} bytes, expected ${size}`);
    },
    async upload(key, source, size) {
      inGcs(await client.upload(key, source, { size }), size);
    },
    async download(key, size) {
      const { stream } = await client.download(key);
      await drain(stream, size);
    },
  };
}

async function sdkPath(name: string, storage: Storage, bucketName: string): Promise<Path> {
  const bucket: Bucket = storage.bucket(bucketName);
  const [exists] = await bucket.exists();
  if (!exists) await storage.createBucket(bucketName);
  return {
    name,
    async store(key, data) {
      await bucket.file(key).save(data, { resumable: false });
    },
    async retrieve(key, size) {
      const [got] = await bucket.file(key).download();
      if (got.length !== size) throw new Error(`SDK download of ${key} gave ${got.length} bytes, expected ${size}`);
    },
    async upload(key, source, size) {
      const file = bucket.file(key);
      const ws = file.createWriteStream({ resumable: true, metadata: { contentType: "application/octet-stream" } });
      await pipeline(Readable.from(source, { objectMode: false, highWaterMark: MiB }), ws);
      // The upload's answer carries the object's metadata; no extra request.
      if (Number(file.metadata.size) !== size) throw new Error(`SDK stored ${file.metadata.size} bytes of ${key}, expected ${size}`);
    },
    async download(key, size) {
      await drain(bucket.file(key).createReadStream(), size);
    },
  };
}

/** Runs `fn` over `items` with at most `concurrency` calls in flight. */
async function inParallel<T>(items: T[], concurrency: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
}

function* pieces(block: Buffer, total: number): Generator<Buffer> {
  for (let sent = 0; sent < total; sent += block.length) yield block.subarray(0, Math.min(block.length, total - sent));
}

async function drain(stream: NodeJS.ReadableStream, size: number): Promise<void> {
  let received = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) received += chunk.length;
  if (received !== size) throw new Error(`downloaded ${received} bytes, expected ${size}`);
}

runBench("gcs", main, { mallocTuning: true });
