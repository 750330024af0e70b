/**
 * Bounded fuzzing in CI (bench/support/wire-fuzz.ts): random and mutated
 * bytes to every method, weird well-formed requests, and random StoreStream
 * sequences checked against a model, for FUZZ_BUDGET_MS (default 18 s) in all,
 * against the built daemon as its own process. A crash, a hang, a status
 * outside the allowed set (INTERNAL, UNKNOWN...) or a model mismatch fails
 * the run with fast-check's seed and counterexample; afterwards the daemon is
 * alive, SERVING, and a canary stored first is unchanged.
 * A longer run: `node dist/bench/fuzz.js <seconds>`.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { RetrieveRequestSchema, RetrieveResponseSchema, StoreRequestSchema } from "../../gen/filestorage/v1/file_storage_pb.js";
import { statusName, wireClient, type WireClient } from "../kit/wire-client.js";
import { CANARY_KEY, isServing, runFuzz } from "../../bench/support/wire-fuzz.js";
import { spawnDaemon, type DaemonProcess } from "../kit/daemon-process.js";

const BUDGET_MS = Number(process.env.FUZZ_BUDGET_MS ?? 18_000);

let storage: string;
let daemon: DaemonProcess;
let wire: WireClient;

beforeAll(async () => {
  storage = await fs.mkdtemp(path.join(os.tmpdir(), "fs-fuzz-"));
  daemon = await spawnDaemon({ LOCAL_STORAGE_PATH: storage });
  wire = wireClient(daemon.address);
});

afterAll(async () => {
  wire?.close();
  await daemon?.kill();
  await fs.rm(storage, { recursive: true, force: true });
});

test(`fuzzing for ${BUDGET_MS / 1000} s finds no crash, no unexpected status and no model mismatch`, async () => {
  const canary = randomBytes(4096);
  const stored = await wire.unary("Store", toBinary(StoreRequestSchema, create(StoreRequestSchema, { key: CANARY_KEY, data: canary })));
  expect(statusName(stored.code)).toBe("OK");

  const report = await runFuzz(wire, { budgetMs: BUDGET_MS });
  for (const p of report.properties) console.log(`${p.name}: ${p.runs} runs, ${JSON.stringify(p.statuses)}`);
  expect(report.failure).toBeUndefined();
  // Each property really ran (a budget eaten by one slow call would hide the others).
  expect(report.properties).toHaveLength(3);
  for (const p of report.properties) expect(p.runs).toBeGreaterThan(50);

  expect(daemon.child.exitCode).toBeNull();
  expect(await isServing(wire)).toBe(true);
  const back = await wire.unary("Retrieve", toBinary(RetrieveRequestSchema, create(RetrieveRequestSchema, { key: CANARY_KEY })));
  expect(statusName(back.code)).toBe("OK");
  expect(Buffer.from(fromBinary(RetrieveResponseSchema, back.responses[0]!).data).equals(canary)).toBe(true);
  expect(daemon.stderr()).toBe("");
}, BUDGET_MS + 60_000);
