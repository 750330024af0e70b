/**
 * Throughput of the streaming JSON check (server/codec/kind-check.ts) on
 * BENCH_MIB (default 60) MiB documents of four shapes, fed in 1 MiB chunks as
 * uploads arrive, beside the baseline it replaced measured in the same run:
 * the whole document decoded and JSON.parse'd in memory. Runs are
 * interleaved (BENCH_RUNS, default 3); medians printed.
 *
 * Run:  npm run build && node dist/bench/json-check.bench.js
 */
import { createKindCheck, DEFAULT_MAX_JSON_DEPTH } from "../server/codec/kind-check.js";
import { fixed, median, printTable, ratio } from "./support/bench-report.js";
import { machineLine, MiB, positiveInt } from "./support/bench-settings.js";
import { jsonDocument, type JsonShape } from "./support/json-documents.js";
import { runBench } from "./support/bench-run.js";

const SHAPES: JsonShape[] = ["records", "string", "number", "nested"];

function rate(bytes: number, fn: () => void): number {
  const started = process.hrtime.bigint();
  fn();
  return bytes / MiB / (Number(process.hrtime.bigint() - started) / 1e9);
}

async function main(): Promise<void> {
  const size = positiveInt("BENCH_MIB", 60) * MiB;
  const runs = positiveInt("BENCH_RUNS", 3);
  console.log(`JSON check on ${size / MiB} MiB documents, ${runs} runs, machine: ${machineLine()}`);
  const rows: string[][] = [];
  for (const shape of SHAPES) {
    const pieces = [...jsonDocument(shape, size)];
    const bytes = pieces.reduce((n, p) => n + p.length, 0);
    const streaming: number[] = [];
    const whole: number[] = [];
    for (let r = 0; r < runs; r++) {
      streaming.push(
        rate(bytes, () => {
          const check = createKindCheck("JSON", DEFAULT_MAX_JSON_DEPTH);
          for (const p of pieces) check.update(p);
          check.end();
        }),
      );
      whole.push(rate(bytes, () => JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(Buffer.concat(pieces)))));
    }
    rows.push([shape, fixed(bytes / MiB), fixed(median(streaming), 0), fixed(median(whole), 0), ratio(median(streaming), median(whole))]);
  }
  printTable(["shape", "MiB", "streaming check MiB/s", "baseline: decode + JSON.parse MiB/s", "ratio"], rows);
}

runBench("json-check", main);
