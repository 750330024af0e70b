/**
 * Codec write throughput. Streams BENCH_MIB (default 1024) MiB of JSON-like
 * data and of random data through the codec's put path into a null sink, with
 * four codecs: plain (kind check + CRC32C only), gzip, encrypt, gzip+encrypt.
 * Prints the median MiB/s of BENCH_RUNS (default 3) interleaved runs, the
 * stored/original ratio, and the speed relative to the plain codec measured in
 * the same run (machines here are noisy; compare ratios, not absolute figures).
 * Runs in-process (no daemon, no RPC): it isolates the codec's own cost.
 *
 * Run:  npm run build && node dist/bench/codec.bench.js
 *       BENCH_MIB=256 BENCH_CHUNK_BYTES=65536 BENCH_RUNS=5 node dist/bench/codec.bench.js
 *       (BENCH_BYTES, an exact byte count, still wins over BENCH_MIB)
 */
import { randomBytes } from "node:crypto";
import type { Backend, ObjectRecord } from "../server/backends/backend.js";
import { createCodecBackend, createKeyring, type Keyring } from "../server/codec/codec-backend.js";
import { machineLine, MiB, positiveInt } from "./support/bench-settings.js";
import { runBench } from "./support/bench-run.js";
import { median, printTable, ratio } from "./support/bench-report.js";

/** A backend that drains what it is given and keeps nothing. */
function createNullSink(): Backend & { lastStored: number } {
  const unsupported = () => Promise.reject(new Error("the null sink only takes puts"));
  const sink = {
    name: "null",
    lastStored: 0,
    async put(key: string, source: AsyncIterable<Uint8Array>, meta: Parameters<Backend["put"]>[2]): Promise<ObjectRecord> {
      let stored = 0;
      for await (const chunk of source) stored += chunk.length;
      sink.lastStored = stored;
      const now = Date.now();
      return {
        key, generation: 1n, kind: meta.kind, contentType: meta.contentType, metadata: meta.metadata,
        size: meta.size ?? stored, crc32c: meta.crc32c ?? 0, storedSize: stored, encoding: meta.encoding ?? {},
        createdAt: now, updatedAt: now, tier: "local", pendingReplication: false, origin: { writtenAt: now * 1000, writer: "" },
      };
    },
    get: unsupported,
    head: unsupported,
    delete: unsupported,
    list: unsupported,
    probe: async () => {},
    close: async () => {},
  };
  return sink;
}

/** One MiB of JSON-like text (records with varying numbers and repeated field names). */
function jsonLikeBlock(): Buffer {
  const parts: string[] = [];
  let len = 0;
  for (let i = 0; len < MiB; i++) {
    const part = `{"id":${i},"user":"user-${(i * 7919) % 10007}","score":${((i * 31) % 1000) / 10},"tags":["a","b${i % 13}"],"ok":${i % 3 === 0}},\n`;
    parts.push(part);
    len += part.length;
  }
  return Buffer.from(parts.join("")).subarray(0, MiB);
}

async function* repeat(block: Buffer, total: number, chunkBytes: number): AsyncGenerator<Uint8Array> {
  for (let sent = 0; sent < total; ) {
    for (let at = 0; at < block.length && sent < total; at += chunkBytes) {
      const piece = block.subarray(at, Math.min(at + chunkBytes, block.length, at + total - sent));
      sent += piece.length;
      yield piece;
    }
  }
}

async function main(): Promise<void> {
  const total = positiveInt("BENCH_BYTES", positiveInt("BENCH_MIB", 1024) * MiB);
  const chunkBytes = positiveInt("BENCH_CHUNK_BYTES", 256 * 1024);
  const runs = positiveInt("BENCH_RUNS", 3);
  const keyring: Keyring = createKeyring({ primary: randomBytes(32) });
  const codecs: { name: string; compress: boolean; keys?: Keyring }[] = [
    { name: "plain", compress: false },
    { name: "gzip", compress: true },
    { name: "encrypt", compress: false, keys: keyring },
    { name: "gzip+encrypt", compress: true, keys: keyring },
  ];
  const inputs = [
    { name: "json-like", block: jsonLikeBlock() },
    { name: "random", block: randomBytes(MiB) },
  ];
  console.log(
    `codec put throughput: ${(total / MiB).toFixed(0)} MiB per run, ${chunkBytes}-byte chunks, ` +
      `median of ${runs} interleaved runs, in-process into a null sink`,
  );
  console.log(`machine: ${machineLine()}`);
  const rows: string[][] = [];
  for (const input of inputs) {
    const rates = new Map<string, number[]>();
    const storedRatio = new Map<string, number>();
    // Interleaved rounds, so a noisy neighbour slows every codec alike.
    for (let run = 0; run < runs; run++) {
      for (const c of codecs) {
        const sink = createNullSink();
        const codec = createCodecBackend(sink, {
          compression: { enabled: c.compress, thresholdBytes: 1024, level: 1 },
          encryption: c.keys,
        });
        const started = process.hrtime.bigint();
        const rec = await codec.put("bench", repeat(input.block, total, chunkBytes), {
          kind: "BYTES",
          contentType: "application/octet-stream",
          metadata: {},
        });
        const seconds = Number(process.hrtime.bigint() - started) / 1e9;
        if (rec.size !== total) throw new Error(`codec reported ${rec.size} bytes, expected ${total}`);
        rates.set(c.name, [...(rates.get(c.name) ?? []), total / MiB / seconds]);
        storedRatio.set(c.name, sink.lastStored / total);
      }
    }
    const plainRate = median(rates.get("plain")!);
    for (const c of codecs) {
      const rate = median(rates.get(c.name)!);
      rows.push([
        input.name,
        c.name,
        rate.toFixed(1),
        storedRatio.get(c.name)!.toFixed(3),
        ratio(rate, plainRate),
        rates.get(c.name)!.map((r) => r.toFixed(0)).join("/"),
      ]);
    }
  }
  printTable(["data", "codec", "MiB/s", "stored/orig", "vs plain", "runs MiB/s"], rows);
}

runBench("codec", main, { mallocTuning: true });
