/**
 * Encryption in the codec: the stored format, authentication of every segment
 * (tampering, truncation, reordering, appending), the binding of format 2 to
 * the object (key, kind, compression, object id, size), unencrypted records
 * while encryption is on, wrong and rotated keys.
 */
import { randomBytes } from "node:crypto";
import type { ObjectRecord, PutMeta } from "../../../server/backends/backend.js";
import { createCodecBackend, createKeyring, deriveKeyId, type Keyring } from "../../../server/codec/codec-backend.js";
import { SEGMENT_BYTES, TAG_BYTES, planSegments } from "../../../server/codec/encryption.js";
import { HEADER_BYTES, type EncryptionRecord } from "../../../server/codec/encryption-format.js";
import { Code } from "../../../server/storage-error.js";
import { chunked, expectStorageError, readBody } from "../../support/backend-io.js";
import { createMemoryBackend, createMemoryBucket, type MemoryBackend } from "../../support/memory-backend.js";

const SEG = SEGMENT_BYTES;
const SEALED = SEG + TAG_BYTES;
const LAYOUT = { segmentBytes: SEG, headerBytes: HEADER_BYTES };
const OBJECT_ID = expect.stringMatching(/^[0-9a-f]{32}$/);
const keyA = randomBytes(32);
const keyB = randomBytes(32);

const meta = (): PutMeta => ({ kind: "BYTES", contentType: "application/octet-stream", metadata: {} });

function codecOver(mem: MemoryBackend, keyring: Keyring | undefined, compress = false) {
  return createCodecBackend(mem, {
    compression: { enabled: compress, thresholdBytes: 1024 },
    encryption: keyring,
  });
}

/** Reads what a full get delivers before it fails: the bytes and the error. */
async function readUntilError(body: NodeJS.ReadableStream): Promise<{ bytes: Buffer; error?: unknown }> {
  const parts: Buffer[] = [];
  try {
    for await (const chunk of body) parts.push(Buffer.from(chunk as Uint8Array));
    return { bytes: Buffer.concat(parts) };
  } catch (error) {
    return { bytes: Buffer.concat(parts), error };
  }
}

describe("keyring", () => {
  test("key ids are 16 hex chars, stable, and differ between keys", () => {
    expect(deriveKeyId(keyA)).toMatch(/^[0-9a-f]{16}$/);
    expect(deriveKeyId(Buffer.from(keyA))).toBe(deriveKeyId(keyA));
    expect(deriveKeyId(keyB)).not.toBe(deriveKeyId(keyA));
    const ring = createKeyring({ primary: keyB, previous: [keyA] });
    expect(ring.primary.id).toBe(deriveKeyId(keyB));
    expect(ring.get(deriveKeyId(keyA))!.equals(keyA)).toBe(true);
    expect(ring.get("0000000000000000")).toBeUndefined();
  });

  test("a key that is not 32 bytes is INVALID_ARGUMENT without showing it", () => {
    const short = Buffer.from("secret-key-material");
    try {
      createKeyring({ primary: short });
      throw new Error("accepted a short key");
    } catch (err) {
      expect((err as { code?: Code }).code).toBe(Code.InvalidArgument);
      expect((err as Error).message).toContain("32 bytes");
      expect((err as Error).message).not.toContain("secret");
    }
    expect(() => createKeyring({ primary: keyA, previous: [Buffer.alloc(16)] })).toThrow(/previous\[0\]/);
  });
});

describe("encrypted storage format", () => {
  test("header, segment layout and stored size; the plaintext never appears", async () => {
    const mem = createMemoryBackend();
    const ring = createKeyring({ primary: keyA });
    const codec = codecOver(mem, ring);
    for (const size of [0, 1, SEG - 1, SEG, SEG + 1, 3 * SEG + 5]) {
      const marker = Buffer.from("PLAINTEXT-MARKER-");
      const data = Buffer.alloc(size);
      for (let at = 0; at < size; at += marker.length) marker.copy(data, at);
      const rec = await codec.put("f", chunked(data, 9999), meta());
      const stored = mem.stored("f")!;
      const segments = Math.max(1, Math.ceil(size / SEG));
      expect(stored.length).toBe(HEADER_BYTES + size + segments * TAG_BYTES);
      expect(rec.storedSize).toBe(stored.length);
      expect(stored.subarray(0, 4).toString("latin1")).toBe("FSE1");
      expect(stored[4]).toBe(2);
      expect(stored.subarray(5, 13).toString("hex")).toBe(ring.primary.id);
      expect(stored.readUInt32BE(25)).toBe(SEG);
      // Format 2: the object id closes the header and is kept with the record.
      expect(rec.encoding.encryption).toEqual({ keyId: ring.primary.id, objectId: stored.subarray(29, 45).toString("hex") });
      if (size >= marker.length) expect(stored.includes(marker.subarray(0, 8))).toBe(false);
      expect((await readBody((await codec.get("f"))!.body)).equals(data)).toBe(true);
    }
  });

  test("the same data encrypts differently every time (random nonce base)", async () => {
    const mem = createMemoryBackend();
    const codec = codecOver(mem, createKeyring({ primary: keyA }));
    const data = randomBytes(1000);
    await codec.put("a", chunked(data), meta());
    await codec.put("b", chunked(data), meta());
    expect(mem.stored("a")!.equals(mem.stored("b")!)).toBe(false);
  });

  test("planSegments maps original ranges to whole stored segments", () => {
    const size = 3 * SEG + 5;
    expect(planSegments(size, 0, 1, LAYOUT)).toEqual({
      storedOffset: HEADER_BYTES, storedLength: SEALED, firstIndex: 0, finalIndex: 3, segmentCount: 1, skip: 0,
    });
    expect(planSegments(size, SEG - 1, 2, LAYOUT)).toEqual({
      storedOffset: HEADER_BYTES, storedLength: 2 * SEALED, firstIndex: 0, finalIndex: 3, segmentCount: 2, skip: SEG - 1,
    });
    expect(planSegments(size, 3 * SEG + 1, 4, LAYOUT)).toEqual({
      storedOffset: HEADER_BYTES + 3 * SEALED, storedLength: 5 + TAG_BYTES, firstIndex: 3, finalIndex: 3, segmentCount: 1, skip: 1,
    });
    expect(planSegments(2 * SEG, SEG, SEG, LAYOUT)).toEqual({
      storedOffset: HEADER_BYTES + SEALED, storedLength: SEALED, firstIndex: 1, finalIndex: 1, segmentCount: 1, skip: 0,
    });
  });
});

describe("authentication", () => {
  const size = 4 * SEG + 100;
  let mem: MemoryBackend;
  let codec: ReturnType<typeof codecOver>;
  let data: Buffer;
  let original: Buffer;

  beforeEach(async () => {
    mem = createMemoryBackend();
    codec = codecOver(mem, createKeyring({ primary: keyA }));
    data = randomBytes(size);
    await codec.put("x", chunked(data), meta());
    original = Buffer.from(mem.stored("x")!);
  });

  const segmentStart = (i: number) => HEADER_BYTES + i * SEALED;

  /** DATA_LOSS "failed authentication", from get() itself (a ranged read checks the header first) or from its body. */
  async function expectAuthFailure(range?: { offset: number; length?: number }) {
    let error: unknown;
    try {
      const got = await codec.get("x", range && { range });
      ({ error } = await readUntilError(got!.body));
    } catch (err) {
      error = err;
    }
    expect(error).toBeDefined();
    expect((error as { code?: Code }).code).toBe(Code.DataLoss);
    expect((error as Error).message).toMatch(/failed authentication/);
  }

  test.each([
    ["a header byte (nonce)", () => 15],
    ["the segment size in the header", () => 28],
    ["a ciphertext byte of the first segment", () => segmentStart(0) + 10],
    ["a tag byte", () => segmentStart(1) - 1],
    ["a byte of the final segment", () => segmentStart(4) + 50],
    ["the last stored byte", () => original.length - 1],
  ])("a flipped bit in %s is DATA_LOSS", async (_name, at) => {
    mem.stored("x")![at()] ^= 0x04;
    const got = await codec.get("x");
    const { error } = await readUntilError(got!.body);
    expect((error as { code?: Code }).code).toBe(Code.DataLoss);
  });

  test("no byte of a tampered segment reaches the reader", async () => {
    mem.stored("x")![segmentStart(2) + 123] ^= 0x80;
    const { bytes, error } = await readUntilError((await codec.get("x"))!.body);
    expect((error as { code?: Code }).code).toBe(Code.DataLoss);
    expect(bytes.length).toBeLessThanOrEqual(2 * SEG);
    expect(bytes.equals(data.subarray(0, bytes.length))).toBe(true);
  });

  test("ranged reads verify the segments they read and ignore the others", async () => {
    mem.stored("x")![segmentStart(2) + 5] ^= 0x01;
    await expectAuthFailure({ offset: 2 * SEG + 10, length: 10 });
    await expectAuthFailure({ offset: SEG, length: SEG + 1 });
    const ok = await readBody((await codec.get("x", { range: { offset: SEG + 7, length: SEG - 7 } }))!.body);
    expect(ok.equals(data.subarray(SEG + 7, 2 * SEG))).toBe(true);
  });

  test("truncation inside a segment, at a segment boundary, or of the header is DATA_LOSS", async () => {
    for (const cut of [original.length - 1, original.length - 100 - TAG_BYTES, segmentStart(4), segmentStart(1), HEADER_BYTES, 10]) {
      mem.replaceStored("x", Buffer.from(original.subarray(0, cut)));
      await expectAuthFailure();
    }
    // A ranged read of the (now missing) final segment.
    mem.replaceStored("x", Buffer.from(original.subarray(0, segmentStart(4))));
    await expectAuthFailure({ offset: 4 * SEG, length: 50 });
  });

  test("reordered, dropped or appended segments are DATA_LOSS", async () => {
    const seg = (i: number) => original.subarray(segmentStart(i), segmentStart(i) + SEALED);
    const header = original.subarray(0, HEADER_BYTES);
    const last = original.subarray(segmentStart(4));
    const variants = [
      Buffer.concat([header, seg(1), seg(0), seg(2), seg(3), last]),
      Buffer.concat([header, seg(0), seg(2), seg(3), last]),
      Buffer.concat([header, seg(0), seg(1), seg(2), seg(3), last, seg(3)]),
      Buffer.concat([header, seg(0), seg(1), seg(2), seg(3), seg(3), last]),
    ];
    for (const variant of variants) {
      mem.replaceStored("x", variant);
      await expectAuthFailure();
    }
  });

  test("a header from another object is DATA_LOSS", async () => {
    await codec.put("y", chunked(randomBytes(size)), meta());
    const other = mem.stored("y")!;
    mem.replaceStored("x", Buffer.concat([other.subarray(0, HEADER_BYTES), original.subarray(HEADER_BYTES)]));
    await expectAuthFailure();
    await expectAuthFailure({ offset: SEG, length: 10 });
  });
});

describe("binding to the object (format 2)", () => {
  const size = 2 * SEG + 100;
  const ring = createKeyring({ primary: keyA });
  let bucket: ReturnType<typeof createMemoryBucket>;
  let codec: ReturnType<typeof codecOver>;
  let data: Buffer;

  beforeEach(async () => {
    bucket = createMemoryBucket();
    codec = codecOver(createMemoryBackend(bucket), ring, true);
    data = randomBytes(size);
    await codec.put("x", chunked(data), meta());
  });

  /** DATA_LOSS from get() or its body, for a whole read and for ranges inside and to the end. */
  async function expectRefused(key: string, objectSize = size) {
    for (const range of [undefined, { offset: 10, length: 20 }, { offset: SEG + 5, length: 10 }, { offset: objectSize - 10 }]) {
      let error: unknown;
      let bytes: Buffer = Buffer.alloc(0);
      try {
        ({ bytes, error } = await readUntilError((await codec.get(key, range && { range }))!.body));
      } catch (err) {
        error = err;
      }
      expect({ range, code: (error as { code?: Code } | undefined)?.code }).toEqual({ range, code: Code.DataLoss });
      expect(bytes.length).toBe(0);
    }
  }

  const entry = (key: string) => bucket.objects.get(key)!;

  test("an object moved to another key, with its record, is DATA_LOSS naming the key", async () => {
    bucket.objects.set("y", { record: { ...entry("x").record, key: "y" }, bytes: entry("x").bytes });
    await expectRefused("y");
    const err = await expectStorageError(readBody((await codec.get("y"))!.body), Code.DataLoss);
    expect(err.message).toContain('object "y" failed authentication');
  });

  test("another version's bytes under this record are DATA_LOSS (object id mismatch)", async () => {
    const previous = entry("x").bytes;
    await codec.put("x", chunked(randomBytes(size)), meta());
    entry("x").bytes = previous;
    await expectRefused("x");
    const err = await expectStorageError(readBody((await codec.get("x"))!.body), Code.DataLoss);
    expect(err.message).toMatch(/belongs to another object or version/);
  });

  test.each([
    ["kind", (r: ObjectRecord) => void (r.kind = "TEXT")],
    ["object id", (r: ObjectRecord) => void ((r.encoding.encryption as EncryptionRecord).objectId = "00".repeat(16))],
    ["object id (removed)", (r: ObjectRecord) => void (r.encoding.encryption = { keyId: ring.primary.id })],
  ])("a record with another %s is DATA_LOSS", async (_name, change) => {
    change(entry("x").record);
    await expectRefused("x");
  });

  test("a compressed object's record without its compression flag is DATA_LOSS", async () => {
    const text = Buffer.from("compressible text ".repeat(10_000));
    await codec.put("z", chunked(text), meta());
    expect(entry("z").record.encoding.compression).toBe("gzip");
    delete entry("z").record.encoding.compression;
    await expectRefused("z", text.length);
  });

  test("a changed original size fails at the final segment, also for a range that reaches it", async () => {
    for (const delta of [-1, +1]) {
      entry("x").record.size = size + delta;
      for (const range of [undefined, { offset: 2 * SEG }, { offset: 1 }]) {
        let error: unknown;
        try {
          ({ error } = await readUntilError((await codec.get("x", range && { range }))!.body));
        } catch (err) {
          error = err;
        }
        expect({ delta, range, code: (error as { code?: Code }).code }).toEqual({ delta, range, code: Code.DataLoss });
      }
    }
    // A range before the final segment reads genuine bytes of this object.
    entry("x").record.size = size;
    const part = await readBody((await codec.get("x", { range: { offset: 5, length: SEG } }))!.body);
    expect(part.equals(data.subarray(5, SEG + 5))).toBe(true);
  });

  test("a compressed object read to its end verifies the size bound into its final segment", async () => {
    const text = Buffer.from("compressible text ".repeat(10_000));
    await codec.put("z", chunked(text), meta());
    entry("z").record.size = text.length - 7;
    const { error } = await readUntilError((await codec.get("z", { range: { offset: 100 } }))!.body);
    expect((error as { code?: Code }).code).toBe(Code.DataLoss);
  });

  test("with encryption on, an unencrypted record is DATA_LOSS naming the key, unless allowUnencryptedReads", async () => {
    const plain = createMemoryBackend(bucket);
    await codecOver(plain, undefined).put("planted", chunked(Buffer.from("not encrypted")), meta());
    for (const range of [undefined, { offset: 2, length: 3 }]) {
      const err = await expectStorageError(codec.get("planted", range && { range }), Code.DataLoss);
      expect(err.message).toContain('object "planted" is stored unencrypted but ENABLE_ENCRYPTION is on');
    }
    const lenient = createCodecBackend(plain, {
      compression: { enabled: false, thresholdBytes: 1024 },
      encryption: ring,
      allowUnencryptedReads: true,
    });
    expect((await readBody((await lenient.get("planted"))!.body)).toString()).toBe("not encrypted");
    expect((await readBody((await lenient.get("planted", { range: { offset: 4, length: 3 } }))!.body)).toString()).toBe("enc");
    // Encrypted objects keep their binding meanwhile.
    bucket.objects.set("y", { record: { ...entry("x").record, key: "y" }, bytes: entry("x").bytes });
    await expectStorageError(readBody((await lenient.get("y"))!.body), Code.DataLoss);
  });
});

describe("keys", () => {
  test("a key id missing from the keyring is FAILED_PRECONDITION naming the id, never the key", async () => {
    const mem = createMemoryBackend();
    const ringA = createKeyring({ primary: keyA });
    await codecOver(mem, ringA).put("k", chunked(randomBytes(3 * SEG)), meta());
    await codecOver(mem, ringA, true).put("kz", chunked(Buffer.from("x".repeat(5000))), meta());
    const withB = codecOver(mem, createKeyring({ primary: keyB }));
    for (const key of ["k", "kz"]) {
      for (const range of [undefined, { offset: 101, length: 5 }]) {
        const err = await expectStorageError(withB.get(key, range && { range }), Code.FailedPrecondition);
        expect(err.message).toContain(ringA.primary.id);
        expect(err.message).not.toContain(keyA.toString("hex"));
        expect(err.message).not.toContain(keyB.toString("hex"));
      }
    }
    // Stat-like calls still work: the record needs no key.
    expect((await withB.head("k"))!.encoding.encryption).toEqual({ keyId: ringA.primary.id, objectId: OBJECT_ID });
  });

  test("with encryption off, an encrypted object is FAILED_PRECONDITION", async () => {
    const mem = createMemoryBackend();
    await codecOver(mem, createKeyring({ primary: keyA })).put("k", chunked(Buffer.from("secret")), meta());
    const err = await expectStorageError(codecOver(mem, undefined).get("k"), Code.FailedPrecondition);
    expect(err.message).toMatch(/encryption is not configured/);
  });

  test("rotation: old objects read with the previous key, new ones use the primary", async () => {
    const mem = createMemoryBackend();
    const ringA = createKeyring({ primary: keyA });
    const rotated = createKeyring({ primary: keyB, previous: [keyA] });
    const oldData = randomBytes(2 * SEG + 3);
    const newData = randomBytes(SEG + 9);
    await codecOver(mem, ringA, true).put("old", chunked(oldData), meta());
    const codec = codecOver(mem, rotated, true);
    const rec = await codec.put("new", chunked(newData), meta());
    expect(rec.encoding.encryption).toEqual({ keyId: deriveKeyId(keyB), objectId: OBJECT_ID });
    expect((await codec.head("old"))!.encoding.encryption).toEqual({ keyId: deriveKeyId(keyA), objectId: OBJECT_ID });
    expect((await readBody((await codec.get("old"))!.body)).equals(oldData)).toBe(true);
    expect((await readBody((await codec.get("new"))!.body)).equals(newData)).toBe(true);
    const part = await readBody((await codec.get("old", { range: { offset: SEG - 2, length: 5 } }))!.body);
    expect(part.equals(oldData.subarray(SEG - 2, SEG + 3))).toBe(true);
    // Once A is dropped, only the old object becomes unreadable.
    const onlyB = codecOver(mem, createKeyring({ primary: keyB }), true);
    await expectStorageError(onlyB.get("old"), Code.FailedPrecondition);
    expect((await readBody((await onlyB.get("new"))!.body)).equals(newData)).toBe(true);
  });
});
