/**
 * Property-based fuzzing of a running daemon over the wire (fast-check):
 *
 * - decoders: random bytes, and valid messages with random bytes changed or
 *   cut, to every method; every call must end with an allowed status (never
 *   INTERNAL, UNKNOWN, UNAVAILABLE or a hang);
 * - weird messages: well-formed requests with values at and past every limit
 *   (keys, metadata depth and size, content types, kinds, 64-bit offsets,
 *   page sizes, delimiters); the same allowed statuses;
 * - StoreStream's state machine: random sequences of header, chunk, trailer,
 *   empty and undecodable messages with random declared sizes and CRC32Cs; the
 *   status must be the one a model of the contract predicts, a failed stream
 *   stores nothing, and a successful one stores exactly its chunks.
 *
 * Each property runs for its share of a time budget. Used by
 * test/process/hostile-fuzz.test.ts (a short budget, in CI) and bench/fuzz.ts (long runs).
 */
import { create, fromBinary, toBinary, type DescMessage, type JsonObject, type MessageInitShape } from "@bufbuild/protobuf";
import { crc32c } from "@node-rs/crc32";
import fc from "fast-check";
import {
  DeleteManyRequestSchema,
  DeleteRequestSchema,
  ExistsRequestSchema,
  ExistsResponseSchema,
  GetStatsRequestSchema,
  ListKeysRequestSchema,
  RetrieveRequestSchema,
  RetrieveResponseSchema,
  RetrieveStreamRequestSchema,
  StatRequestSchema,
  StoreRequestSchema,
  StoreStreamHeaderSchema,
  StoreStreamRequestSchema,
} from "../../gen/filestorage/v1/file_storage_pb.js";
import { statusName, type WireClient, type WireResult } from "../../test/kit/wire-client.js";

/** Statuses a hostile request may get. Anything else (INTERNAL, UNKNOWN, UNAVAILABLE, DEADLINE_EXCEEDED...) is a finding. */
export const ALLOWED_STATUSES: ReadonlySet<string> = new Set([
  "OK",
  "INVALID_ARGUMENT",
  "NOT_FOUND",
  "OUT_OF_RANGE",
  "FAILED_PRECONDITION",
  "RESOURCE_EXHAUSTED",
]);
/** StoreStream may also refuse a trailer's CRC32C. */
const STREAM_STATUSES: ReadonlySet<string> = new Set([...ALLOWED_STATUSES, "DATA_LOSS"]);

/**
 * The canary's key. It starts with a 4-byte character that no generated name
 * contains, so only reads name it, and a mutated DeleteMany would need four
 * exact random bytes to reach it.
 */
export const CANARY_KEY = "𝄞/canary";

/** The daemon's MAX_OBJECT_BYTES, which the state-machine model needs. */
const DEFAULT_MAX_OBJECT_BYTES = 5 * 1024 ** 4;

type Method = "Store" | "StoreStream" | "Retrieve" | "RetrieveStream" | "Stat" | "Exists" | "Delete" | "DeleteMany" | "ListKeys" | "GetStats";
const METHODS: Method[] = ["Store", "StoreStream", "Retrieve", "RetrieveStream", "Stat", "Exists", "Delete", "DeleteMany", "ListKeys", "GetStats"];

const enc = <S extends DescMessage>(schema: S, init: MessageInitShape<S>) => toBinary(schema, create(schema, init));

/** Sends one request message to `method` the way the method takes it. */
function send(wire: WireClient, method: Method, bytes: Uint8Array): Promise<WireResult> {
  if (method === "StoreStream") return wire.clientStream(method, [bytes]);
  if (method === "RetrieveStream") return wire.serverStream(method, bytes);
  return wire.unary(method, bytes);
}

// --- Arbitraries -------------------------------------------------------------------

// Pieces of names that hit the key rules. None starts with the canary's first
// character, so no generated prefix can reach it, whatever DeleteMany does.
const PIECES = ["a", "b/", "/", ".", "..", "./", "../", "\0", "\r", "\n", " ", "é", "😀", "\uD800", ".filestorage/", ".well-known/acme-challenge/", "%2F", "*", "~", "k".repeat(300)];
const weird = fc.array(fc.constantFrom(...PIECES), { maxLength: 6 }).map((p) => p.join(""));
const key = fc.oneof(weird.map((w) => `fuzz/${w}`), weird, fc.constantFrom("", "k".repeat(1024), "k".repeat(1025), "é".repeat(512), "é".repeat(513)));
const int64 = fc.oneof(
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
  fc.constantFrom(0n, 1n, -1n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 53n + 1n, 2n ** 63n - 1n, -(2n ** 63n)),
);
const int32 = fc.oneof(fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), fc.constantFrom(0, 1, -1, 9999, 10000, 10001));
const contentType = fc.oneof(
  fc.constantFrom("", "text/plain", "application/json", "a\r\nb: c", "text/plé", "\t", "a".repeat(256), "a".repeat(257)),
  fc.string({ maxLength: 40 }),
);
const metadata: fc.Arbitrary<JsonObject | undefined> = fc.oneof(
  fc.constant(undefined),
  fc.dictionary(fc.string({ maxLength: 6 }), fc.jsonValue({ maxDepth: 20 }), { maxKeys: 4 }) as fc.Arbitrary<JsonObject>,
  fc.constantFrom<JsonObject>({ n: Number.NaN }, { big: "x".repeat(7200) }, { edge: "x".repeat(7168 - 10) }),
);
const expiresAt = fc.option(fc.record({ seconds: int64, nanos: fc.integer({ min: 0, max: 999_999_999 }) }), { nil: undefined });
const kind = fc.integer({ min: -2, max: 5 });
const data = fc.oneof(fc.uint8Array({ maxLength: 256 }), fc.constantFrom(Buffer.from('{"a":[1,2]}'), Buffer.from("[1,]"), Buffer.from([0xc3, 0x28])));

/** A well-formed request for `method` with random, often hostile, values. */
function weirdRequest(method: Method): fc.Arbitrary<Uint8Array> {
  switch (method) {
    case "Store":
      return fc
        .record({ key, data, kind, contentType, metadata, ifGenerationMatch: fc.option(int64, { nil: undefined }), expiresAt })
        .map((r) => enc(StoreRequestSchema, r as MessageInitShape<typeof StoreRequestSchema>));
    case "StoreStream":
      return fc
        .record({ key, kind, contentType, metadata, size: fc.option(int64, { nil: undefined }), expiresAt })
        .map((h) => enc(StoreStreamRequestSchema, { payload: { case: "header", value: h as MessageInitShape<typeof StoreStreamHeaderSchema> } }));
    case "Retrieve":
      return key.map((k) => enc(RetrieveRequestSchema, { key: k }));
    case "RetrieveStream":
      return fc
        .record({ key: fc.oneof(key, fc.constant(CANARY_KEY)), offset: int64, limit: int64, ifGenerationMatch: fc.option(int64, { nil: undefined }) })
        .map((r) => enc(RetrieveStreamRequestSchema, r));
    case "Stat":
      return key.map((k) => enc(StatRequestSchema, { key: k }));
    case "Exists":
      return key.map((k) => enc(ExistsRequestSchema, { key: k }));
    case "Delete":
      return fc.record({ key, ifGenerationMatch: fc.option(int64, { nil: undefined }) }).map((r) => enc(DeleteRequestSchema, r));
    case "DeleteMany":
      return fc
        .record({ keys: fc.oneof(fc.array(key, { maxLength: 5 }), fc.constant(Array.from({ length: 1001 }, (_, i) => `fuzz/${i}`))), prefix: fc.oneof(fc.constant(""), weird.map((w) => `fuzz/${w}`), weird) })
        .map((r) => enc(DeleteManyRequestSchema, r));
    case "ListKeys":
      return fc
        .record({ prefix: fc.oneof(fc.constant(""), weird), limit: int32, pageToken: fc.oneof(fc.constant(""), fc.string({ maxLength: 30 }), fc.base64String({ maxLength: 40 })), delimiter: fc.oneof(fc.constantFrom("", "/", "\0", "\n", "d".repeat(1025)), weird), includeInfo: fc.boolean() })
        .map((r) => enc(ListKeysRequestSchema, r));
    case "GetStats":
      return fc.constant(enc(GetStatsRequestSchema, {}));
  }
}

/** Random bytes, or a well-formed request with bytes changed, inserted or cut off. */
function hostileBytes(method: Method): fc.Arbitrary<Uint8Array> {
  const mutated = fc
    .tuple(weirdRequest(method), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }), fc.option(fc.nat(), { nil: undefined }))
    .map(([bytes, changes, cut]) => {
      const out = Buffer.from(bytes);
      for (const [at, byte] of changes) if (out.length > 0) out[at % out.length] = byte;
      return cut === undefined || out.length === 0 ? out : out.subarray(0, cut % out.length);
    });
  return fc.oneof(fc.uint8Array({ maxLength: 512 }), mutated);
}

// --- The StoreStream model ------------------------------------------------------------

type StreamMessage =
  | { t: "header"; size: "absent" | "right" | "less" | "more" | "negative" | "huge"; badContentType: boolean }
  | { t: "chunk"; bytes: Uint8Array }
  | { t: "trailer"; crc: "absent" | "right" | "wrong"; size: "absent" | "right" | "wrong" | "negative" }
  | { t: "empty" }
  | { t: "garbage" };

const chunkMessage = fc.record({ t: fc.constant("chunk" as const), bytes: fc.oneof(fc.uint8Array({ maxLength: 64 }), fc.uint8Array({ minLength: 1000, maxLength: 70_000 })) });
const streamMessage: fc.Arbitrary<StreamMessage> = fc.oneof(
  { weight: 6, arbitrary: chunkMessage },
  { weight: 2, arbitrary: fc.record({ t: fc.constant("trailer" as const), crc: fc.constantFrom("absent" as const, "right" as const, "wrong" as const), size: fc.constantFrom("absent" as const, "right" as const, "wrong" as const, "negative" as const) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("header" as const), size: fc.constantFrom("absent" as const, "right" as const), badContentType: fc.constant(false) }) },
  { weight: 1, arbitrary: fc.constantFrom({ t: "empty" as const }, { t: "garbage" as const }) },
);
const firstMessage: fc.Arbitrary<StreamMessage> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ t: fc.constant("header" as const), size: fc.constantFrom("absent" as const, "right" as const, "less" as const, "more" as const, "negative" as const, "huge" as const), badContentType: fc.boolean() }) },
  { weight: 2, arbitrary: streamMessage },
);
/** Mostly right: header, chunks, maybe a trailer, then perhaps one more message of any kind. */
const wellFormed: fc.Arbitrary<StreamMessage[]> = fc
  .tuple(
    fc.record({ t: fc.constant("header" as const), size: fc.constantFrom("absent" as const, "right" as const), badContentType: fc.constant(false) }),
    fc.array(chunkMessage, { maxLength: 8 }),
    fc.option(
      fc.record({
        t: fc.constant("trailer" as const),
        crc: fc.oneof({ weight: 4, arbitrary: fc.constantFrom("absent" as const, "right" as const) }, { weight: 1, arbitrary: fc.constant("wrong" as const) }),
        size: fc.oneof({ weight: 4, arbitrary: fc.constantFrom("absent" as const, "right" as const) }, { weight: 1, arbitrary: fc.constantFrom("wrong" as const, "negative" as const) }),
      }),
      { nil: undefined },
    ),
    fc.option(streamMessage, { nil: undefined, freq: 3 }),
  )
  .map(([header, chunks, trailer, extra]) => [header, ...chunks, ...(trailer ? [trailer] : []), ...(extra ? [extra] : [])]);
const streamSequence = fc.oneof(
  { weight: 1, arbitrary: fc.constant<StreamMessage[]>([]) },
  { weight: 6, arbitrary: fc.tuple(firstMessage, fc.array(streamMessage, { maxLength: 10 })).map(([first, rest]) => [first, ...rest]) },
  { weight: 8, arbitrary: wellFormed },
);

/** The bytes of each message, given the data the whole sequence carries. */
function encodeSequence(key: string, messages: StreamMessage[]): Uint8Array[] {
  const chunks = messages.flatMap((m) => (m.t === "chunk" ? [m.bytes] : []));
  const total = chunks.reduce((n, c) => n + c.length, 0);
  const crc = chunks.reduce((c, b) => crc32c(Buffer.from(b), c), 0) >>> 0;
  const sizeOf = { absent: undefined, right: BigInt(total), less: BigInt(total) - 1n, more: BigInt(total) + 1n, wrong: BigInt(total) + 7n, negative: -1n, huge: BigInt(DEFAULT_MAX_OBJECT_BYTES) + 1n };
  return messages.map((m) => {
    switch (m.t) {
      case "header":
        return enc(StoreStreamRequestSchema, { payload: { case: "header", value: { key, size: sizeOf[m.size], contentType: m.badContentType ? "a\r\nb" : "" } } });
      case "chunk":
        return enc(StoreStreamRequestSchema, { payload: { case: "chunk", value: m.bytes } });
      case "trailer":
        return enc(StoreStreamRequestSchema, { payload: { case: "trailer", value: { crc32c: m.crc === "absent" ? undefined : m.crc === "right" ? crc : (crc + 1) >>> 0, size: sizeOf[m.size] } } });
      case "empty":
        return new Uint8Array(0);
      case "garbage":
        return Uint8Array.of(0x0f);
    }
  });
}

/** The status the contract gives a sequence: the first fault in the order the daemon meets them. */
function expectedStatus(messages: StreamMessage[]): string {
  const [first, ...rest] = messages;
  if (first?.t !== "header") return "INVALID_ARGUMENT";
  if (first.size === "negative" || first.badContentType) return "INVALID_ARGUMENT";
  if (first.size === "huge") return "RESOURCE_EXHAUSTED";
  let trailer: Extract<StreamMessage, { t: "trailer" }> | undefined;
  for (const m of rest) {
    if (m.t === "header" || m.t === "empty" || m.t === "garbage") return "INVALID_ARGUMENT";
    if (m.t === "chunk" && trailer) return "INVALID_ARGUMENT";
    if (m.t === "trailer") {
      if (trailer) return "INVALID_ARGUMENT";
      trailer = m;
    }
  }
  if (first.size === "less" || first.size === "more") return "INVALID_ARGUMENT";
  if (trailer && trailer.size !== "absent" && trailer.size !== "right") return "INVALID_ARGUMENT";
  if (trailer?.crc === "wrong") return "DATA_LOSS";
  return "OK";
}

// --- Running ---------------------------------------------------------------------------

export interface FuzzReport {
  /** Per property: runs made and the statuses seen. */
  properties: { name: string; runs: number; statuses: Record<string, number> }[];
  /** A failure's description (seed, path, counterexample), if any. */
  failure?: string;
}

/**
 * Runs the three properties against the daemon `wire` talks to, each for a
 * third of `budgetMs`. `seed` reproduces a run (fast-check prints it on a failure).
 */
export async function runFuzz(wire: WireClient, opts: { budgetMs: number; seed?: number }): Promise<FuzzReport> {
  const report: FuzzReport = { properties: [] };
  let streamId = 0;
  const properties: { name: string; property: (statuses: Record<string, number>) => fc.IAsyncProperty<[unknown]> }[] = [
    {
      name: "decoders: random and mutated bytes to every method",
      property: (statuses) =>
        fc.asyncProperty(
          fc.constantFrom(...METHODS).chain((m) => fc.tuple(fc.constant(m), hostileBytes(m))),
          async ([method, bytes]: [Method, Uint8Array]) => {
            const r = await send(wire, method, bytes);
            count(statuses, r);
            checkStatus(r, method === "StoreStream" ? STREAM_STATUSES : ALLOWED_STATUSES, method);
          },
        ) as unknown as fc.IAsyncProperty<[unknown]>,
    },
    {
      name: "weird but well-formed requests to every method",
      property: (statuses) =>
        fc.asyncProperty(
          fc.constantFrom(...METHODS).chain((m) => fc.tuple(fc.constant(m), weirdRequest(m))),
          async ([method, bytes]: [Method, Uint8Array]) => {
            const r = await send(wire, method, bytes);
            count(statuses, r);
            checkStatus(r, ALLOWED_STATUSES, method);
          },
        ) as unknown as fc.IAsyncProperty<[unknown]>,
    },
    {
      name: "StoreStream state machine against its model",
      property: (statuses) =>
        fc.asyncProperty(streamSequence, async (messages: StreamMessage[]) => {
          const key = `fuzz/stream/${process.pid}-${streamId++}`;
          const r = await wire.clientStream("StoreStream", encodeSequence(key, messages));
          count(statuses, r);
          const want = expectedStatus(messages);
          if (statusName(r.code) !== want) {
            throw new Error(`StoreStream got ${statusName(r.code)} (${r.details}), the model says ${want}`);
          }
          const stored = await exists(wire, key);
          if (want !== "OK") {
            if (stored) throw new Error(`a failed StoreStream (${want}) left "${key}" stored`);
            return;
          }
          const expected = Buffer.concat(messages.flatMap((m) => (m.t === "chunk" ? [m.bytes] : [])));
          const back = await wire.unary("Retrieve", enc(RetrieveRequestSchema, { key }));
          const got = Buffer.from(fromBinary(RetrieveResponseSchema, back.responses[0] ?? new Uint8Array()).data);
          if (!got.equals(expected)) throw new Error(`"${key}" holds ${got.length} bytes, not the ${expected.length} streamed`);
        }) as unknown as fc.IAsyncProperty<[unknown]>,
    },
  ];
  for (const { name, property } of properties) {
    const statuses: Record<string, number> = {};
    const result = await fc.check(property(statuses), {
      numRuns: Number.MAX_SAFE_INTEGER,
      interruptAfterTimeLimit: Math.max(1, Math.floor(opts.budgetMs / properties.length)),
      markInterruptAsFailure: false,
      seed: opts.seed,
    });
    report.properties.push({ name, runs: result.numRuns, statuses });
    if (result.failed) {
      report.failure = `${name}: ${fc.defaultReportMessage(result) ?? "failed"}`;
      break;
    }
  }
  return report;
}

function count(statuses: Record<string, number>, r: WireResult): void {
  const name = statusName(r.code);
  statuses[name] = (statuses[name] ?? 0) + 1;
}

function checkStatus(r: WireResult, allowed: ReadonlySet<string>, method: string): void {
  const name = statusName(r.code);
  if (!allowed.has(name)) throw new Error(`${method} answered ${name}: ${r.details}`);
}

async function exists(wire: WireClient, key: string): Promise<boolean> {
  const r = await wire.unary("Exists", enc(ExistsRequestSchema, { key }));
  if (r.code !== 0) throw new Error(`Exists("${key}") failed: ${statusName(r.code)} ${r.details}`);
  return fromBinary(ExistsResponseSchema, r.responses[0] ?? new Uint8Array()).exists;
}

/** True when the daemon's health service says SERVING. */
export async function isServing(wire: WireClient): Promise<boolean> {
  const r = await wire.unary("/grpc.health.v1.Health/Check", new Uint8Array(0), { timeoutMs: 10_000 });
  return r.code === 0 && Buffer.from(r.responses[0] ?? []).equals(Buffer.from([0x08, 0x01]));
}
