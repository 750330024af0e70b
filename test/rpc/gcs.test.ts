/**
 * The daemon with GCS as its primary tier, through the real gRPC server and
 * the real fake-gcs-server emulator: every RPC lands in GCS (checked with the
 * GCS SDK directly against the emulator), our flags live in custom metadata,
 * generations are GCS's, and preconditions work end to end.
 */
import { randomBytes } from "node:crypto";
import { gunzipSync } from "node:zlib";
import { Storage } from "@google-cloud/storage";
import { crc32c } from "@node-rs/crc32";
import { FileStorageClient } from "../../client/src/index.js";
import { BufferedSource, type Backend, type PutMeta } from "../../server/backends/backend.js";
import { createFsBackend } from "../../server/backends/fs/fs-backend.js";
import { createGcsBackend, gcsStorageOptions } from "../../server/backends/gcs/gcs-backend.js";
import { createChainBackend } from "../../server/engine/chain-backend.js";
import { CircuitBreaker } from "../../server/engine/circuit-breaker.js";
import { makeTempDir, type TempDir } from "../kit/temp-dir.js";
import { startDaemon, type TestDaemon } from "../support/daemon.js";
import { hasLiveObject, hasTombstone, liveNames } from "../support/gcs-objects.js";
import { startFakeGcs, type FakeGcs } from "../kit/fake-gcs.js";
import { startHttpFaultProxy, type HttpFaultProxy } from "../kit/http-fault-proxy.js";
import { codeOf } from "../support/expect-failure.js";

const BUCKET = "fs-rpc-gcs";
const MiB = 1024 * 1024;

let gcs: FakeGcs;
let daemon: TestDaemon;
let client: FileStorageClient;
let sdk: Storage;

beforeAll(async () => {
  gcs = await startFakeGcs();
  daemon = await startDaemon({
    GCS_BUCKET_NAME: BUCKET,
    GCS_PROJECT_ID: "test",
    GCS_API_ENDPOINT: gcs.url,
    MAX_RETRIES: "2",
    TIMEOUT_SECONDS: "5",
    REPLICATION_INTERVAL_MS: "200",
    // Reads must reach the tiers, not a cache, for these checks.
    ENABLE_CACHE: "false",
    MAX_UNARY_BYTES: String(MiB),
  });
  client = new FileStorageClient(daemon.address, { maxUnaryBytes: MiB });
  sdk = new Storage(gcsStorageOptions({ apiEndpoint: gcs.url, projectId: "test", timeoutMs: 5000 }));
});
afterAll(async () => {
  client?.close();
  await daemon?.stop();
  await gcs?.stop();
});

const gcsFile = (key: string) => sdk.bucket(BUCKET).file(key);
const gcsMeta = async (key: string) => (await gcsFile(key).getMetadata())[0];
/** A live object (a deleted key keeps a tombstone, which is absence). */
const gcsExists = (key: string) => hasLiveObject(sdk.bucket(BUCKET), key);


test("the daemon created the bucket and reports GCS available", async () => {
  const [exists] = await sdk.bucket(BUCKET).exists();
  expect(exists).toBe(true);
  const stats = await client.getStats();
  expect(stats.gcsAvailable).toBe(true);
  expect(stats.pendingReplication).toBe(0);
  expect(stats.oldestPendingAgeSeconds).toBe(0);
});

test("Store lands in GCS with our flags in custom metadata and the generation GCS gave it", async () => {
  const info = await client.store("rpc/text", "hello gcs", { metadata: { owner: "t", tags: ["a", "b"] } });
  expect(info.backend).toBe("gcs");
  expect(info.pendingReplication).toBe(false);
  const md = await gcsMeta("rpc/text");
  expect(BigInt(md.generation!)).toBe(info.generation);
  expect(md.contentEncoding ?? "").not.toBe("gzip");
  expect(md.metadata).toMatchObject({ "x-fs-kind": "TEXT" });
  expect(JSON.parse(String(md.metadata!["x-fs-metadata"]))).toEqual({ owner: "t", tags: ["a", "b"] });
  const [bytes] = await gcsFile("rpc/text").download();
  expect(bytes.toString()).toBe("hello gcs");
  // Nothing waits in the local tier.
  expect(daemon.server.stack.status().pending.count).toBe(0);
});

test("a compressible JSON object is gzip-compressed at rest, flagged in custom metadata only", async () => {
  const value = { rows: Array.from({ length: 400 }, (_, i) => ({ id: i, name: `row-${i}`, ok: true })) };
  const info = await client.store("rpc/json", value);
  expect(info.compressed).toBe(true);
  expect(info.storedSize).toBeLessThan(info.size);
  const md = await gcsMeta("rpc/json");
  expect(md.contentEncoding ?? "").not.toBe("gzip");
  expect(JSON.parse(String(md.metadata!["x-fs-encoding"]))).toEqual({ compression: "gzip" });
  expect(Number(md.size)).toBe(info.storedSize);
  const [atRest] = await gcsFile("rpc/json").download();
  expect(JSON.parse(gunzipSync(atRest).toString())).toEqual(value);
  expect(await client.retrieve("rpc/json")).toEqual(value);
});

test("Retrieve, Stat and Exists read from GCS; binary data comes back unchanged", async () => {
  const data = randomBytes(3000);
  await client.store("rpc/bin", data);
  const got = await client.retrieveWithInfo<Buffer>("rpc/bin");
  expect(Buffer.compare(got!.data, data)).toBe(0);
  expect(got!.info.backend).toBe("gcs");
  expect(got!.info.crc32c).toBe(crc32c(data) >>> 0);
  const stat = await client.stat("rpc/bin");
  expect(stat).toMatchObject({ backend: "gcs", kind: "bytes", size: 3000, pendingReplication: false });
  expect(await client.exists("rpc/bin")).toBe(true);
  expect(await client.exists("rpc/none")).toBe(false);
  expect(await client.retrieve("rpc/none")).toBeNull();
  expect(await client.stat("rpc/none")).toBeNull();
});

test("an object written directly to GCS by someone else is readable through the daemon", async () => {
  await gcsFile("rpc/foreign").save(Buffer.from("from elsewhere"), { preconditionOpts: { ifGenerationMatch: 0 } });
  const got = await client.retrieveWithInfo<Buffer>("rpc/foreign");
  expect(got!.data.toString()).toBe("from elsewhere");
  expect(got!.info.backend).toBe("gcs");
});

test("Delete removes the object from GCS; a second delete says false", async () => {
  await client.store("rpc/del", "bye");
  expect(await gcsExists("rpc/del")).toBe(true);
  expect(await client.delete("rpc/del")).toBe(true);
  expect(await gcsExists("rpc/del")).toBe(false);
  expect(await hasTombstone(sdk.bucket(BUCKET), "rpc/del")).toBe(true);
  expect(await client.delete("rpc/del")).toBe(false);
  expect(await client.exists("rpc/del")).toBe(false);
});

test("ListKeys lists GCS in order with delimiter and page tokens", async () => {
  const keys = ["ls/a", "ls/b/1", "ls/b/2", "ls/c", "ls/d", "ls/e"];
  for (const k of keys) await client.store(k, k);
  const all: string[] = [];
  for await (const k of client.iterateKeys({ prefix: "ls/", pageSize: 2 })) all.push(k);
  expect(all).toEqual(keys);
  const page = await client.listKeys({ prefix: "ls/", delimiter: "/", includeInfo: true });
  expect(page.keys).toEqual(["ls/a", "ls/c", "ls/d", "ls/e"]);
  expect(page.prefixes).toEqual(["ls/b/"]);
  expect(page.objects.every((o) => o.backend === "gcs")).toBe(true);
  expect(await client.deleteMany({ prefix: "ls/b/" })).toBe(2);
  expect(await liveNames(sdk.bucket(BUCKET), "ls/b/")).toEqual([]);
});

test("streams: upload goes to GCS (resumable path included) and downloads whole and by range", async () => {
  // Above the unary limit and the GCS tier's 8 MiB resumable threshold; still modest for the emulator's RAM.
  const data = randomBytes(9 * MiB + 123);
  const info = await client.upload("rpc/stream", [data.subarray(0, MiB), data.subarray(MiB)], { size: data.length });
  expect(info.backend).toBe("gcs");
  expect(info.size).toBe(data.length);
  const md = await gcsMeta("rpc/stream");
  expect(BigInt(md.generation!)).toBe(info.generation);
  expect(Number(md.metadata!["x-fs-size"])).toBe(data.length);
  const [atRest] = await gcsFile("rpc/stream").download();
  expect(Buffer.compare(atRest, data)).toBe(0);

  const whole = await client.download("rpc/stream");
  expect(whole.info.backend).toBe("gcs");
  const chunks: Buffer[] = [];
  for await (const c of whole.stream) chunks.push(c as Buffer);
  expect(Buffer.compare(Buffer.concat(chunks), data)).toBe(0);

  const part = await client.download("rpc/stream", { offset: MiB, limit: 1000 });
  const partChunks: Buffer[] = [];
  for await (const c of part.stream) partChunks.push(c as Buffer);
  expect(Buffer.compare(Buffer.concat(partChunks), data.subarray(MiB, MiB + 1000))).toBe(0);

  // Retrieve of an object over the unary limit goes through the stream transparently.
  const back = await client.retrieve<Buffer>("rpc/stream");
  expect(Buffer.compare(back!, data)).toBe(0);
});

test("generations rise on each write and are GCS's own", async () => {
  const a = await client.store("rpc/gen", "1");
  const b = await client.store("rpc/gen", "2");
  expect(b.generation).toBeGreaterThan(a.generation);
  expect(BigInt((await gcsMeta("rpc/gen")).generation!)).toBe(b.generation);
});

test("preconditions work through the daemon on GCS", async () => {
  // 0 = only if absent.
  const first = await client.store("rpc/pre", "v1", { ifGenerationMatch: 0 });
  expect(await codeOf(client.store("rpc/pre", "again", { ifGenerationMatch: 0 }))).toBe("FAILED_PRECONDITION");
  expect(await codeOf(client.store("rpc/pre", "stale", { ifGenerationMatch: first.generation + 1n }))).toBe("FAILED_PRECONDITION");
  const second = await client.store("rpc/pre", "v2", { ifGenerationMatch: first.generation });
  expect(second.generation).toBeGreaterThan(first.generation);
  expect(await client.retrieve("rpc/pre")).toBe("v2");

  // A write made directly to GCS makes the daemon's old generation stale.
  await gcsFile("rpc/pre").save(Buffer.from("direct"), { preconditionOpts: { ifGenerationMatch: Number(second.generation) } });
  expect(await codeOf(client.store("rpc/pre", "v3", { ifGenerationMatch: second.generation }))).toBe("FAILED_PRECONDITION");

  // Conditional deletes.
  const now = (await client.stat("rpc/pre"))!;
  expect(await codeOf(client.delete("rpc/pre", { ifGenerationMatch: second.generation }))).toBe("FAILED_PRECONDITION");
  expect(await gcsExists("rpc/pre")).toBe(true);
  expect(await client.delete("rpc/pre", { ifGenerationMatch: now.generation })).toBe(true);
  expect(await gcsExists("rpc/pre")).toBe(false);

  // Downloads pinned to a generation.
  const v = await client.store("rpc/pin", "pinned");
  await client.store("rpc/pin", "moved");
  expect(await codeOf(client.download("rpc/pin", { ifGenerationMatch: v.generation }))).toBe("FAILED_PRECONDITION");
});

describe("the chain while changes wait in the outbox (GCS up, replicator not running)", () => {
  const meta: PutMeta = { kind: "BYTES", contentType: "application/octet-stream", metadata: {} };
  const src = (text: string) => new BufferedSource([Buffer.from(text)]);
  let chain: Backend;
  let dir: TempDir;

  beforeAll(async () => {
    const primary = await createGcsBackend({ bucket: "fs-rpc-gcs-merge", projectId: "test", apiEndpoint: gcs.url, maxRetries: 1, timeoutMs: 5000 });
    dir = await makeTempDir("fs-merge-");
    const fallback = await createFsBackend({ root: dir.path, fsync: false });
    chain = createChainBackend({
      primary,
      fallback,
      breaker: new CircuitBreaker({ failureThreshold: 1, resetTimeoutMs: 2000 }),
      fallbackEnabled: true,
      writer: "test",
    });
    for (const k of ["m/a", "m/c", "m/e", "m/g", "m/x/1"]) await primary.put(k, src(k), meta);
    // What an outage leaves behind: new and overwritten keys on the local tier, a delete as a tombstone.
    await fallback.put("m/b", src("local b"), meta, { pending: true });
    await fallback.put("m/c", src("local c"), meta, { pending: true });
    await fallback.delete("m/e", { pending: true });
    await fallback.put("m/y/1", src("local y"), meta, { pending: true });
  });
  afterAll(async () => {
    await chain?.close();
    await dir?.cleanup();
  });

  test("reads of pending keys come from the local tier, tombstones read as missing", async () => {
    expect(await chain.head("m/c")).toMatchObject({ tier: "local", pendingReplication: true });
    expect(await chain.head("m/e")).toBeUndefined();
    expect(await chain.head("m/a")).toMatchObject({ tier: "gcs" });
  });

  test("listing merges both tiers in order, page by page", async () => {
    for (const limit of [1, 2, 3, 100]) {
      const seen: string[] = [];
      let startAfter: string | undefined;
      for (let pages = 0; pages < 20; pages++) {
        const page = await chain.list({ prefix: "m/", limit, startAfter });
        expect(page.objects.length + page.prefixes.length).toBeLessThanOrEqual(limit);
        seen.push(...page.objects.map((o) => `${o.key}@${o.tier}`));
        startAfter = page.next;
        if (startAfter === undefined) break;
      }
      expect({ limit, seen }).toEqual({ limit, seen: ["m/a@gcs", "m/b@local", "m/c@local", "m/g@gcs", "m/x/1@gcs", "m/y/1@local"] });
    }
    const rolled = await chain.list({ prefix: "m/", limit: 100, delimiter: "/" });
    expect(rolled.objects.map((o) => o.key)).toEqual(["m/a", "m/b", "m/c", "m/g"]);
    expect(rolled.prefixes).toEqual(["m/x/", "m/y/"]);
  });
});

describe("GCS failing one kind of request (an HTTP proxy that fails them)", () => {
  let proxy: HttpFaultProxy;
  let viaProxy: TestDaemon;
  let proxied: FileStorageClient;
  const bucket = "fs-rpc-gcs-faults";
  beforeAll(async () => {
    proxy = await startHttpFaultProxy(gcs.port);
    viaProxy = await startDaemon({
      GCS_BUCKET_NAME: bucket,
      GCS_PROJECT_ID: "test",
      GCS_API_ENDPOINT: proxy.url,
      MAX_RETRIES: "1",
      TIMEOUT_SECONDS: "5",
    });
    proxied = new FileStorageClient(viaProxy.address, { retries: 0 });
  });
  afterAll(async () => {
    proxied?.close();
    await viaProxy?.stop();
    await proxy?.close();
  });
  afterEach(() => proxy.fail(undefined));

  test("a streamed upload whose final step fails keeps the key's last acknowledged version and leaves no upload part", async () => {
    await proxied.store("faults/k", "version 1");
    // The step that gives a streamed upload its final metadata: the compose (the old code's metadata PATCH).
    proxy.fail((r) => (r.method === "POST" && r.url.includes("/compose")) || r.method === "PATCH");
    const big = randomBytes(12 * 1024 * 1024);
    const err = await codeOf(proxied.upload("faults/k", [big], { kind: "bytes" }));
    expect(["UNAVAILABLE", "INTERNAL"]).toContain(err);
    proxy.fail(undefined);
    expect(await proxied.retrieve("faults/k")).toBe("version 1");
    expect((await sdk.bucket(bucket).file("faults/k").download())[0].toString()).toBe("version 1");
    const [parts] = await sdk.bucket(bucket).getFiles({ prefix: ".filestorage/uploads/" });
    expect(parts.map((f) => f.name)).toEqual([]);
    // Once GCS answers again the same upload goes through, whole and verified.
    await proxied.upload("faults/k", [big], { kind: "bytes" });
    expect((await proxied.retrieve<Buffer>("faults/k"))!.equals(big)).toBe(true);
    expect(await liveNames(sdk.bucket(bucket), ".filestorage/")).toEqual([]);
  });
});

test("no single client can make GCS look down: bad content types, oversize metadata, cancelled and timed-out calls leave the breaker closed", async () => {
  const big = randomBytes(9 * MiB);
  const attacks: [string, () => Promise<unknown>][] = [
    ["CR/LF in a streamed upload's content type", () => client.upload("hostile/a", [big], { contentType: "text/plain\r\nX-Evil: 1" })],
    ["non-ASCII content type, streamed", () => client.upload("hostile/b", [big], { contentType: "tëxt/plain" })],
    ["non-ASCII content type, unary", () => client.store("hostile/c", "x", { contentType: "tëxt/plaïn" })],
    ["metadata over GCS's 8 KiB", () => client.store("hostile/d", "x", { metadata: { blob: "m".repeat(16 * 1024) } })],
    [
      "an upload cancelled mid-stream",
      () => {
        const ac = new AbortController();
        async function* slow() {
          yield big.subarray(0, MiB);
          ac.abort();
          await new Promise((r) => setTimeout(r, 50));
          yield big.subarray(MiB);
        }
        return client.upload("hostile/e", slow(), { signal: ac.signal });
      },
    ],
    [
      "a call with a 1 ms deadline",
      async () => {
        const hurried = new FileStorageClient(daemon.address, { deadlineMs: 1, retries: 0 });
        try {
          await hurried.store("hostile/f", randomBytes(512 * 1024));
        } finally {
          hurried.close();
        }
      },
    ],
  ];
  for (const [what, attack] of attacks) {
    const outcomes = await Promise.allSettled(Array.from({ length: 6 }, () => attack()));
    for (const o of outcomes) {
      if (o.status === "rejected") expect({ what, code: String(o.reason) }).not.toEqual({ what, code: expect.stringContaining("UNAVAILABLE") });
    }
    expect({ what, gcsAvailable: (await client.getStats()).gcsAvailable }).toEqual({ what, gcsAvailable: true });
  }
  // Everyone else still writes to GCS, not to the fallback.
  expect((await client.store("hostile/ok", "fine")).backend).toBe("gcs");
}, 120_000);
