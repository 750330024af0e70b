/**
 * Resumable uploads (DESIGN.md "Contract additions") through the real gRPC
 * server on the local tier: StoreStream with an upload_id and write_offset,
 * QueryUpload. Each stream is driven at the wire level (test/support/
 * upload-streams.ts) so a test decides exactly what arrives and how the
 * stream ends; the client package's resuming upload() is tested in
 * resumable-client.test.ts, GCS as the primary in resumable-uploads-gcs.test.ts.
 */
import { randomBytes } from "node:crypto";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import * as grpc from "@grpc/grpc-js";
import { FileStorageClient } from "../../client/src/index.js";
import { DataKind } from "../../gen/filestorage/v1/file_storage_pb.js";
import { startDaemon, type TestDaemon } from "../support/daemon.js";
import { makeTempDir } from "../kit/temp-dir.js";
import { crcOf, openStream, queryUpload, sendStream, uploadFiles, waitForUploadBytes } from "../support/upload-streams.js";
import { rawClient } from "../support/raw-client.js";

const KiB = 1024;
const MiB = 1024 * KiB;
let counter = 0;
const newId = (label: string) => `${label}-${process.pid}-${++counter}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The object under `key` holds exactly `parts` (compared as buffers: jest's deep equality is slow on MiBs). */
async function expectBytes(c: FileStorageClient, key: string, ...parts: Buffer[]): Promise<void> {
  const got = (await c.retrieve(key)) as Buffer;
  const want = Buffer.concat(parts);
  expect(got.length).toBe(want.length);
  expect(got.equals(want)).toBe(true);
}

/**
 * Sends `spec`'s chunks and breaks the stream once the daemon has committed
 * them (a stream that stalls gets its bytes checkpointed within a second).
 */
async function sendThenBreak(d: TestDaemon, spec: Parameters<typeof openStream>[1], committed: number) {
  const client = rawClient(d.address);
  try {
    const s = openStream(client, spec);
    await s.written;
    await committedBecomes(d.address, spec.uploadId, committed, spec.token);
    s.cancel();
    const { err } = await s.result;
    expect(err?.code).toBe(grpc.status.CANCELLED);
  } finally {
    client.close();
  }
}

/** Waits until QueryUpload reports `size` committed (the daemon checkpoints a broken stream as it notices the break). */
async function committedBecomes(address: string, id: string, size: number, token?: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const { err, res } = await queryUpload(address, id, token);
    if (!err && Number(res!.committedSize) === size) return;
    if (Date.now() > deadline) throw new Error(`upload ${id} never reported ${size} committed: ${err?.details ?? res?.committedSize}`);
    await sleep(20);
  }
}

describe("resumable uploads on the local tier", () => {
  let daemon: TestDaemon;
  let client: FileStorageClient;

  beforeAll(async () => {
    daemon = await startDaemon();
    client = new FileStorageClient(daemon.address, { retries: 0 });
  });
  afterAll(async () => {
    client.close();
    await daemon?.stop();
  });

  test("a broken stream leaves its bytes committed; a resume at the committed size completes the object, its trailer's CRC32C covering the whole", async () => {
    const id = newId("resume");
    const a = randomBytes(3 * MiB + 17);
    const b = randomBytes(2 * MiB + 5);
    const size = a.length + b.length;
    await sendThenBreak(daemon, { key: "r/whole", uploadId: id, size, chunks: [a.subarray(0, MiB), a.subarray(MiB)] }, a.length);
    await committedBecomes(daemon.address, id, a.length);
    const mid = await queryUpload(daemon.address, id);
    expect(mid.res!.complete).toBe(false);
    expect(mid.res!.object).toBeUndefined();
    expect(await client.exists("r/whole")).toBe(false);

    const done = await sendStream(daemon.address, { key: "r/whole", uploadId: id, size, writeOffset: a.length, chunks: [b], trailer: { crc32c: crcOf(a, b), size } });
    expect(done.err).toBeNull();
    expect(Number(done.res!.object!.size)).toBe(size);
    expect(done.res!.object!.crc32c).toBe(crcOf(a, b));
    await expectBytes(client, "r/whole", a, b);

    const after = await queryUpload(daemon.address, id);
    expect(after.res!.complete).toBe(true);
    expect(Number(after.res!.committedSize)).toBe(size);
    expect(after.res!.object!.generation).toBe(done.res!.object!.generation);
    // Completed: the session's file is gone, only its record stays.
    expect(await uploadFiles(daemon.storagePath)).toEqual([]);
  });

  test("a stream that breaks gets what arrived checkpointed at once (fsynced and recorded), not at the next timed checkpoint", async () => {
    // A daemon of its own: its uploads/ holds this upload's file only.
    const d = await startDaemon();
    const raw = rawClient(d.address);
    try {
      const id = newId("at-once");
      const chunks = [randomBytes(MiB), randomBytes(MiB), randomBytes(MiB)];
      const s = openStream(raw, { key: "r/at-once", uploadId: id, chunks });
      await s.written;
      // Whole MiB chunks reach the file as they arrive; none is committed before a checkpoint.
      await waitForUploadBytes(d.storagePath, 3 * MiB);
      const started = Date.now();
      s.cancel();
      await s.result;
      // QueryUpload waits for the broken stream's last checkpoint: all 3 MiB, well before the 1 s timer.
      const q = await queryUpload(d.address, id);
      expect(Number(q.res?.committedSize)).toBe(3 * MiB);
      expect(Date.now() - started).toBeLessThan(900);
      // No declared size, no trailer: only the cancel tells this stream from a half-close. It did not complete.
      expect(q.res?.complete).toBe(false);
      const c = new FileStorageClient(d.address);
      expect(await c.exists("r/at-once")).toBe(false);

      // The same holds for a one-shot stream: a cancel stores nothing.
      const oneShot = openStream(raw, { key: "r/one-shot", uploadId: "", chunks });
      await oneShot.written;
      await sleep(200);
      oneShot.cancel();
      expect((await oneShot.result).err?.code).toBe(grpc.status.CANCELLED);
      await sleep(200);
      expect(await c.exists("r/one-shot")).toBe(false);
      c.close();
    } finally {
      raw.close();
      await d.stop();
    }
  });

  test("on the local tier a completed upload keeps the session's file as its blob (linked, not copied) when it is stored as it is", async () => {
    const d = await startDaemon();
    const c = new FileStorageClient(d.address);
    try {
      const id = newId("linked");
      const a = randomBytes(4 * MiB);
      await sendThenBreak(d, { key: "r/linked", uploadId: id, chunks: [a.subarray(0, 2 * MiB), a.subarray(2 * MiB)] }, a.length);
      const [file] = await uploadFiles(d.storagePath);
      const inode = (await fs.stat(path.join(d.storagePath, "uploads", file!.name))).ino;
      const done = await sendStream(d.address, { key: "r/linked", uploadId: id, writeOffset: a.length, chunks: [], trailer: { crc32c: crcOf(a) } });
      expect(done.err).toBeNull();
      const blobs: number[] = [];
      for (const shard of await fs.readdir(path.join(d.storagePath, "blobs"))) {
        for (const name of await fs.readdir(path.join(d.storagePath, "blobs", shard))) blobs.push((await fs.stat(path.join(d.storagePath, "blobs", shard, name))).ino);
      }
      expect(blobs).toEqual([inode]);
      expect(await uploadFiles(d.storagePath)).toEqual([]);
      await expectBytes(c, "r/linked", a);
    } finally {
      c.close();
      await d.stop();
    }
  });

  test("a resume never writes into bytes the session's file shares with another name (a blob linked by a completion that was not recorded)", async () => {
    const d = await startDaemon();
    const c = new FileStorageClient(d.address);
    try {
      const id = newId("shared");
      const a = randomBytes(2 * MiB);
      const b = randomBytes(MiB);
      await sendThenBreak(d, { key: "r/shared", uploadId: id, chunks: [a] }, a.length);
      const [file] = await uploadFiles(d.storagePath);
      // What a completion that linked the file as a blob and then crashed leaves: a second name for the same bytes.
      const other = path.join(d.storagePath, "tmp", "second-name");
      await fs.link(path.join(d.storagePath, "uploads", file!.name), other);
      const done = await sendStream(d.address, { key: "r/shared", uploadId: id, writeOffset: a.length, chunks: [b], trailer: { crc32c: crcOf(Buffer.concat([a, b])) } });
      expect(done.err).toBeNull();
      expect((await fs.readFile(other)).equals(a)).toBe(true);
      await expectBytes(c, "r/shared", a, b);
    } finally {
      c.close();
      await d.stop();
    }
  });

  test("an upload the codec compresses or encrypts is written through it (not linked) and reads back the same", async () => {
    const d = await startDaemon({ ENABLE_ENCRYPTION: "true", ENCRYPTION_KEY: randomBytes(32).toString("base64") });
    const c = new FileStorageClient(d.address);
    try {
      const text = Buffer.from(JSON.stringify(Array.from({ length: 60_000 }, (_, i) => ({ i, name: `item ${i}` }))));
      const id = newId("encoded");
      const half = Math.floor(text.length / 2);
      await sendThenBreak(d, { key: "r/encoded.json", uploadId: id, kind: DataKind.JSON, contentType: "application/json", chunks: [text.subarray(0, half)] }, half);
      const done = await sendStream(d.address, { key: "r/encoded.json", uploadId: id, kind: DataKind.JSON, contentType: "application/json", writeOffset: half, chunks: [text.subarray(half)], trailer: { crc32c: crcOf(text) } });
      expect(done.err).toBeNull();
      expect([done.res!.object!.compressed, done.res!.object!.encrypted]).toEqual([true, true]);
      expect(Number(done.res!.object!.storedSize)).toBeLessThan(text.length / 2);
      expect(await c.retrieve("r/encoded.json")).toEqual(JSON.parse(text.toString()));
    } finally {
      c.close();
      await d.stop();
    }
  });

  test("a resume at another offset is OUT_OF_RANGE naming the committed size, and changes nothing", async () => {
    const id = newId("offset");
    const a = randomBytes(100 * KiB);
    await sendThenBreak(daemon, { key: "r/offset", uploadId: id, chunks: [a] }, a.length);
    await committedBecomes(daemon.address, id, a.length);
    for (const writeOffset of [0, a.length - 1, a.length + 1]) {
      const { err } = await sendStream(daemon.address, { key: "r/offset", uploadId: id, writeOffset, chunks: [randomBytes(10)] });
      expect([err?.code, err?.details]).toEqual([
        grpc.status.OUT_OF_RANGE,
        `write_offset ${writeOffset} is not where upload "${id}" continues: its committed size is ${a.length} bytes; resume at write_offset ${a.length}`,
      ]);
    }
    await committedBecomes(daemon.address, id, a.length);
    const b = randomBytes(10);
    const { err } = await sendStream(daemon.address, { key: "r/offset", uploadId: id, writeOffset: a.length, chunks: [b], trailer: { crc32c: crcOf(a, b) } });
    expect(err).toBeNull();
    await expectBytes(client, "r/offset", a, b);
  });

  test("a resume with another key or another header field is INVALID_ARGUMENT naming it, and changes nothing", async () => {
    const id = newId("header");
    const first = { key: "r/header", uploadId: id, size: 300 * KiB, contentType: "application/x-model", metadata: { tags: ["a", "b"], n: 1 }, kind: DataKind.BYTES };
    const a = randomBytes(100 * KiB);
    await sendThenBreak(daemon, { ...first, chunks: [a] }, a.length);
    await committedBecomes(daemon.address, id, a.length);
    const resume = { ...first, writeOffset: a.length, chunks: [randomBytes(10)] };
    const changes: [string, object][] = [
      ["key", { key: "r/other" }],
      ["kind", { kind: DataKind.TEXT }],
      ["content_type", { contentType: "text/plain" }],
      ["metadata", { metadata: { tags: ["a"], n: 1 } }],
      ["size", { size: 300 * KiB + 1 }],
      ["size", { size: undefined }],
      ["if_generation_match", { ifGenerationMatch: 0n }],
      ["expires_at", { expiresAt: Date.now() + 3600_000 }],
    ];
    for (const [field, change] of changes) {
      const { err } = await sendStream(daemon.address, { ...resume, ...change });
      const expected =
        field === "key"
          ? `upload "${id}" was started for another key: a resume must repeat its key`
          : `upload "${id}" was started with another ${field}: a resume must repeat the header of its first stream`;
      expect({ field, code: err?.code, details: err?.details }).toEqual({ field, code: grpc.status.INVALID_ARGUMENT, details: expected });
    }
    // The same metadata in another key order is the same header.
    const b = randomBytes(200 * KiB);
    const { err } = await sendStream(daemon.address, { ...resume, metadata: { n: 1, tags: ["a", "b"] }, chunks: [b], trailer: { crc32c: crcOf(a, b) } });
    expect(err).toBeNull();
    expect(await client.exists("r/other")).toBe(false);
    expect((await client.stat("r/header"))?.contentType).toBe("application/x-model");
  });

  test("unknown and malformed ids: QueryUpload NOT_FOUND, a resume NOT_FOUND, a bad id or an offset without one INVALID_ARGUMENT", async () => {
    const unknown = await queryUpload(daemon.address, "never-started");
    expect([unknown.err?.code, unknown.err?.details]).toEqual([grpc.status.NOT_FOUND, 'upload "never-started" is unknown or expired']);
    const resume = await sendStream(daemon.address, { key: "r/unknown", uploadId: "never-started", writeOffset: 5, chunks: [randomBytes(5)] });
    expect([resume.err?.code, resume.err?.details]).toEqual([
      grpc.status.NOT_FOUND,
      'upload "never-started" is unknown or expired: start it again with write_offset 0',
    ]);
    for (const bad of ["a".repeat(129), "has space", "dots.are.out", "ünï"]) {
      const q = await queryUpload(daemon.address, bad);
      expect(q.err?.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(q.err?.details).toMatch(/^upload_id must be 1 to 128 of A-Z a-z 0-9 _ -; got /);
      const s = await sendStream(daemon.address, { key: "r/bad-id", uploadId: bad, chunks: [randomBytes(5)] });
      expect([s.err?.code, s.err?.details]).toEqual([q.err?.code, q.err?.details]);
    }
    const empty = await queryUpload(daemon.address, "");
    expect(empty.err?.code).toBe(grpc.status.INVALID_ARGUMENT);
    const noId = await sendStream(daemon.address, { key: "r/no-id", uploadId: "", writeOffset: 10, chunks: [randomBytes(5)] });
    expect([noId.err?.code, noId.err?.details]).toEqual([
      grpc.status.INVALID_ARGUMENT,
      "write_offset 10 needs an upload_id: only a resumable upload continues at an offset",
    ]);
    // The longest valid id works.
    const longest = "A-z_9".repeat(25) + "abc";
    const ok = await sendStream(daemon.address, { key: "r/longest-id", uploadId: longest, chunks: [Buffer.from("x")] });
    expect(ok.err).toBeNull();
  });

  test("the key keeps its previous version until the upload completes", async () => {
    await client.store("r/versioned", Buffer.from("version one"));
    const id = newId("versioned");
    const a = randomBytes(200 * KiB);
    const b = randomBytes(50 * KiB);
    await sendThenBreak(daemon, { key: "r/versioned", uploadId: id, chunks: [a] }, a.length);
    await committedBecomes(daemon.address, id, a.length);
    expect(((await client.retrieve("r/versioned")) as Buffer).toString()).toBe("version one");
    // A stream that half-closes with a wrong declared size stores nothing either.
    const wrong = await sendStream(daemon.address, { key: "r/versioned", uploadId: id, writeOffset: a.length, chunks: [b], trailer: { size: 1 } });
    expect(wrong.err?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(((await client.retrieve("r/versioned")) as Buffer).toString()).toBe("version one");
    const done = await sendStream(daemon.address, { key: "r/versioned", uploadId: id, writeOffset: a.length + b.length, chunks: [], trailer: { crc32c: crcOf(a, b) } });
    expect(done.err).toBeNull();
    await expectBytes(client, "r/versioned", a, b);
  });

  test("declared sizes are checked at completion (nothing stored, the upload stays resumable); more bytes than declared are refused as they arrive", async () => {
    const id = newId("sizes");
    const a = randomBytes(64 * KiB + 1);
    const short = await sendStream(daemon.address, { key: "r/sizes", uploadId: id, size: 2 * a.length, chunks: [a] });
    expect([short.err?.code, short.err?.details]).toEqual([
      grpc.status.INVALID_ARGUMENT,
      `upload "${id}" holds ${a.length} bytes but the header declared size ${2 * a.length}; nothing was stored (the upload stays open: resume it at write_offset ${a.length})`,
    ]);
    expect(await client.exists("r/sizes")).toBe(false);
    expect(Number((await queryUpload(daemon.address, id)).res!.committedSize)).toBe(a.length);

    const over = await sendStream(daemon.address, { key: "r/sizes", uploadId: id, size: 2 * a.length, writeOffset: a.length, chunks: [a.subarray(0, 10), randomBytes(a.length)] });
    expect([over.err?.code, over.err?.details]).toEqual([
      grpc.status.INVALID_ARGUMENT,
      `upload "${id}" would hold ${2 * a.length + 10} bytes, more than the header's declared size ${2 * a.length}; the ${a.length + 10} bytes before this chunk are kept`,
    ]);
    expect(Number((await queryUpload(daemon.address, id)).res!.committedSize)).toBe(a.length + 10);
    const rest = a.subarray(10);
    const done = await sendStream(daemon.address, { key: "r/sizes", uploadId: id, size: 2 * a.length, writeOffset: a.length + 10, chunks: [rest], trailer: { size: 2 * a.length, crc32c: crcOf(a, a) } });
    expect(done.err).toBeNull();
    await expectBytes(client, "r/sizes", a, a);
  });

  test("a CRC32C mismatch at completion is DATA_LOSS: nothing stored and the upload discarded", async () => {
    const id = newId("crc");
    const a = randomBytes(80 * KiB);
    await sendThenBreak(daemon, { key: "r/crc", uploadId: id, chunks: [a] }, a.length);
    await committedBecomes(daemon.address, id, a.length);
    const b = randomBytes(10);
    // The CRC32C of b alone: a client that forgot the bytes before the resume.
    const { err } = await sendStream(daemon.address, { key: "r/crc", uploadId: id, writeOffset: a.length, chunks: [b], trailer: { crc32c: crcOf(b) } });
    expect(err?.code).toBe(grpc.status.DATA_LOSS);
    expect(err?.details).toContain(`crc32c mismatch: the trailer says ${crcOf(b)} but the ${a.length + 10} bytes of upload "${id}" have ${crcOf(a, b)}; nothing was stored and the upload was discarded`);
    expect(await client.exists("r/crc")).toBe(false);
    expect((await queryUpload(daemon.address, id)).err?.code).toBe(grpc.status.NOT_FOUND);
    expect(await uploadFiles(daemon.storagePath)).toEqual([]);
  });

  test("a resume while an older stream is still attached takes it over: the older one is stopped ABORTED after its bytes are committed", async () => {
    const id = newId("takeover");
    const raw = rawClient(daemon.address);
    try {
      const a = randomBytes(300 * KiB);
      const old = openStream(raw, { key: "r/takeover", uploadId: id, chunks: [a] });
      await old.written;
      await committedBecomes(daemon.address, id, a.length);
      // The old stream stays open (a connection the daemon has not seen die).
      const b = randomBytes(10);
      const resumed = await sendStream(daemon.address, { key: "r/takeover", uploadId: id, writeOffset: a.length, chunks: [b], trailer: { crc32c: crcOf(a, b) } });
      expect(resumed.err).toBeNull();
      const { err } = await old.result;
      expect([err?.code, err?.details]).toEqual([grpc.status.ABORTED, `upload "${id}" was resumed by a newer stream`]);
      await expectBytes(client, "r/takeover", a, b);
    } finally {
      raw.close();
    }
  });

  test("a completed upload answers its object again; more bytes for it are FAILED_PRECONDITION", async () => {
    const id = newId("again");
    const a = randomBytes(1000);
    const first = await sendStream(daemon.address, { key: "r/again", uploadId: id, chunks: [a], trailer: { crc32c: crcOf(a) } });
    expect(first.err).toBeNull();
    const again = await sendStream(daemon.address, { key: "r/again", uploadId: id, writeOffset: a.length, chunks: [] });
    expect(again.err).toBeNull();
    expect(again.res!.object!.generation).toBe(first.res!.object!.generation);
    const more = await sendStream(daemon.address, { key: "r/again", uploadId: id, writeOffset: a.length, chunks: [Buffer.from("x")] });
    expect([more.err?.code, more.err?.details]).toEqual([grpc.status.FAILED_PRECONDITION, `upload "${id}" is complete already; write the key again with a new upload_id`]);
  });

  test("the committed size never decreases while bytes arrive, and a restart keeps it", async () => {
    const storage = await makeTempDir("fs-resume-restart-");
    let d = await startDaemon({ LOCAL_STORAGE_PATH: storage.path });
    const id = newId("restart");
    const c = new FileStorageClient(d.address, { retries: 0 });
    try {
      const raw = rawClient(d.address);
      const chunks = Array.from({ length: 40 }, () => randomBytes(MiB));
      const s = openStream(raw, { key: "r/restart", uploadId: id, chunks });
      const seen: number[] = [];
      let done = false;
      void s.written.then(() => (done = true));
      while (!done) {
        const q = await queryUpload(d.address, id);
        if (q.res) seen.push(Number(q.res.committedSize));
        await sleep(5);
      }
      await committedBecomes(d.address, id, 40 * MiB);
      s.cancel();
      await s.result;
      raw.close();
      await committedBecomes(d.address, id, 40 * MiB);
      expect(seen.length).toBeGreaterThan(3);
      expect(seen).toEqual([...seen].sort((x, y) => x - y));
      // Checkpoints came while bytes arrived (16 MiB cadence), not only at the break.
      expect(seen.some((n) => n > 0 && n < 40 * MiB)).toBe(true);

      await d.stop();
      d = await startDaemon({ LOCAL_STORAGE_PATH: storage.path });
      const q = await queryUpload(d.address, id);
      expect([Number(q.res?.committedSize), q.res?.complete]).toEqual([40 * MiB, false]);
      const last = randomBytes(MiB);
      const done2 = await sendStream(d.address, { key: "r/restart", uploadId: id, writeOffset: 40 * MiB, chunks: [last], trailer: { crc32c: crcOf(...chunks, last) } });
      expect(done2.err).toBeNull();
      expect(Number(done2.res!.object!.size)).toBe(41 * MiB);
    } finally {
      c.close();
      await d.stop();
      await storage.cleanup();
    }
  });
});
