/**
 * GCS requests per call, counted at an HTTP proxy in front of the real
 * fake-gcs-server, through the real gRPC server with ENABLE_CACHE=false and
 * DISK_CACHE_MAX_MB=0 (either cache would hide requests; the disk cache's own
 * are counted in disk-cache.test.ts), so the one-request rules cannot
 * regress: a Retrieve, a Stat and an unconditional or conditional Store are
 * one request each. Also here: what a retry after an ambiguous failure looks
 * at (it never clobbers a newer write), large reads and uploads in parallel
 * parts (bounded windows, verified), and what created_at means.
 */
import { randomBytes } from "node:crypto";
import { Storage } from "@google-cloud/storage";
import { FileStorageClient } from "../../client/src/index.js";
import { gcsStorageOptions } from "../../server/backends/gcs/gcs-backend.js";
import { startFakeGcs, type FakeGcs } from "../kit/fake-gcs.js";
import { startHttpFaultProxy, type HttpFaultProxy, type ProxiedRequest } from "../kit/http-fault-proxy.js";
import { codeOf } from "../support/expect-failure.js";
import { liveNames } from "../support/gcs-objects.js";
import { startDaemon, type TestDaemon } from "../support/daemon.js";

const BUCKET = "fs-rpc-requests";
const KiB = 1024;
const MiB = 1024 * KiB;

let gcs: FakeGcs;
let proxy: HttpFaultProxy;
let daemon: TestDaemon;
let client: FileStorageClient;
let sdk: Storage;

beforeAll(async () => {
  gcs = await startFakeGcs();
  proxy = await startHttpFaultProxy(gcs.port);
  daemon = await startDaemon({
    GCS_BUCKET_NAME: BUCKET,
    GCS_PROJECT_ID: "test",
    GCS_API_ENDPOINT: proxy.url,
    ENABLE_CACHE: "false",
    DISK_CACHE_MAX_MB: "0",
    MAX_RETRIES: "2",
    TIMEOUT_SECONDS: "5",
    // No background calls while requests are counted.
    HEALTH_CHECK_SECONDS: "3600",
    GCS_SWEEP_SECONDS: "3600",
    // Small parts, so the parallel paths run on modest objects.
    GCS_RESUMABLE_THRESHOLD_BYTES: "1MiB",
    GCS_PARALLEL_UPLOAD_PART_BYTES: "1MiB",
    GCS_PARALLEL_UPLOAD_PARTS: "3",
    GCS_PARALLEL_READ_THRESHOLD_BYTES: "2MiB",
    GCS_PARALLEL_READ_PART_BYTES: "1MiB",
    GCS_PARALLEL_READ_PARTS: "3",
  });
  client = new FileStorageClient(daemon.address, { retries: 0 });
  sdk = new Storage(gcsStorageOptions({ apiEndpoint: gcs.url, projectId: "test", timeoutMs: 5000 }));
  // The first write checks the bucket once; not counted below.
  await client.store("warm-up", "x");
});
afterAll(async () => {
  client?.close();
  await daemon?.stop();
  await proxy?.close();
  await gcs?.stop();
});
afterEach(() => {
  proxy.fail(undefined);
  proxy.slow(undefined);
});

/** The object requests (not the bucket's: probes, listings) made while `fn` ran, as "METHOD what". */
async function requestsOf(fn: () => Promise<unknown>): Promise<ProxiedRequest[]> {
  const before = proxy.requests.length;
  await fn();
  return proxy.requests.slice(before).filter((r) => !bucketLevel(r));
}
const bucketLevel = (r: ProxiedRequest) => {
  const path = r.url.split("?")[0];
  return /^\/storage\/v1\/b\/[^/]+$/.test(path) || (r.method === "GET" && /^\/storage\/v1\/b\/[^/]+\/o$/.test(path));
};

/** A request in words: "upload", "read", "ranged read", "stat", "compose", "delete", "session", "session PUT". */
function kind(r: ProxiedRequest): string {
  if (r.url.startsWith("/upload/")) return r.method === "PUT" || r.url.includes("upload_id=") ? "session PUT" : r.url.includes("uploadType=resumable") ? "session" : "upload";
  if (r.url.includes("/compose")) return "compose";
  if (r.method === "DELETE") return "delete";
  if (r.url.includes("alt=media")) return r.range ? "ranged read" : "read";
  return r.method === "GET" ? "stat" : `${r.method} ${r.url}`;
}
const kinds = (rs: ProxiedRequest[]) => rs.map(kind);

describe("requests per call", () => {
  test("Store of a new key: one upload, with no look-up and no precondition", async () => {
    const rs = await requestsOf(() => client.store("count/new", "v1"));
    expect(kinds(rs)).toEqual(["upload"]);
    expect(rs[0].url).not.toContain("ifGenerationMatch");
  });

  test("Store over an existing key: one upload", async () => {
    await client.store("count/over", "v1");
    const rs = await requestsOf(() => client.store("count/over", "v2"));
    expect(kinds(rs)).toEqual(["upload"]);
    expect(await client.retrieve("count/over")).toBe("v2");
  });

  test("conditional Store: one upload carrying the precondition; a mismatch adds the look-up that names the generation", async () => {
    const first = await client.store("count/cond", "v1", { ifGenerationMatch: 0 });
    const rs = await requestsOf(() => client.store("count/cond", "v2", { ifGenerationMatch: first.generation }));
    expect(kinds(rs)).toEqual(["upload"]);
    expect(rs[0].url).toContain(`ifGenerationMatch=${first.generation}`);
    const refused = await requestsOf(async () => expect(await codeOf(client.store("count/cond", "v3", { ifGenerationMatch: first.generation }))).toBe("FAILED_PRECONDITION"));
    expect(kinds(refused)).toEqual(["upload", "stat"]);
  });

  test("StoreStream of a stream below GCS_RESUMABLE_THRESHOLD_BYTES: one upload", async () => {
    const data = randomBytes(300 * KiB);
    const rs = await requestsOf(() => client.upload("count/stream-small", [data.subarray(0, 100 * KiB), data.subarray(100 * KiB)]));
    expect(kinds(rs)).toEqual(["upload"]);
  });

  test("Retrieve: one media read, for a stored, a missing and a deleted key", async () => {
    await client.store("count/get", "value");
    let got: unknown;
    expect(kinds(await requestsOf(async () => (got = await client.retrieveWithInfo("count/get"))))).toEqual(["read"]);
    expect(got).toMatchObject({ data: "value", info: { backend: "gcs", kind: "text" } });
    expect(kinds(await requestsOf(async () => expect(await client.retrieve("count/missing")).toBeNull()))).toEqual(["read"]);
    await client.store("count/deleted", "gone soon");
    await client.delete("count/deleted");
    expect(kinds(await requestsOf(async () => expect(await client.retrieve("count/deleted")).toBeNull()))).toEqual(["read"]);
  });

  test("Stat and Exists: one metadata read each", async () => {
    await client.store("count/stat", "value");
    expect(kinds(await requestsOf(async () => expect(await client.stat("count/stat")).toMatchObject({ size: 5 })))).toEqual(["stat"]);
    expect(kinds(await requestsOf(async () => expect(await client.exists("count/stat")).toBe(true)))).toEqual(["stat"]);
  });

  test("Delete: the engine's look (expiry, quotas), the tier's (was anything there, is a newer tombstone), and the tombstone guarded by it", async () => {
    const info = await client.store("count/del", "value");
    const rs = await requestsOf(async () => expect(await client.delete("count/del")).toBe(true));
    expect(kinds(rs)).toEqual(["stat", "stat", "upload"]);
    expect(rs[2].url).toContain(`ifGenerationMatch=${info.generation}`);
  });

  test("RetrieveStream whole and ranged: one media read each", async () => {
    const data = randomBytes(600 * KiB);
    await client.upload("count/dl", [data]);
    const whole = await requestsOf(async () => {
      const { stream } = await client.download("count/dl");
      expect(Buffer.concat(await collect(stream)).equals(data)).toBe(true);
    });
    expect(kinds(whole)).toEqual(["read"]);
    const ranged = await requestsOf(async () => {
      const { stream } = await client.download("count/dl", { offset: 1000, limit: 5000 });
      expect(Buffer.concat(await collect(stream)).equals(data.subarray(1000, 6000))).toBe(true);
    });
    expect(kinds(ranged)).toEqual(["ranged read"]);
    expect(ranged[0].range).toBe("bytes=1000-5999");
  });
});

describe("a retry after an ambiguous failure", () => {
  const firstUpload = (r: ProxiedRequest) => r.url.startsWith("/upload/");

  test("whose first attempt landed: the look-up finds this very write and the Store succeeds without writing again", async () => {
    proxy.fail(firstUpload, 503, { forward: true, times: 1 });
    let info: Awaited<ReturnType<typeof client.store>> | undefined;
    const rs = await requestsOf(async () => (info = await client.store("retry/landed", "once")));
    expect(kinds(rs)).toEqual(["upload", "stat"]);
    const [md] = await sdk.bucket(BUCKET).file("retry/landed").getMetadata();
    expect(BigInt(md.generation!)).toBe(info!.generation);
    expect(await client.retrieve("retry/landed")).toBe("once");
  });

  test("after a newer write by another writer: ABORTED, and the newer write is kept", async () => {
    await client.store("retry/newer", "old");
    proxy.fail(firstUpload, 503, {
      times: 1,
      // Another daemon writes the key while this write waits for its retry.
      before: async () => {
        await sdk.bucket(BUCKET).file("retry/newer").save(Buffer.from("newer"), {
          resumable: false,
          metadata: { metadata: { "x-fs-kind": "TEXT", "x-fs-written-at": String(Date.now() * 1000 + 1000), "x-fs-writer": "another-daemon" } },
        });
      },
    });
    let code: string | undefined;
    const rs = await requestsOf(async () => (code = await codeOf(client.store("retry/newer", "mine"))));
    expect(code).toBe("ABORTED");
    expect(kinds(rs)).toEqual(["upload", "stat"]);
    expect((await sdk.bucket(BUCKET).file("retry/newer").download())[0].toString()).toBe("newer");
  });

  test("when nothing newer is there: the retry is guarded by the generation the look-up saw", async () => {
    const old = await client.store("retry/plain", "old");
    proxy.fail(firstUpload, 503, { times: 1 });
    const rs = await requestsOf(() => client.store("retry/plain", "new"));
    expect(kinds(rs)).toEqual(["upload", "stat", "upload"]);
    expect(rs[0].url).not.toContain("ifGenerationMatch");
    expect(rs[2].url).toContain(`ifGenerationMatch=${old.generation}`);
    expect(await client.retrieve("retry/plain")).toBe("new");
  });
});

describe("large objects in parallel parts", () => {
  test("a whole read at or above GCS_PARALLEL_READ_THRESHOLD_BYTES: the first read, then ranged parts pinned to its generation, at most GCS_PARALLEL_READ_PARTS at once", async () => {
    const data = randomBytes(5 * MiB + 12_345);
    const info = await client.upload("par/read", [data]);
    proxy.slow((r) => r.url.includes("alt=media"), 150);
    const slowedBefore = proxy.slowed.mostAtOnce;
    const rs = await requestsOf(async () => {
      const { stream } = await client.download("par/read");
      expect(Buffer.concat(await collect(stream)).equals(data)).toBe(true);
    });
    expect(kinds(rs)).toEqual(["read", "ranged read", "ranged read", "ranged read", "ranged read", "ranged read"]);
    expect(rs.slice(1).map((r) => r.range)).toEqual([1, 2, 3, 4, 5].map((i) => `bytes=${i * MiB}-${Math.min(data.length, (i + 1) * MiB) - 1}`));
    expect(rs.slice(1).every((r) => r.url.includes(`generation=${info.generation}`))).toBe(true);
    // The first read and its followers overlap, within the window.
    expect(proxy.slowed.mostAtOnce).toBeGreaterThanOrEqual(Math.max(2, slowedBefore));
    expect(proxy.slowed.mostAtOnce).toBeLessThanOrEqual(3);
  });

  test("a large range goes in parts too", async () => {
    const data = randomBytes(4 * MiB);
    await client.upload("par/range", [data]);
    const rs = await requestsOf(async () => {
      const { stream } = await client.download("par/range", { offset: 100, limit: 3 * MiB });
      expect(Buffer.concat(await collect(stream)).equals(data.subarray(100, 100 + 3 * MiB))).toBe(true);
    });
    expect(kinds(rs)).toEqual(["ranged read", "ranged read", "ranged read"]);
  });

  test("a stream over GCS_RESUMABLE_THRESHOLD_BYTES: parts uploaded at most GCS_PARALLEL_UPLOAD_PARTS at once, checked, composed into the key, cleaned up", async () => {
    const data = randomBytes(5 * MiB + MiB / 2);
    await client.store("par/up", "previous");
    proxy.slow((r) => r.url.startsWith("/upload/"), 150);
    const mostBefore = proxy.slowed.mostAtOnce;
    let info: Awaited<ReturnType<typeof client.upload>> | undefined;
    const rs = await requestsOf(async () => (info = await client.upload("par/up", [data.subarray(0, 3 * MiB), data.subarray(3 * MiB)])));
    const counts = kinds(rs).reduce<Record<string, number>>((m, k) => ({ ...m, [k]: (m[k] ?? 0) + 1 }), {});
    // 5 parts of 1 MiB go up resumably (a session and its PUT), the last half part in one request.
    expect(counts).toEqual({ session: 5, "session PUT": 5, upload: 1, compose: 1, delete: 6 });
    expect(proxy.slowed.mostAtOnce).toBeGreaterThanOrEqual(Math.max(2, mostBefore));
    expect(proxy.slowed.mostAtOnce).toBeLessThanOrEqual(3);
    const [md] = await sdk.bucket(BUCKET).file("par/up").getMetadata();
    expect(BigInt(md.generation!)).toBe(info!.generation);
    expect(md.metadata).toMatchObject({ "x-fs-size": String(data.length) });
    expect((await sdk.bucket(BUCKET).file("par/up").download())[0].equals(data)).toBe(true);
    const [left] = await sdk.bucket(BUCKET).getFiles({ prefix: ".filestorage/uploads/" });
    expect(left.map((f) => f.name)).toEqual([]);
    expect(await liveNames(sdk.bucket(BUCKET), "par/up")).toEqual(["par/up"]);
  });
});

describe("GCS_PARALLEL_UPLOAD_PARTS=1: one resumable session", () => {
  let serial: TestDaemon;
  let serialClient: FileStorageClient;
  beforeAll(async () => {
    serial = await startDaemon({
      GCS_BUCKET_NAME: BUCKET,
      GCS_API_ENDPOINT: proxy.url,
      ENABLE_CACHE: "false",
      HEALTH_CHECK_SECONDS: "3600",
      GCS_SWEEP_SECONDS: "3600",
      GCS_RESUMABLE_THRESHOLD_BYTES: "1MiB",
      GCS_PARALLEL_UPLOAD_PART_BYTES: "1MiB",
      GCS_PARALLEL_UPLOAD_PARTS: "1",
    });
    serialClient = new FileStorageClient(serial.address, { retries: 0 });
    await serialClient.store("warm-up-serial", "x");
  });
  afterAll(async () => {
    serialClient?.close();
    await serial?.stop();
  });

  test("bytes stored as they came go straight into the key: the session, a request per MiB, the last one with the CRC32C; no temporary object", async () => {
    const data = randomBytes(3 * MiB + 5);
    await serialClient.store("one/asis", "previous");
    const rs = await requestsOf(() => serialClient.upload("one/asis", [data]));
    expect(kinds(rs)).toEqual(["session", "session PUT", "session PUT", "session PUT", "session PUT"]);
    expect(rs[0].url).not.toContain("ifGenerationMatch");
    expect((await sdk.bucket(BUCKET).file("one/asis").download())[0].equals(data)).toBe(true);
    expect((await serialClient.stat("one/asis"))!.size).toBe(data.length);
  });

  test("a compressed stream goes to a temporary object, then is composed into the key with its final metadata", async () => {
    // Hex text: about half its size once compressed, still over the 1 MiB threshold.
    const text = randomBytes(2 * MiB).toString("hex");
    const rs = await requestsOf(() => serialClient.upload("one/gz", [Buffer.from(text)], { kind: "text" }));
    const ks = kinds(rs);
    expect(ks[0]).toBe("session");
    expect(ks.slice(-2)).toEqual(["compose", "delete"]);
    expect(ks.slice(1, -2).every((k) => k === "session PUT")).toBe(true);
    const stat = (await serialClient.stat("one/gz"))!;
    expect(stat).toMatchObject({ compressed: true, size: text.length });
    expect(await serialClient.retrieve("one/gz")).toBe(text);
  });

  test("a stream refused at its end (declared size) commits nothing: the key keeps its version", async () => {
    await serialClient.store("one/refused", "kept");
    const data = randomBytes(2 * MiB + 1);
    expect(await codeOf(serialClient.upload("one/refused", [data], { size: data.length + 1 }))).toBe("INVALID_ARGUMENT");
    expect(await serialClient.retrieve("one/refused")).toBe("kept");
  });
});

describe("failures of parts", () => {
  test("a part whose upload fails is sent again from its start (it is held in memory), and the upload succeeds", async () => {
    const data = randomBytes(3 * MiB + 100);
    proxy.fail((r) => r.method === "PUT" && r.url.startsWith("/upload/"), 503, { times: 1 });
    const rs = await requestsOf(() => client.upload("fail/part", [data]));
    expect(kinds(rs).filter((k) => k === "session PUT")).toHaveLength(4);
    expect((await sdk.bucket(BUCKET).file("fail/part").download())[0].equals(data)).toBe(true);
  });

  test("a part read that fails is read again from its start, and the whole read is still checked", async () => {
    const data = randomBytes(3 * MiB);
    await client.upload("fail/read", [data]);
    proxy.fail((r) => r.range !== undefined, 503, { times: 1 });
    const { stream } = await client.download("fail/read");
    expect(Buffer.concat(await collect(stream)).equals(data)).toBe(true);
  });
});

test("created_at is the time of the write that made this version, on every write", async () => {
  const first = await client.store("times/k", "v1");
  await new Promise((r) => setTimeout(r, 20));
  const before = Date.now();
  const second = await client.store("times/k", "v2");
  const after = Date.now();
  expect(second.createdAt!.getTime()).toBeGreaterThanOrEqual(before - 1);
  expect(second.createdAt!.getTime()).toBeLessThanOrEqual(after);
  expect(second.createdAt!.getTime()).toBeGreaterThan(first.createdAt!.getTime());
  // The same from a read (the media answer) and a stat (the object resource).
  const read = await client.retrieveWithInfo("times/k");
  expect(read!.info.createdAt).toEqual(second.createdAt);
  expect((await client.stat("times/k"))!.createdAt).toEqual(second.createdAt);
  expect((await client.stat("times/k"))!.updatedAt).toEqual(second.createdAt);
});

async function collect(stream: NodeJS.ReadableStream): Promise<Buffer[]> {
  const chunks: Buffer[] = [];
  for await (const c of stream as AsyncIterable<Buffer>) chunks.push(c);
  return chunks;
}
