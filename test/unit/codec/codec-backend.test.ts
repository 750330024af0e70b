/**
 * The codec layer over an in-memory backend: round trips for every
 * combination of compression and encryption, ranges in original bytes, kind
 * validation, verify, and the checksum of the original bytes on read.
 */
import { crc32c } from "@node-rs/crc32";
import { randomBytes } from "node:crypto";
import type { Backend, PutMeta } from "../../../server/backends/backend.js";
import { createCodecBackend, createKeyring, type CodecOptions } from "../../../server/codec/codec-backend.js";
import { Code, StorageError } from "../../../server/storage-error.js";
import { chunked, expectStorageError, readBody } from "../../support/backend-io.js";
import { createMemoryBackend } from "../../support/memory-backend.js";

const KiB = 1024;
const SEG = 64 * KiB;
const THRESHOLD = 1000;
const keyring = createKeyring({ primary: randomBytes(32) });

function makeCodec(mode: { compress: boolean; encrypt: boolean }, over: Partial<CodecOptions> = {}) {
  const mem = createMemoryBackend();
  const codec = createCodecBackend(mem, {
    compression: { enabled: mode.compress, thresholdBytes: THRESHOLD },
    encryption: mode.encrypt ? keyring : undefined,
    ...over,
  });
  return { mem, codec };
}

/** JSON-like text that gzip shrinks well, cut to exactly `n` bytes. */
function jsonLike(n: number): Buffer {
  const parts: string[] = [];
  for (let i = 0, len = 0; len < n; i++) {
    const part = `{"id":${i},"name":"item-${i % 97}","tags":["alpha","beta"],"score":${(i * 7) % 1000}},`;
    parts.push(part);
    len += part.length;
  }
  return Buffer.from(parts.join("").slice(0, n));
}

const meta = (over: Partial<PutMeta> = {}): PutMeta => ({
  kind: "BYTES",
  contentType: "application/octet-stream",
  metadata: {},
  ...over,
});

async function read(codec: Backend, key: string, range?: { offset: number; length?: number }) {
  const got = await codec.get(key, range && { range });
  return got && readBody(got.body);
}

const modes = [
  { compress: false, encrypt: false },
  { compress: true, encrypt: false },
  { compress: false, encrypt: true },
  { compress: true, encrypt: true },
];
const sizes = [0, 1, THRESHOLD - 1, THRESHOLD, SEG - 1, SEG, SEG + 1, 3 * SEG + 5];

describe.each(modes)("codec round trips (compress=$compress, encrypt=$encrypt)", (mode) => {
  for (const [dataName, make] of [
    ["json-like", jsonLike],
    ["random", (n: number) => randomBytes(n)],
  ] as const) {
    test.each(sizes)(`${dataName} data of %i bytes`, async (size) => {
      const { mem, codec } = makeCodec(mode);
      const data = make(size);
      const rec = await codec.put("k", chunked(data, 10_000 - 3), meta());
      const expectCompressed = mode.compress && dataName === "json-like" && size >= THRESHOLD;
      expect(rec.size).toBe(size);
      expect(rec.crc32c).toBe(crc32c(data));
      expect(rec.storedSize).toBe(mem.stored("k")!.length);
      expect(rec.encoding.compression).toBe(expectCompressed ? "gzip" : undefined);
      expect(rec.encoding.encryption).toEqual(mode.encrypt ? { keyId: keyring.primary.id, objectId: expect.stringMatching(/^[0-9a-f]{32}$/) } : undefined);
      if (!mode.encrypt && !expectCompressed) expect(mem.stored("k")!.equals(data)).toBe(true);
      if (expectCompressed && !mode.encrypt) expect(rec.storedSize).toBeLessThan(size);

      const got = await codec.get("k");
      expect(got!.record).toEqual(rec);
      expect((await readBody(got!.body)).equals(data)).toBe(true);
      expect(await codec.head("k")).toEqual(rec);
    });
  }

  test("ranges at segment edges select the original bytes", async () => {
    const { codec } = makeCodec(mode);
    for (const data of [jsonLike(3 * SEG + 5), randomBytes(3 * SEG + 5)]) {
      await codec.put("r", chunked(data, 50_000), meta());
      const offsets = [0, 1, SEG - 1, SEG, SEG + 1, 2 * SEG - 1, 2 * SEG, 3 * SEG, data.length - 1, data.length];
      for (const offset of offsets) {
        for (const length of [undefined, 0, 1, 2, SEG, SEG + 1, 10 * SEG]) {
          const got = await read(codec, "r", { offset, length });
          const want = data.subarray(offset, length === undefined ? undefined : offset + length);
          if (!got!.equals(want)) throw new Error(`range ${offset}+${length}: got ${got!.length} bytes, want ${want.length}`);
        }
      }
      await expectStorageError(codec.get("r", { range: { offset: data.length + 1 } }), Code.OutOfRange);
    }
  });

  test("an empty object reads empty, also with a range at 0", async () => {
    const { codec } = makeCodec(mode);
    await codec.put("e", chunked(Buffer.alloc(0)), meta());
    expect((await read(codec, "e"))!.length).toBe(0);
    expect((await read(codec, "e", { offset: 0 }))!.length).toBe(0);
    await expectStorageError(codec.get("e", { range: { offset: 1 } }), Code.OutOfRange);
  });

  test("TEXT must be UTF-8: invalid bytes fail the put and keep the old version", async () => {
    const { codec } = makeCodec(mode);
    const old = await codec.put("t", chunked(Buffer.from("old text")), meta({ kind: "TEXT" }));
    const bad = Buffer.concat([jsonLike(5000), Buffer.from([0xff, 0xfe]), jsonLike(5000)]);
    const err = await expectStorageError(codec.put("t", chunked(bad, 1000), meta({ kind: "TEXT" })), Code.InvalidArgument);
    expect(err.message).toMatch(/UTF-8/);
    // A multi-byte sequence cut off at the end is invalid too.
    const cut = Buffer.from("ok ✓").subarray(0, -1);
    await expectStorageError(codec.put("t", chunked(cut), meta({ kind: "TEXT" })), Code.InvalidArgument);
    expect(await codec.head("t")).toEqual(old);
    expect((await read(codec, "t"))!.toString()).toBe("old text");
  });

  test("TEXT with multi-byte characters split across chunks is accepted", async () => {
    const { codec } = makeCodec(mode);
    const text = Buffer.from("ünïcödé ✓ 日本語 😀 ".repeat(40));
    await codec.put("t", chunked(text, 1), meta({ kind: "TEXT", contentType: "text/plain" }));
    expect((await read(codec, "t"))!.equals(text)).toBe(true);
  });

  test("JSON must parse: invalid JSON fails the put and keeps the old version", async () => {
    const { codec } = makeCodec(mode);
    await codec.put("j", chunked(Buffer.from('{"v":1}')), meta({ kind: "JSON" }));
    for (const bad of ['{"v":', "", "{'single':1}", "[1,2,]", "NaN"]) {
      const err = await expectStorageError(codec.put("j", chunked(Buffer.from(bad)), meta({ kind: "JSON" })), Code.InvalidArgument);
      expect(err.message).toMatch(/^data is not valid JSON: /);
    }
    const valid = Buffer.from(JSON.stringify({ list: Array.from({ length: 5000 }, (_, i) => ({ i })) }));
    await codec.put("j2", chunked(valid, 777), meta({ kind: "JSON", contentType: "application/json" }));
    expect((await read(codec, "j"))!.toString()).toBe('{"v":1}');
    expect((await read(codec, "j2"))!.equals(valid)).toBe(true);
  });

  test("JSON nested deeper than maxJsonDepth is INVALID_ARGUMENT naming the limit; at the limit it is stored", async () => {
    const { codec } = makeCodec(mode, { maxJsonDepth: 50 });
    const nested = (depth: number) => Buffer.from("[".repeat(depth) + "]".repeat(depth));
    const err = await expectStorageError(codec.put("j", chunked(nested(51), 7), meta({ kind: "JSON" })), Code.InvalidArgument);
    expect(err.message).toContain("50 levels");
    expect(err.message).toContain("MAX_JSON_DEPTH");
    expect(await codec.head("j")).toBeUndefined();
    // Brackets inside strings (after escaped quotes and backslashes too) are not nesting.
    const tricky = JSON.stringify('[[["{' + "\\");
    const text = Buffer.from(`[${Array(40).fill(tricky).join(",")},${"[".repeat(49)}${"]".repeat(49)}]`);
    expect(() => JSON.parse(text.toString())).not.toThrow();
    await codec.put("j", chunked(text, 3), meta({ kind: "JSON" }));
    expect((await read(codec, "j"))!.equals(text)).toBe(true);
  });

  test("verify gets the original size and CRC32C; throwing aborts the put", async () => {
    const { codec } = makeCodec(mode);
    const data = jsonLike(3 * SEG + 5);
    let seen: { size: number; crc32c: number } | undefined;
    const old = await codec.put("v", chunked(data), meta(), { verify: (r) => void (seen = r) });
    expect(seen).toEqual({ size: data.length, crc32c: crc32c(data) });

    const rejection = new StorageError(Code.DataLoss, "trailer crc32c does not match");
    const err = await expectStorageError(
      codec.put("v", chunked(randomBytes(2 * SEG)), meta(), {
        verify: () => {
          throw rejection;
        },
      }),
    );
    expect(err).toBe(rejection);
    expect(await codec.head("v")).toEqual(old);
    expect((await read(codec, "v"))!.equals(data)).toBe(true);
  });

  test("a source that throws midway fails the put and keeps the old version", async () => {
    const { codec } = makeCodec(mode);
    const old = await codec.put("s", chunked(Buffer.from("old")), meta());
    async function* failing() {
      yield jsonLike(100_000);
      yield jsonLike(100_000);
      throw new StorageError(Code.Cancelled, "client went away");
    }
    await expectStorageError(codec.put("s", failing(), meta()), Code.Cancelled);
    expect(await codec.head("s")).toEqual(old);
  });

  test("an inner backend that fails midway releases the caller's source", async () => {
    const mem = createMemoryBackend();
    const failing: Backend = {
      ...mem,
      async put(_key, source) {
        let seen = 0;
        for await (const chunk of source) {
          seen += chunk.length;
          if (seen > 300_000) throw new StorageError(Code.Unavailable, "tier went away");
        }
        throw new Error("unreachable");
      },
    };
    const codec = createCodecBackend(failing, {
      compression: { enabled: mode.compress, thresholdBytes: THRESHOLD },
      encryption: mode.encrypt ? keyring : undefined,
    });
    let released = false;
    let pulled = 0;
    async function* source() {
      try {
        for (let i = 0; i < 1000; i++) {
          pulled++;
          yield jsonLike(64 * KiB);
        }
      } finally {
        released = true;
      }
    }
    await expectStorageError(codec.put("f", source(), meta()), Code.Unavailable);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(released).toBe(true);
    expect(pulled).toBeLessThan(100);
  });

  test("a reader that stops early releases the stored stream", async () => {
    const { mem, codec } = makeCodec(mode);
    const data = jsonLike(2 * 1024 * KiB);
    await codec.put("big", chunked(data), meta());
    const got = await codec.get("big");
    for await (const chunk of got!.body) {
      expect(chunk.length).toBeGreaterThan(0);
      break; // for-await destroys the body
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(mem.closedBodies).toBe(mem.openedBodies);
    expect(mem.servedBytes).toBeLessThan(mem.stored("big")!.length);
  });

  test("a changed stored byte is DATA_LOSS on a full read, never wrong bytes", async () => {
    const { mem, codec } = makeCodec(mode);
    const data = jsonLike(3 * SEG + 5);
    await codec.put("c", chunked(data), meta());
    const stored = mem.stored("c")!;
    // Somewhere past any header, inside the data.
    stored[Math.floor(stored.length / 2)] ^= 0x01;
    const got = await codec.get("c");
    await expectStorageError(readBody(got!.body), Code.DataLoss);
  });
});

describe("codec pass-through and records", () => {
  test("head, list and delete pass through and describe the original object", async () => {
    const { mem, codec } = makeCodec({ compress: true, encrypt: true });
    const data = Buffer.from(JSON.stringify({ rows: Array.from({ length: 2000 }, (_, i) => ({ i, name: `n${i}` })) }));
    const rec = await codec.put("dir/a.json", chunked(data), meta({ kind: "JSON", contentType: "application/json" }));
    await codec.put("dir/b", chunked(Buffer.from("b")), meta());
    expect(rec).toMatchObject({ key: "dir/a.json", kind: "JSON", size: data.length, crc32c: crc32c(data) });
    expect(rec.storedSize).toBe(mem.stored("dir/a.json")!.length);
    const page = await codec.list({ prefix: "dir/", limit: 10 });
    expect(page.objects.map((o) => o.key)).toEqual(["dir/a.json", "dir/b"]);
    expect(page.objects[0]).toEqual(rec);
    expect(await codec.delete("dir/a.json")).toBe(true);
    expect(await codec.get("dir/a.json")).toBeUndefined();
    await codec.probe();
    expect(codec.name).toBe("codec(memory)");
  });

  test("generation preconditions reach the inner backend", async () => {
    const { codec } = makeCodec({ compress: true, encrypt: true });
    const r1 = await codec.put("g", chunked(jsonLike(5000)), meta());
    await expectStorageError(codec.put("g", chunked(jsonLike(10)), meta(), { ifGenerationMatch: 0n }), Code.FailedPrecondition);
    await expectStorageError(codec.get("g", { ifGenerationMatch: r1.generation + 1n }), Code.FailedPrecondition);
    await expectStorageError(
      codec.get("g", { range: { offset: 10, length: 10 }, ifGenerationMatch: r1.generation + 1n }),
      Code.FailedPrecondition,
    );
    // The precondition wins over a range that only fits another version.
    await expectStorageError(
      codec.get("g", { range: { offset: 1_000_000 }, ifGenerationMatch: r1.generation + 1n }),
      Code.FailedPrecondition,
    );
    expect((await readBody((await codec.get("g", { range: { offset: 10, length: 10 }, ifGenerationMatch: r1.generation }))!.body)).toString()).toBe(
      jsonLike(20).subarray(10).toString(),
    );
  });

  test("a ranged read of an object replaced between head and read reads the new version", async () => {
    const mem = createMemoryBackend();
    const opts: CodecOptions = { compression: { enabled: false, thresholdBytes: THRESHOLD }, encryption: keyring };
    const writer = createCodecBackend(mem, opts);
    const v1 = randomBytes(3 * SEG);
    const v2 = randomBytes(3 * SEG);
    await writer.put("x", chunked(v1), meta());
    let raced = false;
    const racy: Backend = {
      ...mem,
      async head(key, o) {
        const rec = await mem.head(key, o);
        if (!raced) {
          raced = true;
          await writer.put(key, chunked(v2), meta());
        }
        return rec;
      },
    };
    const got = await createCodecBackend(racy, opts).get("x", { range: { offset: SEG + 1, length: 100 } });
    expect((await readBody(got!.body)).equals(v2.subarray(SEG + 1, SEG + 101))).toBe(true);
    expect(raced).toBe(true);
  });

  test("a plain object whose stored bytes changed fails its CRC32C on a full read", async () => {
    const { mem, codec } = makeCodec({ compress: false, encrypt: false });
    await codec.put("p", chunked(Buffer.from("hello world")), meta());
    mem.stored("p")![0] = "j".charCodeAt(0);
    const err = await expectStorageError(readBody((await codec.get("p"))!.body), Code.DataLoss);
    expect(err.message).toMatch(/checksum/);
  });

  test("bad ranges are INVALID_ARGUMENT", async () => {
    const { codec } = makeCodec({ compress: false, encrypt: true });
    await codec.put("x", chunked(Buffer.from("abc")), meta());
    await expectStorageError(codec.get("x", { range: { offset: -1 } }), Code.InvalidArgument);
    await expectStorageError(codec.get("x", { range: { offset: 0, length: 1.5 } }), Code.InvalidArgument);
  });

  test("a ranged read of a missing key is undefined", async () => {
    const { codec } = makeCodec({ compress: true, encrypt: true });
    expect(await codec.get("nope", { range: { offset: 5 } })).toBeUndefined();
  });

  test("the caller's meta is not changed", async () => {
    const { codec } = makeCodec({ compress: true, encrypt: true });
    const m = meta();
    await codec.put("m", chunked(jsonLike(5000)), m);
    expect(m).toEqual(meta());
  });
});
