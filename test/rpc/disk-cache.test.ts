/**
 * The disk cache of GCS objects through the real gRPC server, on the real
 * fake-gcs-server behind an HTTP proxy that counts (and can fail or slow)
 * every GCS request: what a read costs once an object is cached, that a
 * copy is served only while its generation is GCS's, the bound and its LRU
 * eviction, the free-space floor, restarts, encryption at rest, shared
 * fetches, copies served during an outage (cached_copy), partial listings,
 * and a copy whose bytes rot on disk.
 */
import { createHash, randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { Storage } from "@google-cloud/storage";
import { FileStorageClient, type ObjectInfo } from "../../client/src/index.js";
import { gcsStorageOptions } from "../../server/backends/gcs/gcs-backend.js";
import { startDaemon, type TestDaemon } from "../support/daemon.js";
import { codeOf } from "../support/expect-failure.js";
import { cacheFile, cacheRow, cachedKeys, flipFileByte } from "../support/stored-copies.js";
import { startFakeGcs, type FakeGcs } from "../kit/fake-gcs.js";
import { startHttpFaultProxy, type HttpFaultProxy, type ProxiedRequest } from "../kit/http-fault-proxy.js";
import { makeTempDir } from "../kit/temp-dir.js";

const MiB = 1024 * 1024;
let gcs: FakeGcs;
let proxy: HttpFaultProxy;
let sdk: Storage;
let bucketCounter = 0;
const cleanups: (() => Promise<void> | void)[] = [];

beforeAll(async () => {
  gcs = await startFakeGcs();
  proxy = await startHttpFaultProxy(gcs.port);
  sdk = new Storage(gcsStorageOptions({ apiEndpoint: gcs.url, projectId: "test", timeoutMs: 5000 }));
});
afterEach(async () => {
  proxy.fail(undefined);
  proxy.slow(undefined);
  while (cleanups.length > 0) await cleanups.pop()!();
});
afterAll(async () => {
  await proxy?.close();
  await gcs?.stop();
});

const isMedia = (r: ProxiedRequest) => r.url.includes("alt=media");
const isMetadataRead = (r: ProxiedRequest) => r.method === "GET" && /\/storage\/v1\/b\/[^/?]+\/o\/[^?]+/.test(r.url) && !isMedia(r);
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

interface Daemon {
  daemon: TestDaemon;
  client: FileStorageClient;
  bucket: string;
}

/** A daemon on a new bucket through the counting proxy; the in-memory cache off unless `env` turns it on, so reads reach the disk cache. */
async function daemonWith(env: Record<string, string> = {}, bucket = `fs-disk-${process.pid}-${++bucketCounter}`): Promise<Daemon> {
  const daemon = await startDaemon({
    GCS_BUCKET_NAME: bucket,
    GCS_PROJECT_ID: "test",
    GCS_API_ENDPOINT: proxy.url,
    MAX_RETRIES: "1",
    TIMEOUT_SECONDS: "5",
    GCS_BREAKER_RESET_SECONDS: "0.2",
    ENABLE_CACHE: "false",
    ...env,
  });
  const client = new FileStorageClient(daemon.address, { retries: 0 });
  cleanups.push(() => daemon.stop(), () => client.close());
  return { daemon, client, bucket };
}

async function download(client: FileStorageClient, key: string, opts: { offset?: number; limit?: number } = {}): Promise<{ info: ObjectInfo; bytes: Buffer }> {
  const { info, stream } = await client.download(key, opts);
  const parts: Buffer[] = [];
  for await (const chunk of stream as AsyncIterable<Buffer>) parts.push(chunk);
  return { info, bytes: Buffer.concat(parts) };
}

/** The GCS requests `fn` made. */
async function requestsOf(fn: () => Promise<unknown>): Promise<ProxiedRequest[]> {
  const before = proxy.requests.length;
  await fn();
  return proxy.requests.slice(before);
}

async function metric(d: TestDaemon, name: string, labels = ""): Promise<number> {
  const text = await d.server.metrics.registry.metrics();
  const line = text.split("\n").find((l) => l.startsWith(`${name}${labels} `) || (labels === "" && l.startsWith(`${name} `)));
  return line === undefined ? 0 : Number(line.split(" ").pop());
}

async function waitFor(what: string, cond: () => Promise<boolean> | boolean, timeoutMs = 15_000): Promise<void> {
  const started = Date.now();
  while (!(await cond())) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test("a cached object costs one metadata request per read, whole or ranged, and no media request", async () => {
  const { client, daemon } = await daemonWith();
  const data = randomBytes(3 * MiB + 12_345);
  await client.upload("dc/a", [data]);

  const first = await requestsOf(async () => expect(sha((await download(client, "dc/a")).bytes)).toBe(sha(data)));
  expect(first.filter(isMedia)).toHaveLength(1);
  expect(cacheRow(daemon.storagePath, "dc/a")).toMatchObject({ storedSize: data.length });
  expect(await client.getStats()).toMatchObject({ diskCacheEntries: 1, diskCacheBytes: data.length, diskCacheMisses: 1, diskCacheHits: 0 });

  let info!: ObjectInfo;
  const whole = await requestsOf(async () => {
    const got = await download(client, "dc/a");
    info = got.info;
    expect(sha(got.bytes)).toBe(sha(data));
  });
  expect(whole.map((r) => [r.method, isMetadataRead(r)])).toEqual([["GET", true]]);
  expect(info).toMatchObject({ backend: "gcs", cachedCopy: false, pendingReplication: false });

  const offset = 1.5 * MiB + 7;
  const ranged = await requestsOf(async () => {
    const got = await download(client, "dc/a", { offset, limit: 100_000 });
    expect(got.bytes.equals(data.subarray(offset, offset + 100_000))).toBe(true);
  });
  expect(ranged.map((r) => [r.method, isMetadataRead(r)])).toEqual([["GET", true]]);
  // A range ending the object.
  const tail = await download(client, "dc/a", { offset: data.length - 10 });
  expect(tail.bytes.equals(data.subarray(data.length - 10))).toBe(true);
  expect(await client.getStats()).toMatchObject({ diskCacheHits: 3, diskCacheMisses: 1 });
  expect(await metric(daemon, "fs_disk_cache_hits_total")).toBe(3);
  expect(await metric(daemon, "fs_disk_cache_entries")).toBe(1);
});

test("a small object is answered from GCS's bytes at once and copied to disk after: its next read costs one metadata request, and a bad copy is caught", async () => {
  const { client, daemon } = await daemonWith();
  const data = randomBytes(16 * 1024);
  await client.store("dc/small", data);
  const first = await requestsOf(async () => expect((await client.retrieve<Buffer>("dc/small"))?.equals(data)).toBe(true));
  expect(first.filter(isMedia)).toHaveLength(1);
  // The copy is written after the answer.
  await waitFor("the small copy on disk", () => cacheRow(daemon.storagePath, "dc/small") !== undefined);
  expect(cacheRow(daemon.storagePath, "dc/small")).toMatchObject({ storedSize: data.length });
  const second = await requestsOf(async () => expect((await client.retrieve<Buffer>("dc/small"))?.equals(data)).toBe(true));
  expect(second.map((r) => [r.method, isMetadataRead(r)])).toEqual([["GET", true]]);
  // A flipped byte in the copy is caught by its block CRC32C: the read is still right (from GCS).
  flipFileByte(cacheFile(daemon.storagePath, cacheRow(daemon.storagePath, "dc/small")!.blob), 100);
  expect((await client.retrieve<Buffer>("dc/small"))?.equals(data)).toBe(true);
});

test("100 first reads of small objects at once, past the copies written in the background: every answer right, every object cached", async () => {
  const { client, daemon } = await daemonWith();
  const values = Array.from({ length: 100 }, (_, i) => randomBytes(8 * 1024 + i));
  await Promise.all(values.map((v, i) => client.store(`dc/many/${i}`, v)));
  const got = await Promise.all(values.map((_, i) => client.retrieve<Buffer>(`dc/many/${i}`)));
  expect(got.map((g, i) => g?.equals(values[i]!))).toEqual(values.map(() => true));
  await waitFor("every small copy on disk", () => values.every((_, i) => cacheRow(daemon.storagePath, `dc/many/${i}`) !== undefined));
  expect((await client.getStats()).diskCacheEntries).toBe(100);
});

test("a copy is served only while its generation is GCS's: another writer's overwrite or delete is seen at once", async () => {
  const { client, daemon, bucket } = await daemonWith();
  const v1 = randomBytes(2 * MiB);
  await client.upload("dc/k", [v1]);
  expect(sha((await download(client, "dc/k")).bytes)).toBe(sha(v1));
  const cached = cacheRow(daemon.storagePath, "dc/k")!;

  // Another writer (the SDK straight into the bucket) replaces it, with as many bytes: only the generation differs.
  const v2 = randomBytes(2 * MiB);
  await sdk.bucket(bucket).file("dc/k").save(v2, { resumable: false });
  const got = await download(client, "dc/k");
  expect(sha(got.bytes)).toBe(sha(v2));
  expect(got.info.generation).not.toBe(cached.generation);
  // The stale copy was replaced by the new one.
  expect(cacheRow(daemon.storagePath, "dc/k")).toMatchObject({ generation: got.info.generation, storedSize: v2.length });
  expect(fs.existsSync(cacheFile(daemon.storagePath, cached.blob))).toBe(false);

  await sdk.bucket(bucket).file("dc/k").delete();
  expect(await client.retrieve("dc/k")).toBeNull();
  expect(await client.stat("dc/k")).toBeNull();
  expect(cacheRow(daemon.storagePath, "dc/k")).toBeUndefined();
});

test("concurrent readers of an object not yet cached share one fetch", async () => {
  const { client, daemon } = await daemonWith();
  const data = randomBytes(8 * MiB);
  await client.upload("dc/shared", [data]);
  // GCS slow to answer the media request: every reader arrives while the first fetch starts.
  proxy.slow((r) => isMedia(r), 400);
  const made = await requestsOf(async () => {
    const results = await Promise.all([1, 2, 3, 4].map(() => download(client, "dc/shared")));
    for (const r of results) expect(sha(r.bytes)).toBe(sha(data));
  });
  expect(made.filter(isMedia)).toHaveLength(1);
  expect(await client.getStats()).toMatchObject({ diskCacheEntries: 1, diskCacheMisses: 1, diskCacheHits: 3 });
  expect(cacheRow(daemon.storagePath, "dc/shared")).toMatchObject({ storedSize: data.length });
});

test("the bound: least recently used copies are evicted first, never past DISK_CACHE_MAX_MB; larger objects are never kept", async () => {
  const { client, daemon } = await daemonWith({ DISK_CACHE_MAX_MB: "2" });
  const objects = { a: randomBytes(900 * 1024), b: randomBytes(900 * 1024), c: randomBytes(900 * 1024), big: randomBytes(3 * MiB) };
  for (const [name, bytes] of Object.entries(objects)) await client.upload(`lru/${name}`, [bytes]);
  await download(client, "lru/a");
  await download(client, "lru/b");
  await download(client, "lru/a"); // a is now the most recently used
  await download(client, "lru/c"); // b goes
  expect(cachedKeys(daemon.storagePath)).toEqual(["lru/a", "lru/c"]);
  const stats = await client.getStats();
  expect(stats.diskCacheEntries).toBe(2);
  expect(stats.diskCacheBytes).toBeLessThanOrEqual(2 * MiB);
  expect(await metric(daemon, "fs_disk_cache_evictions_total")).toBe(1);

  expect(sha((await download(client, "lru/big")).bytes)).toBe(sha(objects.big));
  expect(cachedKeys(daemon.storagePath)).toEqual(["lru/a", "lru/c"]);
  const again = await requestsOf(() => download(client, "lru/big"));
  expect(again.filter(isMedia)).toHaveLength(1);
  // Files on disk match the rows: nothing evicted is left behind.
  const files = fs.readdirSync(path.join(daemon.storagePath, "disk-cache", "blobs"), { recursive: true, withFileTypes: true }).filter((e) => e.isFile());
  expect(files).toHaveLength(2);
});

test("the free-space floor: no copy is kept that would leave the disk below DISK_CACHE_MIN_FREE_MB; reads still work", async () => {
  const { client, daemon } = await daemonWith({ DISK_CACHE_MIN_FREE_MB: String(1024 * 1024) });
  const data = randomBytes(MiB);
  await client.upload("floor/a", [data]);
  expect(sha((await download(client, "floor/a")).bytes)).toBe(sha(data));
  expect(sha((await download(client, "floor/a")).bytes)).toBe(sha(data));
  expect(cachedKeys(daemon.storagePath)).toEqual([]);
  expect((await client.getStats()).diskCacheEntries).toBe(0);
});

test("copies survive a restart: the next daemon on the folder serves them with one metadata request", async () => {
  const dir = await makeTempDir("fs-disk-restart-");
  cleanups.push(() => dir.cleanup());
  const bucket = `fs-disk-restart-${process.pid}`;
  const data = randomBytes(2 * MiB + 3);
  const first = await daemonWith({ LOCAL_STORAGE_PATH: dir.path }, bucket);
  await first.client.upload("r/a", [data]);
  await download(first.client, "r/a");
  first.client.close();
  await first.daemon.stop();

  const second = await daemonWith({ LOCAL_STORAGE_PATH: dir.path }, bucket);
  expect((await second.client.getStats()).diskCacheEntries).toBe(1);
  const made = await requestsOf(async () => expect(sha((await download(second.client, "r/a")).bytes)).toBe(sha(data)));
  expect(made.filter(isMedia)).toHaveLength(0);
  expect(made.filter(isMetadataRead)).toHaveLength(1);
});

test("with encryption the cached copy is the stored (encrypted) bytes; a range of it still costs one request", async () => {
  const { client, daemon } = await daemonWith({ ENABLE_ENCRYPTION: "true", ENCRYPTION_KEY: randomBytes(32).toString("base64") });
  const marker = Buffer.from("PLAINTEXT-MARKER-".repeat(4));
  const data = Buffer.concat([marker, randomBytes(2 * MiB), marker]);
  await client.upload("enc/a", [data]);
  expect(sha((await download(client, "enc/a")).bytes)).toBe(sha(data));
  const row = cacheRow(daemon.storagePath, "enc/a")!;
  const onDisk = fs.readFileSync(cacheFile(daemon.storagePath, row.blob));
  expect(onDisk.length).toBeGreaterThan(data.length);
  expect(onDisk.includes(marker)).toBe(false);
  const offset = MiB + 5;
  const made = await requestsOf(async () => {
    const got = await download(client, "enc/a", { offset, limit: 70_000 });
    expect(got.bytes.equals(data.subarray(offset, offset + 70_000))).toBe(true);
  });
  expect(made.map(isMetadataRead)).toEqual([true]);
});

test("DISK_CACHE_ON_WRITE keeps what is written through the daemon once GCS committed it", async () => {
  const { client, daemon } = await daemonWith({ DISK_CACHE_ON_WRITE: "true" });
  const data = randomBytes(5 * MiB + 9);
  const info = await client.upload("w/a", [data]);
  expect(cacheRow(daemon.storagePath, "w/a")).toMatchObject({ generation: info.generation, storedSize: data.length });
  const made = await requestsOf(async () => expect(sha((await download(client, "w/a")).bytes)).toBe(sha(data)));
  expect(made.filter(isMedia)).toHaveLength(0);
  // An overwrite replaces the copy; a delete drops it.
  const v2 = randomBytes(100);
  const info2 = await client.store("w/a", v2);
  expect(cacheRow(daemon.storagePath, "w/a")).toMatchObject({ generation: info2.generation, storedSize: 100 });
  await client.delete("w/a");
  expect(cacheRow(daemon.storagePath, "w/a")).toBeUndefined();
});

describe("while GCS is unavailable", () => {
  test("a cached copy is served with cached_copy and backend LOCAL; a key not cached is UNAVAILABLE; back to GCS's after", async () => {
    const { client } = await daemonWith();
    const data = randomBytes(2 * MiB);
    await client.upload("out/cached", [data]);
    await client.upload("out/never-read", [randomBytes(10)]);
    await download(client, "out/cached");

    proxy.fail(() => true);
    const got = await download(client, "out/cached");
    expect(sha(got.bytes)).toBe(sha(data));
    expect(got.info).toMatchObject({ backend: "local", cachedCopy: true, pendingReplication: false });
    expect(await client.stat("out/cached")).toMatchObject({ backend: "local", cachedCopy: true });
    const ranged = await download(client, "out/cached", { offset: 10, limit: 20 });
    expect(ranged.bytes.equals(data.subarray(10, 30))).toBe(true);
    expect(await codeOf(client.retrieve("out/never-read"))).toBe("UNAVAILABLE");

    proxy.fail(undefined);
    await waitFor("GCS to serve again", async () => (await client.stat("out/cached").catch(() => null))?.backend === "gcs");
    expect(await client.stat("out/cached")).toMatchObject({ backend: "gcs", cachedCopy: false });
  });

  test("ListKeys is UNAVAILABLE, or with allow_partial lists pending writes over cached copies, marked partial", async () => {
    const { client } = await daemonWith();
    for (const k of ["p/a", "p/b", "p/c", "p/sub/d"]) await client.store(k, `v:${k}`);
    await client.upload("p/big", [randomBytes(MiB)]);
    for (const k of ["p/a", "p/b", "p/sub/d", "p/big"]) await client.retrieve(k); // cached (p/c never read)

    proxy.fail(() => true);
    await client.store("p/new", "written during the outage");
    await client.delete("p/b");
    expect(await codeOf(client.listKeys({ prefix: "p/" }))).toBe("UNAVAILABLE");
    const page = await client.listKeys({ prefix: "p/", allowPartial: true, includeInfo: true });
    expect(page.partial).toBe(true);
    expect(page.keys).toEqual(["p/a", "p/big", "p/new", "p/sub/d"]);
    const byKey = Object.fromEntries(page.objects.map((o) => [o.key, o]));
    expect(byKey["p/a"]).toMatchObject({ backend: "local", cachedCopy: true, pendingReplication: false });
    expect(byKey["p/new"]).toMatchObject({ backend: "local", cachedCopy: false, pendingReplication: true });
    const rolled = await client.listKeys({ prefix: "p/", delimiter: "/", allowPartial: true });
    expect([rolled.keys, rolled.prefixes, rolled.partial]).toEqual([["p/a", "p/big", "p/new"], ["p/sub/"], true]);
    // Pages of a partial listing follow on with their token.
    const first = await client.listKeys({ prefix: "p/", allowPartial: true, limit: 2 });
    const second = await client.listKeys({ prefix: "p/", allowPartial: true, limit: 2, pageToken: first.nextPageToken });
    expect([...first.keys, ...second.keys]).toEqual(["p/a", "p/big", "p/new", "p/sub/d"]);

    proxy.fail(undefined);
    await waitFor("the backlog to drain", async () => (await client.getStats().catch(() => undefined))?.pendingReplication === 0);
    const full = await client.listKeys({ prefix: "p/", allowPartial: true });
    expect([full.keys, full.partial]).toEqual([["p/a", "p/big", "p/c", "p/new", "p/sub/d"], false]);
  });
});

describe("a cached copy whose bytes rot on disk", () => {
  test("while GCS is up the read is served right from GCS, and the copy is fetched again (a repair)", async () => {
    const { client, daemon } = await daemonWith();
    const data = randomBytes(3 * MiB);
    await client.upload("rot/a", [data]);
    await download(client, "rot/a");
    const bad = cacheRow(daemon.storagePath, "rot/a")!;
    flipFileByte(cacheFile(daemon.storagePath, bad.blob), 2 * MiB + 100);

    expect(sha((await download(client, "rot/a")).bytes)).toBe(sha(data));
    await waitFor("the repair", async () => (await metric(daemon, "fs_repairs_total", '{tier="disk_cache"}')) === 1);
    expect(await metric(daemon, "fs_integrity_problems_total", '{tier="disk_cache",problem="corrupt"}')).toBe(1);
    const fresh = cacheRow(daemon.storagePath, "rot/a")!;
    expect(fresh.blob).not.toBe(bad.blob);
    // The new copy is good and served from disk again.
    const made = await requestsOf(async () => expect(sha((await download(client, "rot/a")).bytes)).toBe(sha(data)));
    expect(made.filter(isMedia)).toHaveLength(0);
  });

  test("a ranged read over the bad block is served right too", async () => {
    const { client, daemon } = await daemonWith();
    const data = randomBytes(4 * MiB);
    await client.upload("rot/r", [data]);
    await download(client, "rot/r");
    flipFileByte(cacheFile(daemon.storagePath, cacheRow(daemon.storagePath, "rot/r")!.blob), 2 * MiB + 1);
    const offset = MiB + 17;
    const got = await download(client, "rot/r", { offset, limit: 2 * MiB });
    expect(got.bytes.equals(data.subarray(offset, offset + 2 * MiB))).toBe(true);
  });

  test("while GCS is down the read fails DATA_LOSS after only good bytes, and the bad copy is dropped", async () => {
    const { client, daemon } = await daemonWith();
    const data = randomBytes(3 * MiB);
    await client.upload("rot/b", [data]);
    await download(client, "rot/b");
    flipFileByte(cacheFile(daemon.storagePath, cacheRow(daemon.storagePath, "rot/b")!.blob), MiB + 5);
    proxy.fail(() => true);
    const { stream } = await client.download("rot/b");
    const received: Buffer[] = [];
    const err = await (async () => {
      try {
        for await (const chunk of stream as AsyncIterable<Buffer>) received.push(chunk);
      } catch (e) {
        return e as { codeName?: string };
      }
      return undefined;
    })();
    expect(err?.codeName).toBe("DATA_LOSS");
    const got = Buffer.concat(received);
    // Never a wrong byte: what arrived is the object's first block(s), exactly.
    expect(got.length).toBeLessThanOrEqual(MiB);
    expect(got.equals(data.subarray(0, got.length))).toBe(true);
    expect(cacheRow(daemon.storagePath, "rot/b")).toBeUndefined();
  });
});
