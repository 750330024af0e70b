/**
 * Integrity that repairs itself, through the real gRPC server: one stored
 * byte corrupted on each tier (a local blob file, a small object's inline
 * bytes in index.sqlite, a disk-cache file, an object's bytes in the GCS
 * emulator rewritten with the SDK keeping its metadata), and what follows:
 * reads fail DATA_LOSS rather than return a wrong byte, a good copy on
 * another tier is served and the bad one repaired (fs_repairs_total{tier}),
 * Verify reports exactly the corrupt and orphaned copies, and the scrubber
 * finds (and repairs) them by itself.
 *
 * A local copy that GCS also holds (the same write) is the state a crash
 * between the replicator's copy and its bookkeeping leaves; it is made here
 * the same way: the storage folder is saved while a write is pending,
 * replicated, then put back.
 */
import { createHash, randomBytes } from "node:crypto";
import * as fs from "node:fs";
import { Storage } from "@google-cloud/storage";
import { FileStorageClient, type VerifyEvent, type VerifyFindingEvent, type VerifySummaryEvent } from "../../client/src/index.js";
import { gcsStorageOptions } from "../../server/backends/gcs/gcs-backend.js";
import { startDaemon, type TestDaemon } from "../support/daemon.js";
import { codeOf } from "../support/expect-failure.js";
import {
  cacheFile,
  cacheRow,
  flipFileByte,
  flipGcsByte,
  flipInlineByte,
  localBlobFile,
  localRow,
  plantOrphanBlob,
} from "../support/stored-copies.js";
import { startFakeGcs, type FakeGcs } from "../kit/fake-gcs.js";
import { startHttpFaultProxy, type HttpFaultProxy } from "../kit/http-fault-proxy.js";
import { makeTempDir, type TempDir } from "../kit/temp-dir.js";

const KiB = 1024;
const MiB = 1024 * KiB;
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
  while (cleanups.length > 0) await cleanups.pop()!();
});
afterAll(async () => {
  await proxy?.close();
  await gcs?.stop();
});

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

async function daemonWith(env: Record<string, string>): Promise<{ daemon: TestDaemon; client: FileStorageClient }> {
  const daemon = await startDaemon(env);
  const client = new FileStorageClient(daemon.address, { retries: 0 });
  cleanups.push(() => daemon.stop(), () => client.close());
  return { daemon, client };
}

const gcsEnv = (bucket: string, extra: Record<string, string> = {}) => ({
  GCS_BUCKET_NAME: bucket,
  GCS_PROJECT_ID: "test",
  GCS_API_ENDPOINT: proxy.url,
  MAX_RETRIES: "1",
  TIMEOUT_SECONDS: "5",
  GCS_BREAKER_RESET_SECONDS: "0.2",
  ...extra,
});
const newBucket = () => `fs-integrity-${process.pid}-${++bucketCounter}`;

async function verifyAll(client: FileStorageClient, opts: { prefix?: string; includeGcs?: boolean; repair?: boolean } = {}) {
  const events: VerifyEvent[] = [];
  for await (const event of client.verify(opts)) events.push(event);
  const findings = events.filter((e): e is VerifyFindingEvent => e.type === "finding");
  const summary = events.find((e): e is VerifySummaryEvent => e.type === "summary")!;
  expect(events[events.length - 1]).toBe(summary);
  return { events, findings, summary };
}

/** Findings as [problem, tier, key] rows, sorted, for exact comparison. */
const rows = (findings: VerifyFindingEvent[]) => findings.map((f) => [f.problem, f.tier, f.key]).sort();

async function download(client: FileStorageClient, key: string): Promise<Buffer> {
  const { stream } = await client.download(key);
  const parts: Buffer[] = [];
  for await (const chunk of stream as AsyncIterable<Buffer>) parts.push(chunk);
  return Buffer.concat(parts);
}

async function metric(d: TestDaemon, name: string, labels = ""): Promise<number> {
  const text = await d.server.metrics.registry.metrics();
  const line = text.split("\n").find((l) => l.startsWith(`${name}${labels} `));
  return line === undefined ? 0 : Number(line.split(" ").pop());
}

async function waitFor(what: string, cond: () => Promise<boolean> | boolean, timeoutMs = 15_000): Promise<void> {
  const started = Date.now();
  while (!(await cond())) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("the local tier alone (embedded mode): no other copy", () => {
  test("a corrupt blob file and a corrupt inline row fail DATA_LOSS; Verify reports exactly them and an orphan blob", async () => {
    // The in-memory cache would keep the good bytes of the writes themselves.
    const { daemon, client } = await daemonWith({ ENABLE_CACHE: "false" });
    const large = randomBytes(200 * KiB);
    await client.store("e/good", randomBytes(100 * KiB));
    await client.store("e/large", large);
    await client.store("e/small", "a small object, kept inline in the index");
    flipFileByte(localBlobFile(daemon.storagePath, localRow(daemon.storagePath, "e/large")!.blob!), 150 * KiB);
    flipInlineByte(daemon.storagePath, "e/small", 3);
    const orphan = plantOrphanBlob(daemon.storagePath, 5 * 60_000);

    expect(await codeOf(client.retrieve("e/small"))).toBe("DATA_LOSS");
    expect(await codeOf(client.retrieve("e/large"))).toBe("DATA_LOSS");
    expect(await codeOf(download(client, "e/large"))).toBe("DATA_LOSS");

    const { findings, summary } = await verifyAll(client);
    expect(rows(findings)).toEqual([
      ["corrupt", "local", "e/large"],
      ["corrupt", "local", "e/small"],
      ["orphan", "local", ""],
    ]);
    expect(findings.find((f) => f.problem === "orphan")!.detail).toContain(orphan);
    expect(summary).toMatchObject({ checkedCopies: 3, corrupt: 2, orphans: 1, repaired: 0 });
    // A prefix limits the check (and leaves orphans, which have no key, out).
    expect(rows((await verifyAll(client, { prefix: "e/l" })).findings)).toEqual([["corrupt", "local", "e/large"]]);

    // Repair can only remove the orphan: there is no good copy of the others.
    const repaired = await verifyAll(client, { repair: true });
    expect(repaired.findings.map((f) => [f.key, f.repaired])).toEqual([
      ["e/large", false],
      ["e/small", false],
      ["", true],
    ]);
    expect(fs.existsSync(localBlobFile(daemon.storagePath, orphan))).toBe(false);
    expect(rows((await verifyAll(client)).findings)).toEqual([
      ["corrupt", "local", "e/large"],
      ["corrupt", "local", "e/small"],
    ]);
    expect(await metric(daemon, "fs_integrity_problems_total", '{tier="local",problem="corrupt"}')).toBeGreaterThanOrEqual(6);
  });

  test("the scrubber finds them by itself, at its rate", async () => {
    const { daemon, client } = await daemonWith({ SCRUB_BYTES_PER_SECOND: "4MiB", SCRUB_INTERVAL_SECONDS: "1" });
    await client.store("s/good", randomBytes(6 * MiB));
    await client.store("s/bad", randomBytes(2 * MiB));
    flipFileByte(localBlobFile(daemon.storagePath, localRow(daemon.storagePath, "s/bad")!.blob!), MiB);
    await waitFor("the scrubber's finding", async () => (await metric(daemon, "fs_integrity_problems_total", '{tier="local",problem="corrupt"}')) >= 1);
    // A pass over 8 MiB at 4 MiB/s (one second's worth at once) takes at least a second.
    const started = Date.now();
    const summary = await daemon.server.stack.scrub();
    expect(summary).toMatchObject({ checkedCopies: 2, corrupt: 1 });
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    expect(await metric(daemon, "fs_scrubbed_bytes_total")).toBeGreaterThanOrEqual(8 * MiB);
  });
});

describe("the disk cache", () => {
  test("Verify reports exactly a corrupt copy, an entry whose file is gone and a file no entry names; repair re-fetches and removes", async () => {
    const { daemon, client } = await daemonWith(gcsEnv(newBucket(), { ENABLE_CACHE: "false" }));
    const data = { bad: randomBytes(3 * MiB), gone: randomBytes(MiB), good: randomBytes(MiB) };
    for (const [k, v] of Object.entries(data)) {
      await client.upload(`c/${k}`, [v]);
      await download(client, `c/${k}`);
    }
    flipFileByte(cacheFile(daemon.storagePath, cacheRow(daemon.storagePath, "c/bad")!.blob), 2 * MiB + 9);
    fs.rmSync(cacheFile(daemon.storagePath, cacheRow(daemon.storagePath, "c/gone")!.blob));
    plantOrphanBlob(daemon.storagePath, 5 * 60_000, "disk-cache/blobs");

    const { findings, summary } = await verifyAll(client);
    expect(rows(findings)).toEqual([
      ["corrupt", "disk-cache", "c/bad"],
      ["orphan", "disk-cache", ""],
      ["orphan", "disk-cache", "c/gone"],
    ]);
    expect(findings.find((f) => f.key === "c/bad")!.detail).toBe("block 3 of 3 fails its CRC32C");
    // GCS holds the three objects, not checked unless asked; the local tier holds none.
    expect(summary).toMatchObject({ checkedCopies: 3, corrupt: 1, orphans: 2 });

    const repaired = await verifyAll(client, { repair: true });
    expect(repaired.findings.map((f) => [f.key, f.repaired, f.repair]).sort()).toEqual([
      ["", true, "removed"],
      ["c/bad", true, "re-fetched from GCS"],
      ["c/gone", true, "entry removed"],
    ]);
    expect(await metric(daemon, "fs_repairs_total", '{tier="disk_cache"}')).toBe(1);
    const clean = await verifyAll(client, { includeGcs: true });
    expect(clean.findings).toEqual([]);
    expect(clean.summary).toMatchObject({ corrupt: 0, orphans: 0, checkedCopies: 5 });
    expect(sha(await download(client, "c/bad"))).toBe(sha(data.bad));
  });

  test("the scrubber repairs a corrupt copy before anyone reads it", async () => {
    const { daemon, client } = await daemonWith(gcsEnv(newBucket(), { ENABLE_CACHE: "false", SCRUB_BYTES_PER_SECOND: "64MiB", SCRUB_INTERVAL_SECONDS: "1" }));
    const data = randomBytes(2 * MiB);
    await client.upload("sc/a", [data]);
    await download(client, "sc/a");
    const bad = cacheRow(daemon.storagePath, "sc/a")!;
    flipFileByte(cacheFile(daemon.storagePath, bad.blob), 5);
    await waitFor("the scrubber's repair", async () => (await metric(daemon, "fs_repairs_total", '{tier="disk_cache"}')) === 1);
    expect(await metric(daemon, "fs_integrity_problems_total", '{tier="disk_cache",problem="corrupt"}')).toBe(1);
    expect(cacheRow(daemon.storagePath, "sc/a")!.blob).not.toBe(bad.blob);
  });
});

describe("a pending local copy of a write GCS holds too (a crash between the copy and its bookkeeping)", () => {
  let dir: TempDir;
  let saved: TempDir;
  let bucket: string;
  const small = Buffer.from("small, kept inline in the index: ".repeat(8));
  const large = randomBytes(300 * KiB);

  /** Leaves `dir` holding pending writes of x/small and x/large that GCS also holds. */
  async function pendingCopiesGcsHolds(): Promise<void> {
    dir = await makeTempDir("fs-integrity-folder-");
    saved = await makeTempDir("fs-integrity-saved-");
    cleanups.push(() => dir.cleanup(), () => saved.cleanup());
    bucket = newBucket();
    const env = gcsEnv(bucket, { LOCAL_STORAGE_PATH: dir.path, REPLICATION_INTERVAL_MS: "3600000" });
    const first = await startDaemon(env);
    const c1 = new FileStorageClient(first.address, { retries: 0 });
    await c1.store("x/warm", "GCS answers");
    proxy.fail(() => true);
    expect(await c1.store("x/small", small)).toMatchObject({ pendingReplication: true });
    expect(await c1.store("x/large", large)).toMatchObject({ pendingReplication: true });
    c1.close();
    await first.stop();
    proxy.fail(undefined);
    fs.cpSync(dir.path, saved.path, { recursive: true });
    const second = await startDaemon(env);
    expect(await second.server.stack.replicate()).toMatchObject({ remaining: 0 });
    await second.stop();
    // Back to the folder as it was before the copy was booked: the writes are pending again.
    fs.rmSync(dir.path, { recursive: true, force: true });
    fs.cpSync(saved.path, dir.path, { recursive: true });
    expect((await sdk.bucket(bucket).file("x/large").download())[0].equals(large)).toBe(true);
  }

  test("the local copy is bad: the read is served from GCS's copy and the local one retired (fs_repairs_total{tier=local})", async () => {
    await pendingCopiesGcsHolds();
    flipInlineByte(dir.path, "x/small", 5);
    flipFileByte(localBlobFile(dir.path, localRow(dir.path, "x/large")!.blob!), 200 * KiB);
    const { daemon, client } = await daemonWith(gcsEnv(bucket, { LOCAL_STORAGE_PATH: dir.path, REPLICATION_INTERVAL_MS: "3600000" }));
    expect(rows((await verifyAll(client)).findings)).toEqual([
      ["corrupt", "local", "x/large"],
      ["corrupt", "local", "x/small"],
    ]);

    // Small: checked whole before its first byte, so this very read is GCS's.
    const got = await client.retrieveWithInfo<Buffer>("x/small");
    expect(got!.data.equals(small)).toBe(true);
    expect(got!.info).toMatchObject({ backend: "gcs", pendingReplication: false });
    expect(await metric(daemon, "fs_repairs_total", '{tier="local"}')).toBe(1);
    expect(localRow(dir.path, "x/small")).toBeUndefined();

    // Large: checked at its end, so this read fails DATA_LOSS (never a wrong byte), and the next one is GCS's.
    expect(await codeOf(download(client, "x/large"))).toBe("DATA_LOSS");
    await waitFor("the repair", async () => (await metric(daemon, "fs_repairs_total", '{tier="local"}')) === 2);
    expect(sha(await download(client, "x/large"))).toBe(sha(large));
    expect((await client.getStats()).pendingReplication).toBe(0);
    expect((await verifyAll(client, { includeGcs: true })).findings).toEqual([]);
  });

  test("GCS's copy is bad: Verify finds it, and with repair re-copies the intact local one (fs_repairs_total{tier=gcs})", async () => {
    await pendingCopiesGcsHolds();
    await flipGcsByte(sdk.bucket(bucket), "x/large", 1000);
    await flipGcsByte(sdk.bucket(bucket), "x/small", 0);
    const { daemon, client } = await daemonWith(gcsEnv(bucket, { LOCAL_STORAGE_PATH: dir.path, REPLICATION_INTERVAL_MS: "3600000" }));
    // The local copies are intact and still serve the keys.
    expect(sha(await download(client, "x/large"))).toBe(sha(large));

    const found = await verifyAll(client, { includeGcs: true });
    expect(rows(found.findings)).toEqual([
      ["corrupt", "gcs", "x/large"],
      ["corrupt", "gcs", "x/small"],
    ]);
    expect(found.summary).toMatchObject({ corrupt: 2, repaired: 0 });

    const fixed = await verifyAll(client, { includeGcs: true, repair: true });
    expect(fixed.findings.map((f) => [f.key, f.repaired]).sort()).toEqual([
      ["x/large", true],
      ["x/small", true],
    ]);
    expect(await metric(daemon, "fs_repairs_total", '{tier="gcs"}')).toBe(2);
    expect((await sdk.bucket(bucket).file("x/large").download())[0].equals(large)).toBe(true);
    expect((await client.getStats()).pendingReplication).toBe(0);
    expect((await verifyAll(client, { includeGcs: true })).findings).toEqual([]);
    expect(sha(await download(client, "x/large"))).toBe(sha(large));
  });

  test("GCS's copy is bad: the replicator checks it before booking the write as copied, and copies it again", async () => {
    await pendingCopiesGcsHolds();
    await flipGcsByte(sdk.bucket(bucket), "x/large", 7);
    const { daemon } = await daemonWith(gcsEnv(bucket, { LOCAL_STORAGE_PATH: dir.path, REPLICATION_INTERVAL_MS: "3600000" }));
    expect(await daemon.server.stack.replicate()).toMatchObject({ remaining: 0 });
    expect(await metric(daemon, "fs_repairs_total", '{tier="gcs"}')).toBe(1);
    expect((await sdk.bucket(bucket).file("x/large").download())[0].equals(large)).toBe(true);
  });
});

test("a GCS copy with no good copy anywhere: reads fail DATA_LOSS, Verify reports it and cannot repair it", async () => {
  const bucket = newBucket();
  // The in-memory cache would keep the good bytes of the write itself.
  const { client } = await daemonWith(gcsEnv(bucket, { ENABLE_CACHE: "false" }));
  const data = randomBytes(300 * KiB);
  await client.store("g/a", data);
  await client.store("g/b", "fine");
  await flipGcsByte(sdk.bucket(bucket), "g/a", 123);
  expect(await codeOf(client.retrieve("g/a"))).toBe("DATA_LOSS");
  expect(await codeOf(download(client, "g/a"))).toBe("DATA_LOSS");
  const { findings, summary } = await verifyAll(client, { includeGcs: true, repair: true });
  expect(findings.map((f) => [f.problem, f.tier, f.key, f.repaired])).toEqual([["corrupt", "gcs", "g/a", false]]);
  expect(summary).toMatchObject({ corrupt: 1, repaired: 0 });
  // Without include_gcs GCS is not read.
  expect((await verifyAll(client)).findings).toEqual([]);
});
