/**
 * The daemon on its embedded local backend, through the real gRPC server:
 * kinds, keys, preconditions, streams, listing, stats and protocol errors.
 */
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { protoPath } from "grpc-health-check";
import { create } from "@bufbuild/protobuf";
import { randomBytes } from "node:crypto";
import * as fsp from "node:fs/promises";
import * as path from "node:path";
import { crc32c } from "@node-rs/crc32";
import {
  DataKind,
  StoreRequestSchema,
  StoreStreamRequestSchema,
  RetrieveStreamRequestSchema,
  RetrieveRequestSchema,
  StatRequestSchema,
  Backend,
  type StoreStreamResponse,
  type StoreStreamRequest,
  type RetrieveStreamResponse,
} from "../../gen/filestorage/v1/file_storage_pb.js";
import { FileStorageClient } from "../../client/src/index.js";
import { startDaemon, type TestDaemon } from "../support/daemon.js";
import { rawClient, unaryCall, type RawClient } from "../support/raw-client.js";
import { codeOf } from "../support/expect-failure.js";

let daemon: TestDaemon;
let client: FileStorageClient;
let raw: RawClient;

beforeAll(async () => {
  daemon = await startDaemon({ MAX_UNARY_BYTES: String(1024 * 1024) });
  client = new FileStorageClient(daemon.address, { maxUnaryBytes: 1024 * 1024 });
  raw = rawClient(daemon.address);
});
afterAll(async () => {
  client.close();
  raw.close();
  await daemon.stop();
});


/** Sends raw StoreStream messages and returns the status or response. */
function rawStoreStream(messages: StoreStreamRequest[]): Promise<{ err: grpc.ServiceError | null; res?: StoreStreamResponse }> {
  return new Promise((resolve) => {
    const call = raw.storeStream(new grpc.Metadata(), { deadline: Date.now() + 30_000 }, (err, res) => resolve({ err, res }));
    for (const m of messages) call.write(m);
    call.end();
  });
}
const header = (key: string, extra: Record<string, unknown> = {}) =>
  create(StoreStreamRequestSchema, { payload: { case: "header", value: { key, kind: DataKind.BYTES, ...extra } } });
const chunk = (b: Uint8Array) => create(StoreStreamRequestSchema, { payload: { case: "chunk", value: b } });
const trailer = (v: Record<string, unknown>) => create(StoreStreamRequestSchema, { payload: { case: "trailer", value: v } });

describe("kinds round-trip exactly", () => {
  test.each([
    ["text", "héllo wörld ✓"],
    ["json object", { a: 1, b: [1, "two", null], c: { d: true } }],
    ["json array", [1, 2, 3]],
    ["json-looking text stays text", '{"not": "parsed"}'],
    ["bytes", Buffer.from([0, 1, 2, 255, 254, 0x80])],
    ["empty bytes", Buffer.alloc(0)],
    ["empty text", ""],
  ])("%s", async (_name, value) => {
    const key = `kinds/${_name}`;
    await client.store(key, value);
    expect(await client.retrieve(key)).toEqual(value);
  });

  test("TEXT must be UTF-8 and JSON must parse", async () => {
    const bad = await unaryCall(raw.store, raw, create(StoreRequestSchema, { key: "k/bad-text", data: Buffer.from([0xff, 0xfe]), kind: DataKind.TEXT }));
    expect(bad.err?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(bad.err?.details).toMatch(/UTF-8/i);
    const badJson = await unaryCall(raw.store, raw, create(StoreRequestSchema, { key: "k/bad-json", data: Buffer.from("{nope"), kind: DataKind.JSON }));
    expect(badJson.err?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(badJson.err?.details).toMatch(/JSON/);
    expect(await client.exists("k/bad-text")).toBe(false);
    expect(await client.exists("k/bad-json")).toBe(false);
  });

  test("an unknown kind number is INVALID_ARGUMENT", async () => {
    const r = await unaryCall(raw.store, raw, create(StoreRequestSchema, { key: "k/kind9", data: Buffer.from("x"), kind: 9 as DataKind }));
    expect(r.err?.code).toBe(grpc.status.INVALID_ARGUMENT);
  });

  test("metadata round-trips lists, numbers and nesting", async () => {
    const metadata = { tags: ["a", "b"], n: 3.5, nested: { ok: true }, s: "x" };
    await client.store("meta/1", "v", { metadata });
    expect((await client.stat("meta/1"))?.metadata).toEqual(metadata);
  });
});

describe("keys", () => {
  test.each([
    ["", /empty/],
    ["a".repeat(1025), /1024/],
    ["é".repeat(513), /1024/],
    ["a\0b", /NUL/],
    ["a\nb", /CR or LF/],
    ["a\rb", /CR or LF/],
    ["/abs", /start with "\/"/],
    [".", /segment/],
    ["..", /segment/],
    ["a/../b", /segment/],
    ["../../etc/passwd", /segment/],
    ["a/./b", /segment/],
    ["a/..", /segment/],
    [".well-known/acme-challenge/x", /acme/],
  ])("%j is INVALID_ARGUMENT naming the rule", async (key, rule) => {
    const r = await unaryCall(raw.store, raw, create(StoreRequestSchema, { key, data: Buffer.from("x") }));
    expect(r.err?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(r.err?.details).toMatch(rule);
    const s = await unaryCall(raw.stat, raw, create(StatRequestSchema, { key }));
    expect(s.err?.code).toBe(grpc.status.INVALID_ARGUMENT);
  });

  test("valid odd keys work, and a and a/b coexist", async () => {
    const keys = ["a", "a/b", "a/b/c", "..a", "a..", "sp ace", "ünï/cødé/🙂", "x".repeat(1024), "a//b", "a.json", "a.txt"];
    for (const k of keys) await client.store(k, `v:${k}`);
    for (const k of keys) expect(await client.retrieve(k)).toBe(`v:${k}`);
  });
});

describe("generations and preconditions", () => {
  test("rise on every write; if_generation_match guards Store and Delete", async () => {
    const g1 = (await client.store("gen/1", "one")).generation;
    const g2 = (await client.store("gen/1", "two")).generation;
    expect(g2).toBeGreaterThan(g1);
    expect(await codeOf(client.store("gen/1", "three", { ifGenerationMatch: g1 }))).toBe("FAILED_PRECONDITION");
    expect(await client.retrieve("gen/1")).toBe("two");
    expect(await codeOf(client.store("gen/1", "x", { ifGenerationMatch: 0 }))).toBe("FAILED_PRECONDITION");
    const g3 = (await client.store("gen/1", "three", { ifGenerationMatch: g2 })).generation;
    expect(await codeOf(client.delete("gen/1", { ifGenerationMatch: g2 }))).toBe("FAILED_PRECONDITION");
    expect(await client.delete("gen/1", { ifGenerationMatch: g3 })).toBe(true);
    expect(await client.delete("gen/1")).toBe(false);
    const g4 = (await client.store("gen/1", "again", { ifGenerationMatch: 0 })).generation;
    expect(g4).toBeGreaterThan(g3);
  });

  test("created_at is the time of the write that made this version, as on GCS (an overwrite does not keep the first one)", async () => {
    const first = await client.store("times/local", "v1");
    await new Promise((r) => setTimeout(r, 20));
    const before = Date.now();
    const second = await client.store("times/local", "v2");
    expect(second.createdAt!.getTime()).toBeGreaterThanOrEqual(before);
    expect(second.createdAt!.getTime()).toBeGreaterThan(first.createdAt!.getTime());
    expect((await client.stat("times/local"))!.createdAt).toEqual(second.createdAt);
  });
});

describe("streams", () => {
  test("StoreStream with trailer crc32c and size, then ranged RetrieveStream", async () => {
    const data = randomBytes(3 * 1024 * 1024 + 17);
    const r = await rawStoreStream([
      header("stream/1", { size: BigInt(data.length) }),
      chunk(data.subarray(0, 1000000)),
      chunk(data.subarray(1000000)),
      trailer({ crc32c: crc32c(data), size: BigInt(data.length) }),
    ]);
    expect(r.err).toBeNull();
    expect(r.res?.object?.crc32c).toBe(crc32c(data));
    expect(r.res?.object?.backend).toBe(Backend.LOCAL);
    const { stream } = await client.download("stream/1", { offset: 1000, limit: 5000 });
    const parts: Buffer[] = [];
    for await (const p of stream) parts.push(p as Buffer);
    expect(Buffer.concat(parts).equals(data.subarray(1000, 6000))).toBe(true);
  });

  test.each([
    ["no messages", [], /no messages/],
    ["chunk first", [chunk(Buffer.from("x"))], /first .* header/],
    ["header twice", [header("stream/bad"), header("stream/bad")], /twice/],
    ["chunk after trailer", [header("stream/bad"), trailer({}), chunk(Buffer.from("x"))], /after the trailer/],
    ["declared size too big", [header("stream/bad", { size: 10n }), chunk(Buffer.from("abc"))], /declared size 10/],
    ["trailer size wrong", [header("stream/bad"), chunk(Buffer.from("abc")), trailer({ size: 4n })], /declared size 4/],
  ])("%s is INVALID_ARGUMENT and stores nothing", async (_n, msgs, re) => {
    const r = await rawStoreStream(msgs as StoreStreamRequest[]);
    expect(r.err?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(r.err?.details).toMatch(re);
    expect(await client.exists("stream/bad")).toBe(false);
  });

  test("a crc32c mismatch is DATA_LOSS and keeps the previous version", async () => {
    await client.store("stream/keep", Buffer.from("previous"));
    const r = await rawStoreStream([header("stream/keep"), chunk(Buffer.from("new data")), trailer({ crc32c: 12345 })]);
    expect(r.err?.code).toBe(grpc.status.DATA_LOSS);
    expect((await client.retrieve("stream/keep"))?.toString()).toBe("previous");
  });

  test("unary Retrieve over MAX_UNARY_BYTES is FAILED_PRECONDITION naming RetrieveStream; the client streams it", async () => {
    const big = randomBytes(1024 * 1024 + 1);
    await client.upload("stream/big", [big]);
    const r = await unaryCall(raw.retrieve, raw, create(RetrieveRequestSchema, { key: "stream/big" }));
    expect(r.err?.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(r.err?.details).toMatch(/RetrieveStream/);
    expect(Buffer.compare((await client.retrieve("stream/big")) as Buffer, big)).toBe(0);
  });

  test("offset past the end is OUT_OF_RANGE; missing is NOT_FOUND", async () => {
    await client.store("stream/small", Buffer.from("12345"));
    const read = (key: string, offset: bigint) =>
      new Promise<grpc.ServiceError | null>((resolve) => {
        const call = raw.retrieveStream(create(RetrieveStreamRequestSchema, { key, offset }), new grpc.Metadata(), {});
        call.on("data", (_m: RetrieveStreamResponse) => {});
        call.on("error", (e: grpc.ServiceError) => resolve(e));
        call.on("end", () => resolve(null));
      });
    expect((await read("stream/small", 6n))?.code).toBe(grpc.status.OUT_OF_RANGE);
    expect(await read("stream/small", 5n)).toBeNull();
    expect((await read("stream/none", 0n))?.code).toBe(grpc.status.NOT_FOUND);
  });

  const tmpFiles = () => fsp.readdir(path.join(daemon.storagePath, "tmp"));
  async function expectNoTempFiles() {
    for (let i = 0; i < 100 && (await tmpFiles()).length > 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(await tmpFiles()).toEqual([]);
  }

  test("a cancelled upload keeps the previous version and leaves no temp file", async () => {
    await client.store("stream/cancel", Buffer.from("previous"));
    const ac = new AbortController();
    let sent = 0;
    async function* endless() {
      for (let i = 0; ; i++) {
        yield Buffer.alloc(256 * 1024, i);
        if (i > 8) await new Promise((r) => setTimeout(r, 50));
      }
    }
    const upload = client.upload("stream/cancel", endless(), { onProgress: (n) => (sent = n), signal: ac.signal });
    const outcome = upload.then(() => "stored", (e: Error) => e.name);
    while (sent < 2 * 1024 * 1024) await new Promise((r) => setTimeout(r, 10));
    ac.abort();
    expect(await outcome).not.toBe("stored");
    await expectNoTempFiles();
    expect((await client.retrieve("stream/cancel"))?.toString()).toBe("previous");
  });

  test("an upload past its deadline keeps the previous version and leaves no temp file", async () => {
    await client.store("stream/deadline", Buffer.from("previous"));
    const failed = new Promise<grpc.ServiceError | null>((resolve) => {
      const call = raw.storeStream(new grpc.Metadata(), { deadline: Date.now() + 1500 }, (e) => resolve(e));
      call.write(header("stream/deadline"));
      // Incompressible and over the inline limit, so the local tier streams it to a temp file.
      call.write(chunk(randomBytes(512 * 1024)));
      // ...and never end the stream.
    });
    // The write is under way: its temp file exists.
    for (let i = 0; i < 100 && (await tmpFiles()).length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect((await tmpFiles()).length).toBe(1);
    expect((await failed)?.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    await expectNoTempFiles();
    expect((await client.retrieve("stream/deadline"))?.toString()).toBe("previous");
  });

  test("if_generation_match on RetrieveStream", async () => {
    const info = await client.store("stream/gen", Buffer.from("abc"));
    await expect(client.download("stream/gen", { ifGenerationMatch: info.generation + 1n })).rejects.toMatchObject({ code: grpc.status.FAILED_PRECONDITION });
    const ok = await client.download("stream/gen", { ifGenerationMatch: info.generation });
    ok.stream.destroy();
  });
});

describe("listing", () => {
  beforeAll(async () => {
    for (const k of ["l/a", "l/b/1", "l/b/2", "l/c", "l/d/x/y", "l/e"]) await client.store(k, k);
  });

  test("sorted, paged with opaque tokens, with delimiter roll-up", async () => {
    const all: string[] = [];
    for await (const k of client.iterateKeys({ prefix: "l/", pageSize: 2 })) all.push(k);
    expect(all).toEqual(["l/a", "l/b/1", "l/b/2", "l/c", "l/d/x/y", "l/e"]);
    const keys: string[] = [];
    const prefixes: string[] = [];
    let pageToken = "";
    do {
      const page = await client.listKeys({ prefix: "l/", delimiter: "/", limit: 1, pageToken });
      keys.push(...page.keys);
      prefixes.push(...page.prefixes);
      pageToken = page.nextPageToken ?? "";
    } while (pageToken);
    expect(keys).toEqual(["l/a", "l/c", "l/e"]);
    expect(prefixes).toEqual(["l/b/", "l/d/"]);
  });

  test("a token from another listing or garbage is INVALID_ARGUMENT", async () => {
    const page = await client.listKeys({ prefix: "l/", limit: 1 });
    expect(page.nextPageToken).toBeTruthy();
    expect(await codeOf(client.listKeys({ prefix: "other/", pageToken: page.nextPageToken }))).toBe("INVALID_ARGUMENT");
    expect(await codeOf(client.listKeys({ prefix: "l/", pageToken: "garbage!" }))).toBe("INVALID_ARGUMENT");
  });

  test("DeleteMany by keys and by prefix; an empty request is refused", async () => {
    for (const k of ["dm/1", "dm/2", "dm/x/3"]) await client.store(k, "v");
    expect(await client.deleteMany({ keys: ["dm/1", "dm/missing"] })).toBe(1);
    expect(await client.deleteMany({ prefix: "dm/" })).toBe(2);
    expect(await client.exists("dm/x/3")).toBe(false);
    expect(await codeOf(client.deleteMany({}))).toBe("INVALID_ARGUMENT");
  });
});

describe("stats and health", () => {
  test("GetStats counts operations live", async () => {
    const before = await client.getStats();
    await client.store("stats/1", "x");
    await client.retrieve("stats/missing");
    const after = await client.getStats();
    expect(after.initialized).toBe(true);
    expect(after.gcsAvailable).toBe(false);
    expect(after.totalOperations).toBeGreaterThanOrEqual(before.totalOperations + 2);
    expect(after.failedOperations).toBeGreaterThanOrEqual(before.failedOperations + 1);
  });

  test("grpc.health.v1 answers SERVING", async () => {
    const { HealthClient } = await healthClient();
    const hc = new HealthClient(daemon.address, grpc.credentials.createInsecure());
    const status = await new Promise<string>((resolve, reject) =>
      hc.check({ service: "filestorage.v1.FileStorageService" }, (err: Error | null, res: { status: string }) => (err ? reject(err) : resolve(res.status))),
    );
    hc.close();
    expect(status).toBe("SERVING");
  });
});

async function healthClient() {
  const def = protoLoader.loadSync(protoPath, { enums: String });
  const pkg = grpc.loadPackageDefinition(def) as unknown as { grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } } };
  return { HealthClient: pkg.grpc.health.v1.Health as unknown as new (a: string, c: grpc.ChannelCredentials) => grpc.Client & { check: Function } };
}
