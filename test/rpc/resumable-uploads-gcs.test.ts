/**
 * Resumable uploads with GCS as the primary tier, through the real gRPC
 * server and the real fake-gcs-server emulator: sessions live on the local
 * tier whatever the primary (their bytes need no GCS while they arrive); a
 * completed upload is written to GCS, or, during an outage, to the local
 * tier with an outbox entry that the replicator then copies to GCS.
 */
import { createHash, randomBytes } from "node:crypto";
import { Storage } from "@google-cloud/storage";
import { FileStorageClient } from "../../client/src/index.js";
import { gcsStorageOptions } from "../../server/backends/gcs/gcs-backend.js";
import { startDaemon, type TestDaemon } from "../support/daemon.js";
import { hasLiveObject } from "../support/gcs-objects.js";
import { startFakeGcs, type FakeGcs } from "../kit/fake-gcs.js";
import { startProxy, type TcpProxy } from "../kit/tcp-proxy.js";
import { startHttpFaultProxy } from "../kit/http-fault-proxy.js";
import { crcOf, openStream, queryUpload, sendStream, uploadFiles } from "../support/upload-streams.js";
import { rawClient } from "../support/raw-client.js";

const BUCKET = "fs-resumable-gcs";
const KiB = 1024;
const MiB = 1024 * KiB;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let gcs: FakeGcs;
let link: TcpProxy;
let daemon: TestDaemon;
let client: FileStorageClient;
let sdk: Storage;

beforeAll(async () => {
  gcs = await startFakeGcs();
  // The daemon reaches GCS through a link the tests can cut (an outage for this daemon only).
  link = await startProxy(gcs.port);
  daemon = await startDaemon({
    GCS_BUCKET_NAME: BUCKET,
    GCS_PROJECT_ID: "test",
    GCS_API_ENDPOINT: link.url,
    MAX_RETRIES: "1",
    TIMEOUT_SECONDS: "2",
    REPLICATION_INTERVAL_MS: "200",
    ENABLE_CACHE: "false",
  });
  client = new FileStorageClient(daemon.address, { retries: 0, deadlineMs: 20_000 });
  sdk = new Storage(gcsStorageOptions({ apiEndpoint: gcs.url, projectId: "test", timeoutMs: 5000 }));
});
afterAll(async () => {
  client?.close();
  await daemon?.stop();
  await link?.close();
  await gcs?.stop();
});

async function waitFor(what: string, cond: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await sleep(50);
  }
}

/** `bytes` in messages of 1 MiB (the daemon takes at most 4 MiB per message). */
const pieces = (bytes: Buffer) => Array.from({ length: Math.ceil(bytes.length / MiB) }, (_, i) => bytes.subarray(i * MiB, (i + 1) * MiB));
const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const gcsSha = async (key: string) => sha256((await sdk.bucket(BUCKET).file(key).download())[0]);

/** Sends `bytes` under `id` and breaks the stream once the daemon has committed them. */
async function committedThenBroken(key: string, id: string, bytes: Buffer, size: number): Promise<void> {
  const raw = rawClient(daemon.address);
  try {
    const s = openStream(raw, { key, uploadId: id, size, chunks: pieces(bytes) });
    await s.written;
    await waitFor(`upload ${id} committed`, async () => Number((await queryUpload(daemon.address, id)).res?.committedSize) === bytes.length);
    s.cancel();
    await s.result;
  } finally {
    raw.close();
  }
}

test("with GCS as primary the session lives on the local tier; the completed upload is written to GCS", async () => {
  const a = randomBytes(6 * MiB + 3);
  const b = randomBytes(2 * MiB);
  const size = a.length + b.length;
  await committedThenBroken("g/model.bin", "gcs-1", a, size);
  expect((await uploadFiles(daemon.storagePath)).map((f) => f.size)).toEqual([a.length]);
  expect(await hasLiveObject(sdk.bucket(BUCKET), "g/model.bin")).toBe(false);

  const done = await sendStream(daemon.address, { key: "g/model.bin", uploadId: "gcs-1", size, writeOffset: a.length, chunks: pieces(b), trailer: { crc32c: crcOf(a, b) } });
  expect(done.err).toBeNull();
  const info = done.res!.object!;
  expect([Number(info.size), info.pendingReplication]).toEqual([size, false]);
  expect(await gcsSha("g/model.bin")).toBe(sha256(Buffer.concat([a, b])));
  const [md] = await sdk.bucket(BUCKET).file("g/model.bin").getMetadata();
  expect(BigInt(md.generation!)).toBe(info.generation);
  expect(await uploadFiles(daemon.storagePath)).toEqual([]);
});

test("during an outage the bytes keep arriving and the completion lands in the outbox; the replicator copies it to GCS when GCS returns", async () => {
  const a = randomBytes(3 * MiB);
  const b = randomBytes(MiB + 7);
  const size = a.length + b.length;
  await committedThenBroken("g/outage.bin", "gcs-2", a, size);
  link.cut();
  try {
    const done = await sendStream(daemon.address, { key: "g/outage.bin", uploadId: "gcs-2", size, writeOffset: a.length, chunks: pieces(b), trailer: { crc32c: crcOf(a, b) } });
    expect(done.err).toBeNull();
    const info = done.res!.object!;
    expect(info.pendingReplication).toBe(true);
    expect((await client.getStats()).pendingReplication).toBe(1);
    // Readable from the local copy during the outage.
    const { stream } = await client.download("g/outage.bin");
    const hash = createHash("sha256");
    for await (const chunk of stream) hash.update(chunk as Buffer);
    expect(hash.digest("hex")).toBe(sha256(Buffer.concat([a, b])));
    // The session knows its object.
    expect((await queryUpload(daemon.address, "gcs-2")).res?.object?.generation).toBe(info.generation);
  } finally {
    link.restore();
  }
  await waitFor("the replicator to copy the upload to GCS", async () => (await client.getStats()).pendingReplication === 0);
  expect(await gcsSha("g/outage.bin")).toBe(sha256(Buffer.concat([a, b])));
});

test("a resumable upload through the client package completes into GCS", async () => {
  const data = randomBytes(5 * MiB);
  const info = await client.upload("g/client.bin", [data], { resumable: true });
  expect(info.backend).toBe("gcs");
  expect(await gcsSha("g/client.bin")).toBe(sha256(data));
});

test("GCS failing the upload itself, after the daemon read the session's file: the completion is replayed on the local tier (outbox)", async () => {
  const faults = await startHttpFaultProxy(gcs.port);
  const d = await startDaemon({
    GCS_BUCKET_NAME: "fs-resumable-gcs-faults",
    GCS_PROJECT_ID: "test",
    GCS_API_ENDPOINT: faults.url,
    MAX_RETRIES: "0",
    TIMEOUT_SECONDS: "2",
    REPLICATION_INTERVAL_MS: "200",
    ENABLE_CACHE: "false",
  });
  const c = new FileStorageClient(d.address, { retries: 0 });
  try {
    const data = randomBytes(3 * MiB);
    // Reads of metadata pass; every upload request fails, as a GCS that breaks mid-write would.
    faults.fail((req) => req.url.includes("/upload/"), 503);
    // One stream, answered at once (no client retrying until the breaker opens).
    const done = await sendStream(d.address, { key: "g/replayed.bin", uploadId: "replayed-1", chunks: pieces(data), trailer: { crc32c: crcOf(data) } });
    expect(done.err).toBeNull();
    expect(done.res!.object!.pendingReplication).toBe(true);
    expect(faults.requests.some((r) => r.url.includes("/upload/"))).toBe(true);
    faults.fail(undefined);
    await waitFor("the replicator to copy it", async () => (await c.getStats()).pendingReplication === 0);
    expect(sha256((await sdk.bucket("fs-resumable-gcs-faults").file("g/replayed.bin").download())[0])).toBe(sha256(data));
  } finally {
    c.close();
    await d.stop();
    await faults.close();
  }
});
