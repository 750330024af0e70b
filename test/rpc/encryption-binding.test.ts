/**
 * Encryption bound to the object (format 2), through the real gRPC server on
 * the local tier (SQLite index + blob files edited directly) and the GCS tier
 * (fake-gcs-server, edited with the GCS SDK): an attacker who can write the
 * store cannot swap two objects' ciphertexts, roll one back under its newer
 * record, resize it, change its kind or compression, or plant plaintext while
 * encryption is on; ranged reads stay bound; format 1 objects still read.
 */
import Database from "better-sqlite3";
import { Storage } from "@google-cloud/storage";
import { crc32c } from "@node-rs/crc32";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import type { Readable } from "node:stream";
import { FileStorageClient, FileStorageError } from "../../client/src/index.js";
import { gcsStorageOptions } from "../../server/backends/gcs/gcs-backend.js";
import { startDaemon, type TestDaemon } from "../support/daemon.js";
import { failure } from "../support/expect-failure.js";
import { startFakeGcs, type FakeGcs } from "../kit/fake-gcs.js";
import { makeTempDir, type TempDir } from "../kit/temp-dir.js";

const KiB = 1024;
const SEGMENT = 64 * KiB;
const KEY_A = randomBytes(32);
/** The key the frozen format 1 objects below were written with. */
const KEY_V1 = Buffer.alloc(32, 0x5a);

/**
 * Format 1 objects as the server wrote them before format 2 (its
 * encryptSegments with 16-byte segments, so a short text spans several),
 * frozen: key KEY_V1 (id 76e53ebc1dce568f), kind TEXT, the text below.
 */
const V1 = {
  text: "A v1 object, written before objects were bound to their keys.",
  keyId: "76e53ebc1dce568f",
  aes:
    "RlNFMQF25T68Hc5Wj320NDtdIhdkLlOKDAAAABD58MBr212gA+E3GxPeTr+Ctqflv6XcwaqOvFm7qpqqWSZ1qU9uMFfHTkiBq2qxkM2WNCAr75o77rSfFL00cIwp2h6JUBThBk0VhxUkMJn2E3JClvKStil1FOeTILWUKpT86v9nslrcfrEmRWvyVtbRas6ZjeQF6un6lbiXQQ==",
  gzipAes:
    "RlNFMQF25T68Hc5Wj8LOwpKEP9Ra0WbfzgAAABC5OKY/trdx08GHpt+KN59w0ZKvYEtRd4Lgh5PXJoiDrO3CeV/jO6TVsTNSUWiNFGkGss7AIMQnV0RN0vXeDPxOEAt2jhhlmx96qw6pXYWwRePnBoeGIyqtKa5HTL2oH//2K5lo8yXnlGhFtO6j/eBoJZ54z0Hw9omrGaba+b5il1yONWRgbkBElLsxCZsQMAprEi02xoQ0hZFNTp4=",
};

let gcs: FakeGcs;
let bucketSeq = 0;

beforeAll(async () => {
  gcs = await startFakeGcs();
});
afterAll(async () => {
  await gcs?.stop();
});

/** What an attacker with write access to the store changes, in the tier's own terms. */
interface RecordEdit {
  bytes?: Buffer;
  size?: number;
  crc32c?: number;
  kind?: string;
  /** The encoding record (JSON); null removes it. */
  encoding?: object | null;
}

/** A whole stored object as the tier keeps it: its bytes and its record, opaque. */
interface Stored {
  bytes: Buffer;
  record: Record<string, unknown>;
}

/** Direct access to one tier's storage, bypassing the daemon. */
interface Tamper {
  read(key: string): Promise<Stored>;
  /** Replaces the object under `key` with `stored` (bytes and record), keeping the key. */
  write(key: string, stored: Stored): Promise<void>;
  edit(key: string, edit: RecordEdit): Promise<void>;
}

/** The local tier: rows of index.sqlite and blob files; stored size and CRC32C kept consistent, as an attacker would. */
function localTamper(storagePath: string): Tamper {
  const RECORD = ["kind", "content_type", "metadata", "size", "crc32c", "encoding", "created_at", "updated_at", "expires_at"];
  const open = () => new Database(path.join(storagePath, "index.sqlite"), { fileMustExist: true });
  const blobFile = (blob: string) => path.join(storagePath, "blobs", blob.slice(0, 2), blob);
  type Row = Record<string, unknown> & { blob: string | null; data: Buffer | null };
  const row = (db: Database.Database, key: string) => {
    const found = db.prepare("SELECT * FROM objects WHERE key = ?").get(key) as Row | undefined;
    if (found === undefined) throw new Error(`no row for ${key}`);
    return found;
  };
  const setBytes = async (db: Database.Database, key: string, bytes: Buffer) => {
    const current = row(db, key);
    if (current.blob !== null) await fs.writeFile(blobFile(current.blob), bytes);
    else db.prepare("UPDATE objects SET data = ? WHERE key = ?").run(bytes, key);
    db.prepare("UPDATE objects SET stored_size = ?, stored_crc32c = ? WHERE key = ?").run(bytes.length, crc32c(bytes), key);
  };
  const withDb = async <T>(fn: (db: Database.Database) => Promise<T>) => {
    const db = open();
    db.defaultSafeIntegers(false);
    try {
      return await fn(db);
    } finally {
      db.close();
    }
  };
  return {
    read: (key) =>
      withDb(async (db) => {
        const r = row(db, key);
        const bytes = r.blob === null ? Buffer.from(r.data!) : await fs.readFile(blobFile(r.blob));
        return { bytes, record: Object.fromEntries(RECORD.map((c) => [c, r[c]])) };
      }),
    write: (key, stored) =>
      withDb(async (db) => {
        const sets = RECORD.map((c) => `${c} = @${c}`).join(", ");
        db.prepare(`UPDATE objects SET ${sets} WHERE key = @key`).run({ ...stored.record, key });
        await setBytes(db, key, stored.bytes);
      }),
    edit: (key, e) =>
      withDb(async (db) => {
        const update = (column: string, value: unknown) => db.prepare(`UPDATE objects SET ${column} = ? WHERE key = ?`).run(value, key);
        if (e.size !== undefined) update("size", e.size);
        if (e.crc32c !== undefined) update("crc32c", e.crc32c);
        if (e.kind !== undefined) update("kind", e.kind);
        if (e.encoding !== undefined) update("encoding", JSON.stringify(e.encoding ?? {}));
        if (e.bytes !== undefined) await setBytes(db, key, e.bytes);
      }),
  };
}

/** The GCS tier: objects and their x-fs-* custom metadata, rewritten with the SDK. */
function gcsTamper(bucket: string): Tamper {
  const sdk = new Storage(gcsStorageOptions({ apiEndpoint: gcs.url, projectId: "test", timeoutMs: 5000 }));
  const file = (key: string) => sdk.bucket(bucket).file(key);
  const read = async (key: string): Promise<Stored> => {
    const [md] = await file(key).getMetadata();
    const [bytes] = await file(key).download();
    return { bytes, record: { contentType: md.contentType, metadata: { ...md.metadata } } };
  };
  const write = async (key: string, stored: Stored) => {
    // A new generation with exactly this content type and custom metadata; GCS computes its own CRC32C.
    await file(key).save(stored.bytes, { resumable: false, validation: false, metadata: stored.record });
  };
  return {
    read,
    write,
    async edit(key, e) {
      const stored = await read(key);
      const m = stored.record.metadata as Record<string, string | null>;
      if (e.size !== undefined) m["x-fs-size"] = String(e.size);
      if (e.crc32c !== undefined) m["x-fs-crc32c"] = String(e.crc32c);
      if (e.kind !== undefined) m["x-fs-kind"] = e.kind;
      if (e.encoding === null) delete m["x-fs-encoding"];
      else if (e.encoding !== undefined) m["x-fs-encoding"] = JSON.stringify(e.encoding);
      await write(key, { bytes: e.bytes ?? stored.bytes, record: stored.record });
    },
  };
}

/** One daemon on one tier, restartable on the same storage with other settings. */
interface TierFixture {
  client: FileStorageClient;
  tamper: Tamper;
  restart(env?: Record<string, string>): Promise<void>;
  stop(): Promise<void>;
}

async function startTier(tier: "local" | "gcs"): Promise<TierFixture> {
  const dir: TempDir = await makeTempDir("fs-bind-");
  const bucket = `bind-${++bucketSeq}-bucket`;
  const base: Record<string, string> = {
    LOCAL_STORAGE_PATH: dir.path,
    ENABLE_CACHE: "false", // every read reaches the tier
    ENABLE_ENCRYPTION: "true",
    ENCRYPTION_KEY: KEY_A.toString("base64"),
    ENCRYPTION_PREVIOUS_KEYS: KEY_V1.toString("base64"),
    ...(tier === "gcs" ? { GCS_BUCKET_NAME: bucket, GCS_PROJECT_ID: "test", GCS_API_ENDPOINT: gcs.url, MAX_RETRIES: "0" } : {}),
  };
  let daemon: TestDaemon | undefined;
  const fixture = {
    client: undefined as unknown as FileStorageClient,
    tamper: tier === "gcs" ? gcsTamper(bucket) : localTamper(dir.path),
    async restart(env: Record<string, string> = {}) {
      await fixture.stopDaemon();
      daemon = await startDaemon({ ...base, ...env });
      fixture.client = new FileStorageClient(daemon.address, { retries: 0 });
    },
    async stopDaemon() {
      fixture.client?.close();
      await daemon?.stop();
      daemon = undefined;
    },
    async stop() {
      await fixture.stopDaemon();
      await dir.cleanup();
    },
  };
  await fixture.restart();
  return fixture;
}

/** What a read delivered: the bytes it released and, when it failed, how. */
interface Outcome {
  bytes: Buffer;
  code?: string;
  details?: string;
}

async function outcome(read: () => Promise<Buffer | Readable>): Promise<Outcome> {
  const parts: Buffer[] = [];
  try {
    const got = await read();
    if (Buffer.isBuffer(got)) return { bytes: got };
    for await (const chunk of got) parts.push(Buffer.from(chunk as Uint8Array));
    return { bytes: Buffer.concat(parts) };
  } catch (err) {
    if (!(err instanceof FileStorageError)) throw err;
    return { bytes: Buffer.concat(parts), code: err.codeName, details: err.details };
  }
}

/** Every way of reading `key`: unary, whole stream, ranges inside, across a segment boundary and to the end. */
function reads(client: FileStorageClient, key: string, size: number): [string, () => Promise<Buffer | Readable>][] {
  const ranged = (offset: number, limit: number) => async () => (await client.download(key, { offset, limit })).stream;
  return [
    ["Retrieve", async () => toBuffer(await client.retrieve(key))],
    ["RetrieveStream", async () => (await client.download(key)).stream],
    ["a range inside", ranged(Math.min(10, size - 1), Math.min(100, size - 10))],
    ["a range across segments", ranged(Math.max(0, Math.min(SEGMENT - 50, size - 100)), 100)],
    ["a range to the end", ranged(Math.max(1, size - 40), 0)],
  ];
}

function toBuffer(value: unknown): Buffer {
  if (Buffer.isBuffer(value)) return value;
  if (typeof value === "string") return Buffer.from(value);
  return Buffer.from(JSON.stringify(value));
}

/** Every read of `key` is DATA_LOSS and releases no byte (nothing of another object's plaintext). */
async function expectEveryReadRefused(client: FileStorageClient, key: string, size: number): Promise<void> {
  for (const [how, read] of reads(client, key, size)) {
    const got = await outcome(read);
    expect({ how, code: got.code }).toEqual({ how, code: "DATA_LOSS" });
    expect({ how, released: got.bytes.length }).toEqual({ how, released: 0 });
  }
}

/** A compressible text (stored gzip + AES) of `bytes` bytes, distinct per seed. */
function text(seed: string, bytes: number): string {
  return `${seed}: a repetitive line of text for gzip. `.repeat(Math.ceil(bytes / 40)).slice(0, bytes);
}

describe.each(["local", "gcs"] as const)("%s tier", (tier) => {
  let t: TierFixture;
  beforeAll(async () => {
    t = await startTier(tier);
  });
  afterAll(async () => {
    await t?.stop();
  });

  test("a valid encrypted object reads whole and in every range", async () => {
    const random = randomBytes(3 * SEGMENT + 123);
    const info = await t.client.store("ok/random", random);
    expect(info).toMatchObject({ encrypted: true, compressed: false });
    const words = text("ok", 30 * KiB);
    expect(await t.client.store("ok/text", words)).toMatchObject({ encrypted: true, compressed: true });

    const cases: [string, Buffer][] = [["ok/random", random], ["ok/text", Buffer.from(words)]];
    for (const [key, plain] of cases) {
      expect(toBuffer(await t.client.retrieve(key)).equals(plain)).toBe(true);
      const ranges = [[0, 1], [5, 100], [SEGMENT - 3, 6], [2 * SEGMENT, SEGMENT], [plain.length - 1, 0], [plain.length - SEGMENT - 7, 0], [1, 0]];
      for (const [offset, limit] of ranges) {
        if (offset < 0 || offset >= plain.length) continue;
        const got = await outcome(async () => (await t.client.download(key, { offset, limit })).stream);
        expect({ key, offset, limit, code: got.code }).toEqual({ key, offset, limit, code: undefined });
        expect(got.bytes.equals(plain.subarray(offset, limit ? offset + limit : undefined))).toBe(true);
      }
    }
  });

  describe.each(["bytes", "bytes and metadata"] as const)("swapping the stored %s of two objects", (what) => {
    test.each([
      ["random bytes, blob files", () => [randomBytes(2 * SEGMENT + 500), randomBytes(2 * SEGMENT + 500)]],
      ["compressed text, inline", () => [Buffer.from(text("first", 20 * KiB)), Buffer.from(text("other", 20 * KiB))]],
    ])("%s: every read of either is DATA_LOSS, never the other's plaintext", async (name, make) => {
      const [a, b] = make();
      const [keyA, keyB] = [`swap/${what}/${name}/a`, `swap/${what}/${name}/b`];
      await t.client.store(keyA, a);
      await t.client.store(keyB, b);
      const [storedA, storedB] = [await t.tamper.read(keyA), await t.tamper.read(keyB)];
      if (what === "bytes") {
        await t.tamper.edit(keyA, { bytes: storedB.bytes });
        await t.tamper.edit(keyB, { bytes: storedA.bytes });
      } else {
        await t.tamper.write(keyA, storedB);
        await t.tamper.write(keyB, storedA);
      }
      await expectEveryReadRefused(t.client, keyA, a.length);
      await expectEveryReadRefused(t.client, keyB, b.length);
    });
  });

  test.each([
    ["random bytes, blob files", (v: number) => Buffer.alloc(2 * SEGMENT + 500, v)],
    ["compressed text, inline", (v: number) => Buffer.from(text(`version ${v}`, 20 * KiB))],
  ])("%s: the previous version's bytes under the current record are DATA_LOSS", async (name, make) => {
    const key = `rollback/${name}`;
    // Both versions have the same size, so only the binding can tell them apart in a ranged read.
    const [v1, v2] = [make(1), make(2)];
    expect(v1.length).toBe(v2.length);
    await t.client.store(key, v1);
    const previous = await t.tamper.read(key);
    await t.client.store(key, v2);
    await t.tamper.edit(key, { bytes: previous.bytes });
    await expectEveryReadRefused(t.client, key, v2.length);
  });

  test("the same version's bytes and record written back still read (no tier-specific binding)", async () => {
    const data = randomBytes(2 * SEGMENT + 9);
    await t.client.store("same/k", data);
    // A new generation with the same content: what a verbatim copy (the replicator's) produces.
    await t.tamper.write("same/k", await t.tamper.read("same/k"));
    expect(toBuffer(await t.client.retrieve("same/k")).equals(data)).toBe(true);
    const part = await outcome(async () => (await t.client.download("same/k", { offset: SEGMENT - 2, limit: 0 })).stream);
    expect(part.bytes.equals(data.subarray(SEGMENT - 2))).toBe(true);
  });

  test("a changed recorded size (a truncated or resized object) is DATA_LOSS, also for ranges to the end", async () => {
    const cases = [
      { name: "random bytes, size one byte short", which: "random", change: -1, truncate: 0 },
      { name: "random bytes, size one byte long", which: "random", change: +1, truncate: 0 },
      // The final segment cut off and the size to match: the new last segment was sealed as not final.
      { name: "random bytes, truncated by its final segment", which: "random", change: -500, truncate: 500 + 16 },
      { name: "compressed text, size short", which: "text", change: -10, truncate: 0 },
      { name: "compressed text, size long", which: "text", change: +10, truncate: 0 },
      { name: "compressed text, a whole segment short", which: "text", change: -SEGMENT, truncate: 0 },
    ] as const;
    for (const { name, which, change, truncate } of cases) {
      const key = `resize/${name}`;
      const plain = which === "random" ? randomBytes(2 * SEGMENT + 500) : Buffer.from(text("resize", 3 * SEGMENT));
      await t.client.store(key, plain);
      const size = plain.length + change;
      const stored = await t.tamper.read(key);
      await t.tamper.edit(key, { size, ...(truncate ? { bytes: stored.bytes.subarray(0, stored.bytes.length - truncate) } : {}) });
      const ways: [string, () => Promise<Buffer | Readable>][] = [
        ["Retrieve", async () => toBuffer(await t.client.retrieve(key))],
        ["RetrieveStream", async () => (await t.client.download(key)).stream],
        // Ranges that reach the recorded end read the final segment, which binds the size.
        ["the last 30 bytes", async () => (await t.client.download(key, { offset: size - 30, limit: 0 })).stream],
        ["from byte 1 to the end", async () => (await t.client.download(key, { offset: 1, limit: 0 })).stream],
      ];
      for (const [how, read] of ways) {
        expect({ name, how, code: (await outcome(read)).code }).toEqual({ name, how, code: "DATA_LOSS" });
      }
    }
  });

  test("a record with another kind or compression than was written is DATA_LOSS", async () => {
    const random = randomBytes(SEGMENT + 10);
    await t.client.store("record/kind", random);
    await t.tamper.edit("record/kind", { kind: "TEXT" });
    await expectEveryReadRefused(t.client, "record/kind", random.length);

    const words = Buffer.from(text("record", SEGMENT + 10));
    expect(await t.client.store("record/compression", words)).toMatchObject({ compressed: true, encrypted: true });
    const stored = (await t.tamper.read("record/compression")).record;
    const json = tier === "local" ? stored.encoding : (stored.metadata as Record<string, string>)["x-fs-encoding"];
    const { compression: _dropped, ...uncompressed } = JSON.parse(String(json)) as { compression?: string };
    await t.tamper.edit("record/compression", { encoding: uncompressed });
    await expectEveryReadRefused(t.client, "record/compression", words.length);
  });

  test("a planted plaintext object is DATA_LOSS naming its key; ALLOW_UNENCRYPTED_READS=true serves it", async () => {
    const key = "plant/report.txt";
    const planted = Buffer.from(text("planted", 3 * KiB));
    await t.client.store(key, "the real object");
    await t.tamper.edit(key, { bytes: planted, size: planted.length, crc32c: crc32c(planted), kind: "TEXT", encoding: null });
    const stat = await t.client.stat(key);
    expect(stat).toMatchObject({ encrypted: false, size: planted.length });
    await expectEveryReadRefused(t.client, key, planted.length);
    const err = await failure(t.client.retrieve(key));
    expect(err.codeName).toBe("DATA_LOSS");
    expect(err.details).toContain(`object "${key}" is stored unencrypted but ENABLE_ENCRYPTION is on`);
    expect(err.details).toContain("ALLOW_UNENCRYPTED_READS");

    await t.restart({ ALLOW_UNENCRYPTED_READS: "true" });
    try {
      expect(await t.client.retrieve(key)).toBe(planted.toString());
      const part = await outcome(async () => (await t.client.download(key, { offset: 100, limit: 50 })).stream);
      expect(part.bytes.toString()).toBe(planted.subarray(100, 150).toString());
      // Encrypted objects keep their binding meanwhile.
      await t.client.store("plant/encrypted", randomBytes(100));
      const previous = await t.tamper.read("plant/encrypted");
      await t.client.store("plant/encrypted", randomBytes(100));
      await t.tamper.edit("plant/encrypted", { bytes: previous.bytes });
      expect((await failure(t.client.retrieve("plant/encrypted"))).codeName).toBe("DATA_LOSS");
    } finally {
      await t.restart();
    }
    expect((await failure(t.client.retrieve(key))).codeName).toBe("DATA_LOSS");
  });

  if (tier === "gcs") {
    test("a foreign object without our metadata is DATA_LOSS too", async () => {
      await t.tamper.write("plant/foreign", { bytes: Buffer.from("dropped into the bucket"), record: { contentType: "text/plain" } });
      const err = await failure(t.client.retrieve("plant/foreign"));
      expect(err.codeName).toBe("DATA_LOSS");
      expect(err.details).toContain('object "plant/foreign" is stored unencrypted');
    });
  }

  describe("format 1 objects", () => {
    const plain = Buffer.from(V1.text);
    /** Plants a frozen format 1 object under `key` the way the old server recorded it. */
    async function plantV1(key: string, bytes: string, encoding: object) {
      await t.client.store(key, "placeholder");
      await t.tamper.edit(key, { bytes: Buffer.from(bytes, "base64"), size: plain.length, crc32c: crc32c(plain), kind: "TEXT", encoding });
    }

    test.each([
      ["AES only", V1.aes, { encryption: { keyId: V1.keyId } }],
      ["gzip + AES", V1.gzipAes, { compression: "gzip", encryption: { keyId: V1.keyId } }],
    ])("%s: still read whole and in ranges (with the old key as a previous key)", async (name, bytes, encoding) => {
      const key = `v1/${name}`;
      await plantV1(key, bytes, encoding);
      expect(await t.client.stat(key)).toMatchObject({ encrypted: true, compressed: "compression" in encoding, size: plain.length });
      expect(await t.client.retrieve(key)).toBe(V1.text);
      for (const [offset, limit] of [[0, 5], [14, 20], [40, 0], [60, 0]]) {
        const got = await outcome(async () => (await t.client.download(key, { offset, limit })).stream);
        expect({ offset, limit, code: got.code }).toEqual({ offset, limit, code: undefined });
        expect(got.bytes.toString()).toBe(plain.subarray(offset, limit ? offset + limit : undefined).toString());
      }
      // Tampering is still detected.
      const tampered = Buffer.from(bytes, "base64");
      tampered[40] ^= 1;
      await t.tamper.edit(key, { bytes: tampered });
      expect((await failure(t.client.retrieve(key))).codeName).toBe("DATA_LOSS");
    });

    test("the limit: format 1 bytes are bound to nothing, so they read under any key", async () => {
      await plantV1("v1/moved", V1.aes, { encryption: { keyId: V1.keyId } });
      expect(await t.client.retrieve("v1/moved")).toBe(V1.text);
    });

    test("format 1 bytes under a format 2 record (with an object id) are DATA_LOSS", async () => {
      await t.client.store("v1/downgrade", V1.text);
      const stored = await t.tamper.read("v1/downgrade");
      const record = tier === "local" ? String(stored.record.encoding) : String((stored.record.metadata as Record<string, string>)["x-fs-encoding"]);
      const { objectId } = (JSON.parse(record) as { encryption: { objectId: string } }).encryption;
      expect(objectId).toMatch(/^[0-9a-f]{32}$/);
      await t.tamper.edit("v1/downgrade", { bytes: Buffer.from(V1.aes, "base64"), encoding: { encryption: { keyId: V1.keyId, objectId } } });
      await expectEveryReadRefused(t.client, "v1/downgrade", plain.length);
    });
  });
});
