/**
 * A corpus of malformed and edge-of-limit requests, sent as raw bytes over the
 * wire (a generic grpc-js client with identity serializers), each with the
 * status it must get. Afterwards the daemon still serves and an object stored
 * before the corpus reads back unchanged.
 */
import { create, fromBinary, toBinary, type DescMessage, type JsonObject, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { crc32c } from "@node-rs/crc32";
import { randomBytes } from "node:crypto";
import {
  DataKind,
  DeleteManyRequestSchema,
  DeleteRequestSchema,
  ExistsRequestSchema,
  ListKeysRequestSchema,
  RetrieveRequestSchema,
  RetrieveResponseSchema,
  RetrieveStreamRequestSchema,
  RetrieveStreamResponseSchema,
  StatRequestSchema,
  StoreRequestSchema,
  StoreStreamHeaderSchema,
  StoreStreamRequestSchema,
} from "../../gen/filestorage/v1/file_storage_pb.js";
import { statusName, wireClient, type WireClient, type WireResult } from "../kit/wire-client.js";
import { startDaemon, type TestDaemon } from "../support/daemon.js";

let daemon: TestDaemon;
let wire: WireClient;
const canary = { key: "canary/object", data: randomBytes(10_000) };
let canaryGeneration: bigint;

const MiB = 1024 * 1024;
const TWO_53 = 2n ** 53n;
const INT64_MAX = 2n ** 63n - 1n;

const enc = <S extends DescMessage>(schema: S, init: MessageInitShape<S>) => Buffer.from(toBinary(schema, create(schema, init)));
const header = (value: MessageInitShape<typeof StoreStreamHeaderSchema>) => enc(StoreStreamRequestSchema, { payload: { case: "header", value } });
const chunk = (data: Uint8Array) => enc(StoreStreamRequestSchema, { payload: { case: "chunk", value: data } });
const trailer = (value: { crc32c?: number; size?: bigint }) => enc(StoreStreamRequestSchema, { payload: { case: "trailer", value } });

/** A length-delimited field on the wire, whatever its bytes (invalid UTF-8 included). */
function lenField(field: number, bytes: Uint8Array): Buffer {
  const len: number[] = [];
  for (let n = bytes.length; ; n >>>= 7) {
    if (n < 0x80) {
      len.push(n);
      break;
    }
    len.push((n & 0x7f) | 0x80);
  }
  return Buffer.concat([Buffer.from([(field << 3) | 2, ...len]), bytes]);
}

const INVALID_UTF8 = Buffer.from([0x61, 0xc3, 0x28, 0x62]); // "a", a broken 2-byte sequence, "b"
const GARBAGE: Record<string, Buffer> = {
  "a length-delimited field cut short": Buffer.from([0x0a, 0x05, 0x61]),
  "wire type 7": Buffer.from([0x0f]),
  "field number 0": Buffer.from([0x00]),
  "a varint of 11 bytes": Buffer.alloc(11, 0xff),
  "an end-group tag with no group": Buffer.from([0x0c]),
};
const UNARY_METHODS = ["Store", "Retrieve", "Stat", "Exists", "Delete", "DeleteMany", "ListKeys", "GetStats"];

/** Metadata nested `depth` levels (the object itself is level 1). */
function nested(depth: number): JsonObject {
  let value: JsonObject = { leaf: 1 };
  for (let level = 1; level < depth; level++) value = { n: value };
  return value;
}

/** Metadata whose JSON is exactly `bytes` long. */
function metadataOfJsonBytes(bytes: number): Record<string, string> {
  const overhead = JSON.stringify({ v: "" }).length;
  return { v: "x".repeat(bytes - overhead) };
}

/**
 * A Struct nested `depth` levels as raw bytes (no encoder recurses that deep).
 * Every wrapper (Struct.fields entry, its key, Value.struct_value) comes
 * before what it wraps, so the message is all prefixes, outermost first.
 */
function deepStructBytes(depth: number): Buffer {
  const varint = (n: number) => {
    const out: number[] = [];
    for (; n >= 0x80; n >>>= 7) out.push((n & 0x7f) | 0x80);
    out.push(n);
    return out;
  };
  const prefixes: number[][] = [];
  let inner = 0; // bytes of the Struct being wrapped
  for (let level = 0; level < depth; level++) {
    const value = [0x2a, ...varint(inner)]; // Value.struct_value
    const valueField = [0x12, ...varint(value.length + inner)]; // entry.value
    const key = [0x0a, 0x01, 0x6e]; // entry.key = "n"
    const entryLength = key.length + valueField.length + value.length + inner;
    const entry = [0x0a, ...varint(entryLength)]; // Struct.fields
    const prefix = [...entry, ...key, ...valueField, ...value];
    prefixes.push(prefix);
    inner += prefix.length;
  }
  return Buffer.from(prefixes.reverse().flat());
}

const store = (init: MessageInitShape<typeof StoreRequestSchema>) => wire.unary("Store", enc(StoreRequestSchema, init));
const stream = (messages: Uint8Array[]) => wire.clientStream("StoreStream", messages);
const retrieveStream = (init: MessageInitShape<typeof RetrieveStreamRequestSchema>) =>
  wire.serverStream("RetrieveStream", enc(RetrieveStreamRequestSchema, init));
const list = (init: MessageInitShape<typeof ListKeysRequestSchema>) => wire.unary("ListKeys", enc(ListKeysRequestSchema, init));
const deleteMany = (init: MessageInitShape<typeof DeleteManyRequestSchema>) => wire.unary("DeleteMany", enc(DeleteManyRequestSchema, init));

/** The bytes of a RetrieveStream answer (after its ObjectInfo message). */
function streamedData(r: WireResult): Buffer {
  const parts = r.responses.map((b) => fromBinary(RetrieveStreamResponseSchema, b).payload);
  expect(parts[0]?.case).toBe("object");
  return Buffer.concat(parts.slice(1).map((p) => (p.case === "chunk" ? p.value : Buffer.alloc(0))));
}

interface Case {
  name: string;
  send: () => Promise<WireResult>;
  status: string;
  /** Words the status details must contain (the rule or limit named). */
  says?: string[];
  then?: (r: WireResult) => void | Promise<void>;
}

const cases: Case[] = [];
const add = (c: Case) => cases.push(c);

// --- Undecodable bytes, to every method ------------------------------------
for (const method of UNARY_METHODS) {
  for (const [what, bytes] of Object.entries(GARBAGE)) {
    add({ name: `${method}: ${what}`, send: () => wire.unary(method, bytes), status: "INVALID_ARGUMENT", says: [method, "malformed protobuf"] });
  }
}
for (const [what, bytes] of Object.entries(GARBAGE)) {
  add({ name: `RetrieveStream: ${what}`, send: () => wire.serverStream("RetrieveStream", bytes), status: "INVALID_ARGUMENT", says: ["RetrieveStream", "malformed protobuf"] });
  add({ name: `StoreStream, first message: ${what}`, send: () => stream([bytes]), status: "INVALID_ARGUMENT", says: ["StoreStream message 1", "malformed protobuf"] });
}
add({
  name: "StoreStream: an undecodable message after the header and a chunk",
  send: () => stream([header({ key: "hostile/garbage-mid" }), chunk(Buffer.from("abc")), GARBAGE["wire type 7"]!]),
  status: "INVALID_ARGUMENT",
  says: ["StoreStream message 3"],
  then: async () => expect(await exists("hostile/garbage-mid")).toBe(false),
});

// --- Invalid UTF-8 in string fields -------------------------------------------
add({ name: "Store: key with invalid UTF-8", send: () => wire.unary("Store", Buffer.concat([lenField(1, INVALID_UTF8), lenField(2, Buffer.from("x"))])), status: "INVALID_ARGUMENT" });
for (const method of ["Retrieve", "Stat", "Exists", "Delete"]) {
  add({ name: `${method}: key with invalid UTF-8`, send: () => wire.unary(method, lenField(1, INVALID_UTF8)), status: "INVALID_ARGUMENT" });
}
add({ name: "RetrieveStream: key with invalid UTF-8", send: () => wire.serverStream("RetrieveStream", lenField(1, INVALID_UTF8)), status: "INVALID_ARGUMENT" });
add({ name: "StoreStream: header key with invalid UTF-8", send: () => stream([lenField(1, lenField(1, INVALID_UTF8))]), status: "INVALID_ARGUMENT" });
add({ name: "DeleteMany: a key with invalid UTF-8", send: () => wire.unary("DeleteMany", lenField(1, INVALID_UTF8)), status: "INVALID_ARGUMENT" });
add({ name: "ListKeys: prefix with invalid UTF-8", send: () => wire.unary("ListKeys", lenField(1, INVALID_UTF8)), status: "INVALID_ARGUMENT" });
add({ name: "Store: content_type with invalid UTF-8", send: () => wire.unary("Store", Buffer.concat([lenField(1, Buffer.from("hostile/ct-utf8")), lenField(4, INVALID_UTF8)])), status: "INVALID_ARGUMENT" });

// --- Messages over the receive limit ------------------------------------------
add({ name: "Store: a 6 MiB message (over the receive limit)", send: () => store({ key: "hostile/huge", data: Buffer.alloc(6 * MiB) }), status: "RESOURCE_EXHAUSTED" });
add({
  name: "StoreStream: a 6 MiB chunk message",
  send: () => stream([header({ key: "hostile/huge-chunk" }), chunk(Buffer.alloc(6 * MiB))]),
  status: "RESOURCE_EXHAUSTED",
  then: async () => expect(await exists("hostile/huge-chunk")).toBe(false),
});
add({ name: "Store: data over MAX_UNARY_BYTES but under the receive limit", send: () => store({ key: "hostile/unary", data: Buffer.alloc(4 * MiB + 1) }), status: "INVALID_ARGUMENT", says: ["MAX_UNARY_BYTES"] });

// --- The StoreStream state machine --------------------------------------------
add({ name: "StoreStream: no messages at all", send: () => stream([]), status: "INVALID_ARGUMENT", says: ["header"] });
add({ name: "StoreStream: a chunk first (no header)", send: () => stream([chunk(Buffer.from("x"))]), status: "INVALID_ARGUMENT", says: ["header"] });
add({ name: "StoreStream: a trailer first", send: () => stream([trailer({})]), status: "INVALID_ARGUMENT", says: ["header"] });
add({ name: "StoreStream: an empty message first", send: () => stream([Buffer.alloc(0)]), status: "INVALID_ARGUMENT", says: ["header"] });
add({
  name: "StoreStream: two headers",
  send: () => stream([header({ key: "hostile/two-headers" }), header({ key: "hostile/two-headers" })]),
  status: "INVALID_ARGUMENT",
  says: ["twice"],
  then: async () => expect(await exists("hostile/two-headers")).toBe(false),
});
add({
  name: "StoreStream: a chunk after the trailer",
  send: () => stream([header({ key: "hostile/after-trailer" }), chunk(Buffer.from("a")), trailer({}), chunk(Buffer.from("b"))]),
  status: "INVALID_ARGUMENT",
  says: ["after the trailer"],
  then: async () => expect(await exists("hostile/after-trailer")).toBe(false),
});
add({ name: "StoreStream: two trailers", send: () => stream([header({ key: "hostile/two-trailers" }), trailer({}), trailer({})]), status: "INVALID_ARGUMENT", says: ["trailer"] });
add({ name: "StoreStream: an empty message after the header", send: () => stream([header({ key: "hostile/empty-msg" }), Buffer.alloc(0)]), status: "INVALID_ARGUMENT" });
add({ name: "StoreStream: declared size 5, 3 bytes sent", send: () => stream([header({ key: "hostile/short", size: 5n }), chunk(Buffer.from("abc"))]), status: "INVALID_ARGUMENT", says: ["declared size 5"] });
add({ name: "StoreStream: negative declared size", send: () => stream([header({ key: "hostile/neg", size: -1n })]), status: "INVALID_ARGUMENT", says: ["negative"] });
add({ name: "StoreStream: trailer size -1", send: () => stream([header({ key: "hostile/neg-trailer" }), chunk(Buffer.from("a")), trailer({ size: -1n })]), status: "INVALID_ARGUMENT" });
add({ name: "StoreStream: declared size 2^63-1", send: () => stream([header({ key: "hostile/int64max", size: INT64_MAX })]), status: "RESOURCE_EXHAUSTED", says: ["MAX_OBJECT_BYTES"] });
add({
  name: "StoreStream: trailer crc32c does not match",
  send: () => stream([header({ key: "hostile/crc" }), chunk(Buffer.from("abc")), trailer({ crc32c: (crc32c(Buffer.from("abc")) + 1) >>> 0 })]),
  status: "DATA_LOSS",
  then: async () => expect(await exists("hostile/crc")).toBe(false),
});
add({
  name: "StoreStream: 100 000 one-byte chunks",
  send: async () => {
    const data = randomBytes(100_000);
    const started = Date.now();
    const r = await wire.clientStream("StoreStream", (function* () {
      yield header({ key: "hostile/one-byte-chunks", size: BigInt(data.length) });
      for (let i = 0; i < data.length; i++) yield chunk(data.subarray(i, i + 1));
      yield trailer({ crc32c: crc32c(data) >>> 0 });
    })(), { timeoutMs: 120_000 });
    const seconds = (Date.now() - started) / 1000;
    // Measured about 6-10 s on the 2-core test machine; a per-message cost gone quadratic would be minutes.
    expect(seconds).toBeLessThan(60);
    const back = await wire.unary("Retrieve", enc(RetrieveRequestSchema, { key: "hostile/one-byte-chunks" }));
    expect(statusName(back.code)).toBe("OK");
    expect(Buffer.from(fromBinary(RetrieveResponseSchema, back.responses[0]!).data).equals(data)).toBe(true);
    return r;
  },
  status: "OK",
});

// --- Keys at and past their limits --------------------------------------------
add({ name: "Store: key of 1024 bytes", send: () => store({ key: "k".repeat(1024), data: Buffer.from("x") }), status: "OK" });
add({ name: "Store: key of 1024 bytes in 2-byte characters", send: () => store({ key: "é".repeat(512), data: Buffer.from("x") }), status: "OK" });
add({ name: "Store: key of 1025 bytes", send: () => store({ key: "k".repeat(1025), data: Buffer.from("x") }), status: "INVALID_ARGUMENT", says: ["1024"] });
add({ name: "Store: key of 1025 bytes (one 2-byte character past)", send: () => store({ key: "k" + "é".repeat(512), data: Buffer.from("x") }), status: "INVALID_ARGUMENT", says: ["1024"] });
add({ name: "Store: empty key", send: () => store({ key: "", data: Buffer.from("x") }), status: "INVALID_ARGUMENT", says: ["empty"] });
for (const [what, key] of [["NUL", "a\0b"], ["CR", "a\rb"], ["LF", "a\nb"], ['a ".." segment', "a/../b"], ['a "." segment', "./b"], ['a leading "/"', "/a"]] as const) {
  add({ name: `Store: key with ${what}`, send: () => store({ key, data: Buffer.from("x") }), status: "INVALID_ARGUMENT" });
}
add({ name: "Store: key under .filestorage/", send: () => store({ key: ".filestorage/cache-key", data: Buffer.from("x") }), status: "INVALID_ARGUMENT", says: [".filestorage/", "reserved"] });
add({ name: "Retrieve: key under .filestorage/", send: () => wire.unary("Retrieve", enc(RetrieveRequestSchema, { key: ".filestorage/uploads/x" })), status: "INVALID_ARGUMENT", says: ["reserved"] });
add({ name: "Store: key under .well-known/acme-challenge/", send: () => store({ key: ".well-known/acme-challenge/t", data: Buffer.from("x") }), status: "INVALID_ARGUMENT" });
add({ name: 'Store: key ".filestorage" (no slash) is an ordinary key', send: () => store({ key: ".filestorage", data: Buffer.from("x") }), status: "OK" });

// --- Metadata and content_type (GCS's limits, on every tier) ---------------------
add({ name: "Store: metadata 16 levels deep", send: () => store({ key: "hostile/md16", metadata: nested(16) }), status: "OK" });
add({ name: "Store: metadata 17 levels deep", send: () => store({ key: "hostile/md17", metadata: nested(17) }), status: "INVALID_ARGUMENT", says: ["16 levels"] });
add({ name: "StoreStream: metadata 17 levels deep", send: () => stream([header({ key: "hostile/md17s", metadata: nested(17) })]), status: "INVALID_ARGUMENT", says: ["16 levels"] });
add({ name: "Store: metadata of 7168 bytes as JSON", send: () => store({ key: "hostile/md7168", metadata: metadataOfJsonBytes(7168) }), status: "OK" });
add({ name: "Store: metadata of 7169 bytes as JSON", send: () => store({ key: "hostile/md7169", metadata: metadataOfJsonBytes(7169) }), status: "INVALID_ARGUMENT", says: ["7169", "7168", "8 KiB"] });
add({ name: "StoreStream: metadata of 7169 bytes as JSON", send: () => stream([header({ key: "hostile/md7169s", metadata: metadataOfJsonBytes(7169) })]), status: "INVALID_ARGUMENT", says: ["7168"] });
add({ name: "Store: metadata with NaN", send: () => store({ key: "hostile/nan", metadata: { n: Number.NaN } }), status: "INVALID_ARGUMENT", says: ["finite"] });
add({
  name: "Store: a Struct nested 100 000 levels (raw bytes)",
  send: () => wire.unary("Store", Buffer.concat([lenField(1, Buffer.from("hostile/deep-struct")), lenField(5, deepStructBytes(100_000))])),
  status: "INVALID_ARGUMENT",
});
add({ name: "Store: content_type of 256 bytes", send: () => store({ key: "hostile/ct256", contentType: "a".repeat(256) }), status: "OK" });
add({ name: "Store: content_type of 257 bytes", send: () => store({ key: "hostile/ct257", contentType: "a".repeat(257) }), status: "INVALID_ARGUMENT", says: ["257", "256"] });
add({ name: "Store: content_type with CR LF", send: () => store({ key: "hostile/crlf", contentType: "text/plain\r\nX-Evil: 1" }), status: "INVALID_ARGUMENT", says: ["printable ASCII"] });
add({ name: "Store: content_type with a non-ASCII character", send: () => store({ key: "hostile/ct-e", contentType: "text/plé" }), status: "INVALID_ARGUMENT", says: ["U+00E9"] });
add({ name: "Store: content_type with a tab", send: () => store({ key: "hostile/ct-tab", contentType: "text/plain;\tq=1" }), status: "INVALID_ARGUMENT" });
add({ name: "StoreStream: content_type with CR LF", send: () => stream([header({ key: "hostile/crlf-s", contentType: "a\r\nb" }), chunk(Buffer.from("x"))]), status: "INVALID_ARGUMENT", says: ["printable ASCII"] });
add({ name: "StoreStream: content_type of 257 bytes", send: () => stream([header({ key: "hostile/ct257s", contentType: "a".repeat(257) })]), status: "INVALID_ARGUMENT", says: ["256"] });

// --- Kinds, data and expiry -----------------------------------------------------
add({ name: "Store: kind 99", send: () => store({ key: "hostile/kind99", kind: 99 as DataKind }), status: "INVALID_ARGUMENT", says: ["DataKind"] });
add({ name: "Store: kind -1", send: () => store({ key: "hostile/kind-1", kind: -1 as DataKind }), status: "INVALID_ARGUMENT", says: ["DataKind"] });
add({ name: "Store: TEXT that is not UTF-8", send: () => store({ key: "hostile/text", kind: DataKind.TEXT, data: INVALID_UTF8 }), status: "INVALID_ARGUMENT", says: ["UTF-8"] });
add({ name: "Store: JSON with trailing garbage", send: () => store({ key: "hostile/json", kind: DataKind.JSON, data: Buffer.from('{"a":1}\n x') }), status: "INVALID_ARGUMENT", says: ["line 2"] });
add({ name: "Store: JSON of two top-level values", send: () => store({ key: "hostile/json2", kind: DataKind.JSON, data: Buffer.from("[1] [2]") }), status: "INVALID_ARGUMENT", says: ["column 5"] });
add({ name: "Store: expires_at in the past", send: () => store({ key: "hostile/past", expiresAt: timestampFromMs(Date.now() - 1000) }), status: "INVALID_ARGUMENT", says: ["future"] });
add({ name: "Store: expires_at past the end of time", send: () => store({ key: "hostile/eot", expiresAt: { seconds: 10n ** 15n, nanos: 0 } }), status: "INVALID_ARGUMENT" });

// --- DeleteMany -------------------------------------------------------------------
add({ name: "DeleteMany: 1000 keys", send: () => deleteMany({ keys: Array.from({ length: 1000 }, (_, i) => `hostile/none-${i}`) }), status: "OK" });
add({ name: "DeleteMany: 1001 keys", send: () => deleteMany({ keys: Array.from({ length: 1001 }, (_, i) => `hostile/none-${i}`) }), status: "INVALID_ARGUMENT", says: ["1000"] });
add({ name: "DeleteMany: neither keys nor prefix", send: () => deleteMany({}), status: "INVALID_ARGUMENT" });
add({ name: "DeleteMany: prefix under .filestorage/", send: () => deleteMany({ prefix: ".filestorage/" }), status: "INVALID_ARGUMENT", says: ["reserved"] });
add({ name: "DeleteMany: a key under .filestorage/", send: () => deleteMany({ keys: [".filestorage/x"] }), status: "INVALID_ARGUMENT", says: ["reserved"] });

// --- ListKeys ---------------------------------------------------------------------
add({ name: "ListKeys: limit 10000", send: () => list({ limit: 10000 }), status: "OK" });
add({ name: "ListKeys: limit 10001", send: () => list({ limit: 10001 }), status: "INVALID_ARGUMENT", says: ["10000"] });
add({ name: "ListKeys: limit -1", send: () => list({ limit: -1 }), status: "INVALID_ARGUMENT" });
add({ name: "ListKeys: NUL delimiter", send: () => list({ delimiter: "\0" }), status: "INVALID_ARGUMENT", says: ["NUL"] });
add({ name: "ListKeys: LF delimiter", send: () => list({ delimiter: "\n" }), status: "INVALID_ARGUMENT", says: ["CR or LF"] });
add({ name: "ListKeys: delimiter of 1024 bytes", send: () => list({ delimiter: "d".repeat(1024) }), status: "OK" });
add({ name: "ListKeys: delimiter of 1025 bytes", send: () => list({ delimiter: "d".repeat(1025) }), status: "INVALID_ARGUMENT", says: ["1024"] });
add({ name: "ListKeys: prefix under .filestorage/", send: () => list({ prefix: ".filestorage/uploads/" }), status: "INVALID_ARGUMENT", says: ["reserved"] });
add({ name: "ListKeys: a page token that is not one", send: () => list({ pageToken: "not-a-token" }), status: "INVALID_ARGUMENT", says: ["page_token"] });

// --- RetrieveStream offsets and limits ----------------------------------------------
add({ name: "RetrieveStream: offset 2^53", send: () => retrieveStream({ key: canary.key, offset: TWO_53 }), status: "OUT_OF_RANGE", says: [String(TWO_53), "10000 bytes"] });
add({ name: "RetrieveStream: offset 2^53 + 1", send: () => retrieveStream({ key: canary.key, offset: TWO_53 + 1n }), status: "OUT_OF_RANGE", says: [String(TWO_53 + 1n)] });
add({ name: "RetrieveStream: offset 2^63-1", send: () => retrieveStream({ key: canary.key, offset: INT64_MAX }), status: "OUT_OF_RANGE", says: [String(INT64_MAX)] });
add({ name: "RetrieveStream: offset 2^63-1 of a missing key", send: () => retrieveStream({ key: "hostile/missing", offset: INT64_MAX }), status: "NOT_FOUND" });
add({ name: "RetrieveStream: offset = size + 1", send: () => retrieveStream({ key: canary.key, offset: 10_001n }), status: "OUT_OF_RANGE" });
add({ name: "RetrieveStream: offset = size reads nothing", send: () => retrieveStream({ key: canary.key, offset: 10_000n }), status: "OK", then: (r) => expect(streamedData(r).length).toBe(0) });
add({
  name: "RetrieveStream: offset 1, limit 2^63-1 reads to the end",
  send: () => retrieveStream({ key: canary.key, offset: 1n, limit: INT64_MAX }),
  status: "OK",
  then: (r) => expect(streamedData(r).equals(canary.data.subarray(1))).toBe(true),
});
add({
  name: "RetrieveStream: limit 2^53 + 1 reads to the end",
  send: () => retrieveStream({ key: canary.key, limit: TWO_53 + 1n }),
  status: "OK",
  then: (r) => expect(streamedData(r).equals(canary.data)).toBe(true),
});
add({
  name: "RetrieveStream: offset 9990, limit 5",
  send: () => retrieveStream({ key: canary.key, offset: 9990n, limit: 5n }),
  status: "OK",
  then: (r) => expect(streamedData(r).equals(canary.data.subarray(9990, 9995))).toBe(true),
});
add({ name: "RetrieveStream: negative offset", send: () => retrieveStream({ key: canary.key, offset: -1n }), status: "INVALID_ARGUMENT", says: ["negative"] });
add({ name: "RetrieveStream: negative limit", send: () => retrieveStream({ key: canary.key, limit: -(2n ** 63n) }), status: "INVALID_ARGUMENT", says: ["negative"] });
add({ name: "Delete: generation precondition 2^63-1 on the canary", send: () => wire.unary("Delete", enc(DeleteRequestSchema, { key: canary.key, ifGenerationMatch: INT64_MAX })), status: "FAILED_PRECONDITION" });
add({ name: "Stat: a missing key", send: () => wire.unary("Stat", enc(StatRequestSchema, { key: "hostile/missing" })), status: "NOT_FOUND" });

async function exists(key: string): Promise<boolean> {
  const r = await wire.unary("Exists", enc(ExistsRequestSchema, { key }));
  expect(statusName(r.code)).toBe("OK");
  return r.responses[0]!.length > 0; // ExistsResponse{exists: true} is [0x08, 0x01]; false encodes empty
}

beforeAll(async () => {
  daemon = await startDaemon();
  wire = wireClient(daemon.address);
  const r = await store({ key: canary.key, data: canary.data, metadata: { role: "canary" } });
  expect(statusName(r.code)).toBe("OK");
  const stat = await wire.unary("Retrieve", enc(RetrieveRequestSchema, { key: canary.key }));
  canaryGeneration = fromBinary(RetrieveResponseSchema, stat.responses[0]!).object!.generation;
});

afterAll(async () => {
  wire?.close();
  await daemon?.stop();
});

test("the corpus holds at least 60 malformed or edge-of-limit requests", () => {
  expect(cases.length).toBeGreaterThanOrEqual(60);
});

describe("hostile corpus over the wire", () => {
  test.each(cases.map((c) => [c.name, c] as const))("%s", async (_name, c) => {
    const r = await c.send();
    expect({ status: statusName(r.code), details: r.details }).toEqual(expect.objectContaining({ status: c.status }));
    // A client's mistake never reads as a server fault.
    expect(r.details).not.toMatch(/internal error|\/tmp\/|\n\s+at /);
    for (const word of c.says ?? []) expect(r.details).toContain(word);
    await c.then?.(r);
  });

  // Last in the file, so it runs after the whole corpus.
  test("afterwards the daemon serves and the canary is unchanged", async () => {
    // grpc.health.v1.Health/Check with an empty request (the whole server); SERVING is field 1 = 1.
    const health = await wire.unary("/grpc.health.v1.Health/Check", Buffer.alloc(0));
    expect(statusName(health.code)).toBe("OK");
    expect(health.responses[0]).toEqual(Buffer.from([0x08, 0x01]));
    const r = await wire.unary("Retrieve", enc(RetrieveRequestSchema, { key: canary.key }));
    expect(statusName(r.code)).toBe("OK");
    const got = fromBinary(RetrieveResponseSchema, r.responses[0]!);
    expect(Buffer.from(got.data).equals(canary.data)).toBe(true);
    expect(got.object!.generation).toBe(canaryGeneration);
    expect(got.object!.metadata).toEqual({ role: "canary" });
  });
});

