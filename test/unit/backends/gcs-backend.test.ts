/**
 * The GCS backend against the real fake-gcs-server emulator: what only GCS
 * has (bucket creation, custom metadata, resumable uploads, behaviour while
 * GCS is down). The shared contract: test/conformance/gcs.test.ts.
 */
import { randomBytes } from "node:crypto";
import * as net from "node:net";
import { Storage } from "@google-cloud/storage";
import { crc32c } from "@node-rs/crc32";
import type { Backend, PutMeta } from "../../../server/backends/backend.js";
import { createGcsBackend, gcsStorageOptions, type GcsBackend } from "../../../server/backends/gcs/gcs-backend.js";
import { createGcsHttp, crc32cBase64 } from "../../../server/backends/gcs/gcs-http.js";
import { Code } from "../../../server/storage-error.js";
import { chunked, expectStorageError, readBody } from "../../support/backend-io.js";
import { startFakeGcs, type FakeGcs } from "../../kit/fake-gcs.js";

const MiB = 1024 * 1024;
const meta = (over: Partial<PutMeta> = {}): PutMeta => ({ kind: "BYTES", contentType: "application/octet-stream", metadata: {}, ...over });

let gcs: FakeGcs;
let bucketCounter = 0;
const newBucket = () => `fs-test-${process.pid}-${++bucketCounter}`;

beforeAll(async () => {
  gcs = await startFakeGcs();
});
afterAll(async () => {
  await gcs?.stop();
});

const sdk = () => new Storage({ ...gcsStorageOptions({ apiEndpoint: gcs.url, projectId: "test", timeoutMs: 5000 }) });

describe("GCS backend", () => {
  describe("GCS specifics", () => {
    let backend: Backend;
    let bucket: string;
    beforeEach(async () => {
      bucket = newBucket();
      backend = await createGcsBackend({ bucket, projectId: "test", apiEndpoint: gcs.url, maxRetries: 1, timeoutMs: 5000 });
    });
    afterEach(async () => {
      await backend.close();
    });

    test("creates the bucket when it is missing and a project id is given", async () => {
      const [exists] = await sdk().bucket(bucket).exists();
      expect(exists).toBe(true);
      // A second factory on the existing bucket is fine.
      await createGcsBackend({ bucket, projectId: "test", apiEndpoint: gcs.url, maxRetries: 0, timeoutMs: 5000 });
    });

    test("a missing bucket without a project id is FAILED_PRECONDITION, and the message hides the bucket name", async () => {
      const name = newBucket();
      const err = await expectStorageError(
        createGcsBackend({ bucket: name, apiEndpoint: gcs.url, maxRetries: 0, timeoutMs: 5000 }),
        Code.FailedPrecondition,
      );
      expect(err.message).not.toContain(name);
    });

    test("our flags live in custom metadata, never in contentEncoding", async () => {
      const encoding = { compression: "gzip" as const, encryption: { keyId: "k1" } };
      const rec = await backend.put("flags", chunked(randomBytes(500)), meta({
        kind: "JSON",
        contentType: "application/json",
        metadata: { tags: ["a"] },
        size: 900,
        crc32c: 0x12345678,
        encoding,
        expiresAt: Date.now() + 60_000,
      }));
      const [md] = await sdk().bucket(bucket).file("flags").getMetadata();
      expect(md.contentEncoding ?? "").not.toBe("gzip");
      expect(md.metadata).toMatchObject({
        "x-fs-kind": "JSON",
        "x-fs-size": "900",
        "x-fs-crc32c": String(0x12345678),
        "x-fs-encoding": JSON.stringify(encoding),
        "x-fs-metadata": JSON.stringify({ tags: ["a"] }),
      });
      expect(BigInt(md.generation!)).toBe(rec.generation);
      expect(Number(md.size)).toBe(500);
      expect(rec.tier).toBe("gcs");
    });

    test.each([
      ["held whole: one request", 8 * MiB],
      ["streamed: composed into the key from an upload part", 1024],
    ])("size and crc32c filled in at the end of the source are written with the object (%s)", async (_how, threshold) => {
      const backend = await createGcsBackend({ bucket, apiEndpoint: gcs.url, maxRetries: 0, timeoutMs: 5000, resumableThresholdBytes: threshold });
      const stored = randomBytes(2000);
      const m = meta();
      async function* source() {
        m.encoding = { compression: "gzip" };
        yield stored.subarray(0, 1000);
        yield stored.subarray(1000);
        m.size = 7777;
        m.crc32c = 0xcafef00d;
      }
      const rec = await backend.put("late", source(), m);
      expect(rec).toMatchObject({ size: 7777, crc32c: 0xcafef00d, storedSize: 2000, encoding: { compression: "gzip" } });
      expect(await backend.head("late")).toEqual(rec);
      const [md] = await sdk().bucket(bucket).file("late").getMetadata();
      expect(md.contentType).toBe("application/octet-stream");
      expect(md.metadata).toMatchObject({ "x-fs-size": "7777", "x-fs-encoding": '{"compression":"gzip"}' });
      expect((await sdk().bucket(bucket).getFiles({ prefix: ".filestorage/" }))[0]).toEqual([]);
    });

    test("an object written by someone else reads as BYTES with GCS's size and CRC32C", async () => {
      const data = Buffer.from("foreign");
      await sdk().bucket(bucket).file("foreign").save(data, { resumable: false, preconditionOpts: { ifGenerationMatch: 0 } });
      const rec = await backend.head("foreign");
      expect(rec).toMatchObject({ kind: "BYTES", size: data.length, storedSize: data.length, crc32c: crc32c(data), metadata: {}, encoding: {} });
    });

    test("expired objects are kept and listed like any other (expiry is the engine's), so a sweeper can delete them", async () => {
      const expiresAt = Date.now() - 1;
      const rec = await backend.put("gone", chunked(Buffer.from("x")), meta({ expiresAt }));
      expect((await backend.head("gone"))?.expiresAt).toBe(expiresAt);
      expect((await backend.list({ prefix: "gone", limit: 10 })).objects.map((o) => o.key)).toEqual(["gone"]);
      expect(await backend.delete("gone", { ifGenerationMatch: rec.generation })).toBe(true);
      expect(await backend.head("gone")).toBeUndefined();
    });

    test("a large object goes through the resumable path and round-trips", async () => {
      const data = randomBytes(24 * MiB);
      const rec = await backend.put("large", chunked(data, MiB), meta());
      expect(rec.size).toBe(data.length);
      expect(rec.crc32c).toBe(crc32c(data));
      const back = await readBody((await backend.get("large"))!.body);
      expect(back.equals(data)).toBe(true);
      const part = await readBody((await backend.get("large", { range: { offset: 20 * MiB, length: 10 } }))!.body);
      expect(part.equals(data.subarray(20 * MiB, 20 * MiB + 10))).toBe(true);
    }, 120_000);

    test("a small threshold sends small objects resumably too", async () => {
      const small = await createGcsBackend({ bucket, apiEndpoint: gcs.url, maxRetries: 0, timeoutMs: 5000, resumableThresholdBytes: 1024 });
      const data = randomBytes(5000);
      await small.put("r", chunked(data, 1000), meta({ contentType: "text/x-mine" }));
      const rec = await small.head("r");
      expect(rec!.contentType).toBe("text/x-mine");
      expect((await readBody((await small.get("r"))!.body)).equals(data)).toBe(true);
    });

    test("a delete leaves a tombstone with the delete's origin: invisible to reads and listings, visible when asked for", async () => {
      const gcsBackend = backend as GcsBackend;
      await gcsBackend.put("t/a", chunked(Buffer.from("a")), meta());
      expect(await gcsBackend.delete("t/a", { origin: { writtenAt: 5_000_000, writer: "w1" } })).toBe(true);
      expect(await gcsBackend.head("t/a")).toBeUndefined();
      expect(await gcsBackend.get("t/a")).toBeUndefined();
      expect((await gcsBackend.list({ prefix: "t/", limit: 10 })).objects).toEqual([]);
      expect(await gcsBackend.head("t/a", { tombstones: true })).toMatchObject({ deleted: true, origin: { writtenAt: 5_000_000, writer: "w1" } });
      // An older delete does not replace a newer tombstone; a newer one does.
      expect(await gcsBackend.delete("t/a", { origin: { writtenAt: 4_000_000, writer: "w2" } })).toBe(false);
      expect((await gcsBackend.head("t/a", { tombstones: true }))!.origin).toEqual({ writtenAt: 5_000_000, writer: "w1" });
      // A delete of a key never written still leaves one (an older write elsewhere must not come back).
      expect(await gcsBackend.delete("t/never")).toBe(false);
      expect(await gcsBackend.head("t/never", { tombstones: true })).toMatchObject({ deleted: true });
      // A create-only write treats a tombstone as absence.
      await gcsBackend.put("t/a", chunked(Buffer.from("again")), meta(), { ifGenerationMatch: 0n });
      expect((await readBody((await gcsBackend.get("t/a"))!.body)).toString()).toBe("again");
    });

    test("the sweep replaces expired objects by tombstones of their own write, drops old tombstones and old upload parts, and spares the rest", async () => {
      const gcsBackend = backend as GcsBackend;
      const now = Date.now();
      await gcsBackend.put("s/expired", chunked(Buffer.from("e")), { ...meta(), expiresAt: now - 1000, origin: { writtenAt: 7_000_000, writer: "w" } });
      await gcsBackend.put("s/live", chunked(Buffer.from("l")), { ...meta(), expiresAt: now + 3_600_000 });
      await gcsBackend.delete("s/old-tombstone", { origin: { writtenAt: (now - 10_000) * 1000, writer: "w" } });
      await gcsBackend.delete("s/new-tombstone");
      await sdk().bucket(bucket).file(".filestorage/uploads/left-behind").save(Buffer.from("part"));
      const removed = await gcsBackend.sweep({ now, tombstoneBefore: now - 5000, partsBefore: now + 60_000 });
      expect(removed).toEqual({ expired: 1, tombstones: 1, parts: 1 });
      expect(await gcsBackend.head("s/expired", { tombstones: true })).toMatchObject({ deleted: true, origin: { writtenAt: 7_000_000, writer: "w" } });
      expect(await gcsBackend.head("s/live")).toBeDefined();
      expect(await gcsBackend.head("s/old-tombstone", { tombstones: true })).toBeUndefined();
      expect(await gcsBackend.head("s/new-tombstone", { tombstones: true })).toMatchObject({ deleted: true });
      expect((await sdk().bucket(bucket).file(".filestorage/uploads/left-behind").exists())[0]).toBe(false);
    });

    test("the daemon's own objects under .filestorage/ never appear in listings", async () => {
      await sdk().bucket(bucket).file(".filestorage/cache-key").save(Buffer.from("k"));
      await backend.put("visible", chunked(Buffer.from("v")), meta());
      const flat = await backend.list({ limit: 10 });
      expect(flat.objects.map((o) => o.key)).toEqual(["visible"]);
      const rolled = await backend.list({ limit: 10, delimiter: "/" });
      expect(rolled.prefixes).toEqual([]);
    });

    test("non-ASCII metadata reads back exactly, from a read's headers as from a stat", async () => {
      const metadata = { name: "tëst 中文 🎉", list: ["ä", "€"] };
      const rec = await backend.put("unicode", chunked(Buffer.from("u")), meta({ metadata, contentType: "text/plain" }));
      const got = await backend.get("unicode");
      expect(got!.record).toEqual(rec);
      await readBody(got!.body);
      expect((await backend.head("unicode"))!.metadata).toEqual(metadata);
    });

    test("an upload whose CRC32C does not match its bytes is refused by GCS: DATA_LOSS, and the key keeps its version", async () => {
      await backend.put("crc", chunked(Buffer.from("kept")), meta());
      const http = createGcsHttp(sdk(), bucket, 5000);
      try {
        const err = await expectStorageError(
          http.uploadMultipart("crc", { contentType: "text/plain", crc32c: crc32cBase64(crc32c(Buffer.from("other"))) }, [Buffer.from("sent")], {}),
          Code.DataLoss,
        );
        expect(err.message).not.toContain(bucket);
      } finally {
        http.close();
      }
      expect((await readBody((await backend.get("crc"))!.body)).toString()).toBe("kept");
    });

    test("a read in parallel parts of an object replaced meanwhile fails ABORTED, never a mix of versions", async () => {
      const parallel = await createGcsBackend({
        bucket,
        apiEndpoint: gcs.url,
        maxRetries: 0,
        timeoutMs: 5000,
        parallelRead: { thresholdBytes: MiB, partBytes: 256 * 1024, parts: 2 },
      });
      const first = randomBytes(2 * MiB);
      await parallel.put("moving", chunked(first, MiB), meta());
      const got = await parallel.get("moving");
      const it = got!.body[Symbol.asyncIterator]();
      const head = (await it.next()).value as Buffer;
      expect(head.equals(first.subarray(0, head.length))).toBe(true);
      await parallel.put("moving", chunked(randomBytes(2 * MiB), MiB), meta());
      const rest = (async () => {
        for (;;) if ((await it.next()).done) return;
      })();
      await expectStorageError(rest, Code.Aborted);
      await parallel.close();
    });

    test("an injected SDK client is used", async () => {
      const injected = await createGcsBackend({ bucket, storage: sdk(), maxRetries: 0, timeoutMs: 5000 });
      await injected.put("inj", chunked(Buffer.from("v")), meta());
      expect((await backend.head("inj"))!.size).toBe(1);
    });
  });
});

describe("GCS backend while the emulator is down", () => {
  let backend: Backend;
  beforeAll(async () => {
    backend = await createGcsBackend({ bucket: newBucket(), projectId: "test", apiEndpoint: gcs.url, maxRetries: 1, timeoutMs: 2000 });
    await backend.put("k", chunked(Buffer.from("v")), meta());
    await gcs.kill();
  });
  afterAll(async () => {
    await gcs.start();
  });

  test("every call fails fast with UNAVAILABLE", async () => {
    const started = Date.now();
    const calls: Array<[string, () => Promise<unknown>]> = [
      ["head", () => backend.head("k")],
      ["get", () => backend.get("k")],
      ["delete", () => backend.delete("k")],
      ["list", () => backend.list({ prefix: "", limit: 10 })],
      ["put", () => backend.put("k", chunked(Buffer.from("w")), meta())],
    ];
    for (const [name, run] of calls) {
      const err = await expectStorageError(run(), Code.Unavailable).catch((e: Error) => {
        throw new Error(`${name}: ${e.message}`);
      });
      expect(typeof err.code).toBe("number");
      expect(err.cause).toBeDefined();
    }
    // Connection refused is immediate; only backoff (maxRetries 1) adds time.
    expect(Date.now() - started).toBeLessThan(5000);
  });

  test("probe rejects with UNAVAILABLE", async () => {
    await expectStorageError(backend.probe(), Code.Unavailable);
  });

  test("the factory still succeeds, and the bucket is checked again once GCS is back", async () => {
    const name = newBucket();
    const late = await createGcsBackend({ bucket: name, projectId: "test", apiEndpoint: gcs.url, maxRetries: 0, timeoutMs: 1000 });
    await expectStorageError(late.probe(), Code.Unavailable);
    await gcs.start();
    try {
      await late.probe();
      expect((await sdk().bucket(name).exists())[0]).toBe(true);
    } finally {
      await gcs.kill();
    }
  });
});

describe("GCS backend against a server that hangs", () => {
  test("a call that gets no answer ends within the timeout as UNAVAILABLE or DEADLINE_EXCEEDED", async () => {
    const sockets: net.Socket[] = [];
    // Accepts connections and never answers.
    const server = net.createServer((s) => sockets.push(s));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    const port = (server.address() as net.AddressInfo).port;
    try {
      const storage = new Storage(gcsStorageOptions({ apiEndpoint: `http://127.0.0.1:${port}`, timeoutMs: 300 }));
      const backend = await createGcsBackend({ bucket: "hang", storage, maxRetries: 1, timeoutMs: 300 });
      const started = Date.now();
      await expectStorageError(backend.head("k"), Code.Unavailable, Code.DeadlineExceeded);
      expect(Date.now() - started).toBeLessThan(3000);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    }
  });
});
