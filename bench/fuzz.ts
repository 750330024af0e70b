/**
 * A long fuzz run (the CI test runs the same properties for 18 s): random
 * and mutated bytes to every method, weird well-formed requests and random
 * StoreStream sequences checked against a model (bench/support/wire-fuzz.ts),
 * against the daemon as its own process. Prints runs and statuses per
 * property; on a finding, fast-check's seed, path and counterexample, and
 * exits 1. Afterwards the daemon must still be alive, SERVING, with its
 * canary unchanged.
 *
 * Run:  npm run build && node dist/bench/fuzz.js [seconds, default 300] [seed]
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { randomBytes } from "node:crypto";
import { RetrieveRequestSchema, RetrieveResponseSchema, StoreRequestSchema } from "../gen/filestorage/v1/file_storage_pb.js";
import { spawnDaemon } from "../test/kit/daemon-process.js";
import { makeTempDir } from "../test/kit/temp-dir.js";
import { statusName, wireClient } from "../test/kit/wire-client.js";
import { machineLine, mallocTuningWanted, scratchRoot } from "./support/bench-settings.js";
import { runBench } from "./support/bench-run.js";
import { CANARY_KEY, isServing, runFuzz } from "./support/wire-fuzz.js";

async function main(): Promise<void> {
  const seconds = Number(process.argv[2] ?? 300);
  const seed = process.argv[3] === undefined ? Date.now() ^ (Math.random() * 0x7fffffff) : Number(process.argv[3]);
  if (!Number.isFinite(seconds) || seconds <= 0) throw new Error(`seconds must be a positive number, got "${process.argv[2]}"`);
  if (!Number.isSafeInteger(seed)) throw new Error(`seed must be an integer, got "${process.argv[3]}"`);
  console.log(`fuzz for ${seconds} s, seed ${seed}, on ${new Date().toISOString()}`);
  console.log(`machine: ${machineLine()}`);

  const storage = await makeTempDir("fs-fuzz-", scratchRoot());
  const daemon = await spawnDaemon({ LOCAL_STORAGE_PATH: storage.path }, { mallocTuning: mallocTuningWanted() });
  const wire = wireClient(daemon.address);
  let failed = false;
  try {
    const canary = randomBytes(4096);
    const stored = await wire.unary("Store", toBinary(StoreRequestSchema, create(StoreRequestSchema, { key: CANARY_KEY, data: canary })));
    if (stored.code !== 0) throw new Error(`storing the canary failed: ${statusName(stored.code)} ${stored.details}`);

    const started = Date.now();
    const report = await runFuzz(wire, { budgetMs: seconds * 1000, seed });
    const took = (Date.now() - started) / 1000;
    for (const p of report.properties) {
      console.log(`${p.name}: ${p.runs} runs (${(p.runs / (took / report.properties.length)).toFixed(0)}/s), ${JSON.stringify(p.statuses)}`);
    }
    if (report.failure) {
      console.error(`FINDING: ${report.failure}`);
      failed = true;
    }
    const back = await wire.unary("Retrieve", toBinary(RetrieveRequestSchema, create(RetrieveRequestSchema, { key: CANARY_KEY })));
    const intact = back.code === 0 && Buffer.from(fromBinary(RetrieveResponseSchema, back.responses[0]!).data).equals(canary);
    const serving = await isServing(wire);
    console.log(`afterwards: daemon ${serving ? "SERVING" : "NOT SERVING"}, canary ${intact ? "unchanged" : "CHANGED OR GONE"}, peak RSS ${(daemon.peakRss() / 2 ** 20).toFixed(0)} MiB`);
    if (!serving || !intact) failed = true;
  } finally {
    wire.close();
    await daemon.stop();
    await storage.cleanup();
  }
  if (failed) process.exitCode = 1;
}

runBench("fuzz", main);
