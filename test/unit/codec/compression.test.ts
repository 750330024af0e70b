/**
 * Compression in the codec: when it engages (threshold, content type, sample
 * test), savings reporting, ranges over gzip, corrupt gzip, and backpressure.
 */
import { crc32c } from "@node-rs/crc32";
import { randomBytes } from "node:crypto";
import { gunzipSync } from "node:zlib";
import type { Backend, ObjectRecord, PutMeta } from "../../../server/backends/backend.js";
import { createCodecBackend, createKeyring, type CodecOptions } from "../../../server/codec/codec-backend.js";
import { isCompressibleType, sampleCompresses } from "../../../server/codec/compression.js";
import { Code } from "../../../server/storage-error.js";
import { chunked, expectStorageError, readBody } from "../../support/backend-io.js";
import { createMemoryBackend } from "../../support/memory-backend.js";

const KiB = 1024;
const MiB = 1024 * KiB;

function jsonDoc(rows: number): Buffer {
  return Buffer.from(JSON.stringify(Array.from({ length: rows }, (_, i) => ({ id: i, name: `item-${i % 50}`, ok: i % 3 === 0 }))));
}

const meta = (over: Partial<PutMeta> = {}): PutMeta => ({
  kind: "BYTES",
  contentType: "application/octet-stream",
  metadata: {},
  ...over,
});

function makeCodec(over: Partial<CodecOptions> = {}) {
  const mem = createMemoryBackend();
  const saved: number[] = [];
  const codec = createCodecBackend(mem, {
    compression: { enabled: true, thresholdBytes: 1024 },
    onCompressionSaved: (n) => saved.push(n),
    ...over,
  });
  return { mem, codec, saved };
}

describe("what is worth compressing", () => {
  test.each([
    ["application/json", true],
    ["text/plain; charset=utf-8", true],
    ["application/octet-stream", true],
    ["image/svg+xml", true],
    ["IMAGE/PNG", false],
    ["image/jpeg", false],
    ["video/mp4", false],
    ["audio/ogg", false],
    ["application/zip", false],
    ["application/gzip", false],
    ["application/zstd", false],
    ["application/x-7z-compressed", false],
    ["application/vnd.rar", false],
  ])("%s compressible: %s", (type, expected) => {
    expect(isCompressibleType(type)).toBe(expected);
  });

  test("the sample test tells JSON from random bytes", async () => {
    expect(await sampleCompresses(jsonDoc(3000))).toBe(true);
    expect(await sampleCompresses(randomBytes(64 * KiB))).toBe(false);
    expect(await sampleCompresses(Buffer.alloc(0))).toBe(false);
  });
});

describe("compression in the codec", () => {
  test("JSON is stored gzip-compressed and smaller; savings are reported", async () => {
    const { mem, codec, saved } = makeCodec();
    const data = jsonDoc(20_000);
    const rec = await codec.put("r.json", chunked(data, 33_333), meta({ kind: "JSON", contentType: "application/json" }));
    expect(rec.encoding).toEqual({ compression: "gzip" });
    expect(rec.size).toBe(data.length);
    expect(rec.crc32c).toBe(crc32c(data));
    expect(rec.storedSize).toBeLessThan(data.length / 3);
    // Plain gzip: any tool can read the stored bytes.
    expect(gunzipSync(mem.stored("r.json")!).equals(data)).toBe(true);
    expect(saved).toEqual([data.length - rec.storedSize]);
    expect((await readBody((await codec.get("r.json"))!.body)).equals(data)).toBe(true);
  });

  test("incompressible random data is stored as is, and nothing is reported", async () => {
    const { mem, codec, saved } = makeCodec();
    const data = randomBytes(300 * KiB);
    const rec = await codec.put("rand", chunked(data), meta());
    expect(rec.encoding).toEqual({});
    expect(rec.storedSize).toBe(data.length);
    expect(mem.stored("rand")!.equals(data)).toBe(true);
    expect(saved).toEqual([]);
  });

  test("already-compressed content types are not compressed, SVG is", async () => {
    const { codec } = makeCodec();
    const data = Buffer.from("<svg>".padEnd(10_000, "<g/>"));
    expect((await codec.put("p.png", chunked(data), meta({ contentType: "image/png" }))).encoding).toEqual({});
    expect((await codec.put("p.zip", chunked(data), meta({ contentType: "application/zip" }))).encoding).toEqual({});
    expect((await codec.put("p.svg", chunked(data), meta({ contentType: "image/svg+xml" }))).encoding).toEqual({ compression: "gzip" });
  });

  test("the threshold: one byte short is stored plain, the threshold itself compressed", async () => {
    const { codec } = makeCodec({ compression: { enabled: true, thresholdBytes: 2000 } });
    const data = Buffer.from("abcabcabc".repeat(1000));
    expect((await codec.put("a", chunked(data.subarray(0, 1999)), meta())).encoding).toEqual({});
    expect((await codec.put("b", chunked(data.subarray(0, 2000)), meta())).encoding).toEqual({ compression: "gzip" });
  });

  test("a threshold above the sample size holds data until it is reached", async () => {
    const { codec } = makeCodec({ compression: { enabled: true, thresholdBytes: 200 * KiB } });
    const data = jsonDoc(20_000);
    expect(data.length).toBeGreaterThan(200 * KiB);
    expect((await codec.put("small", chunked(data.subarray(0, 200 * KiB - 1), 10_000), meta())).encoding).toEqual({});
    const rec = await codec.put("big", chunked(data.subarray(0, 200 * KiB), 10_000), meta());
    expect(rec.encoding).toEqual({ compression: "gzip" });
    expect((await readBody((await codec.get("big"))!.body)).equals(data.subarray(0, 200 * KiB))).toBe(true);
  });

  test("compression disabled stores everything plain", async () => {
    const { codec } = makeCodec({ compression: { enabled: false, thresholdBytes: 0 } });
    expect((await codec.put("j", chunked(jsonDoc(1000)), meta())).encoding).toEqual({});
  });

  test("gzip level is honoured", async () => {
    const data = jsonDoc(20_000);
    const fast = await makeCodec({ compression: { enabled: true, thresholdBytes: 0, level: 1 } }).codec.put("x", chunked(data), meta());
    const best = await makeCodec({ compression: { enabled: true, thresholdBytes: 0, level: 9 } }).codec.put("x", chunked(data), meta());
    expect(best.storedSize).toBeLessThan(fast.storedSize);
  });

  test("a range of a compressed object decodes only as far as needed and releases the stored stream", async () => {
    const { mem, codec } = makeCodec();
    const data = jsonDoc(200_000);
    await codec.put("big", chunked(data, MiB), meta());
    const offset = 1000;
    const got = await codec.get("big", { range: { offset, length: 5000 } });
    expect(got!.record.size).toBe(data.length);
    expect((await readBody(got!.body)).equals(data.subarray(offset, offset + 5000))).toBe(true);
    await new Promise((resolve) => setImmediate(resolve));
    expect(mem.closedBodies).toBe(mem.openedBodies);
    expect(mem.servedBytes).toBeLessThan(mem.stored("big")!.length / 4);
  });

  test("corrupt gzip data is DATA_LOSS", async () => {
    const { mem, codec } = makeCodec();
    const data = jsonDoc(20_000);
    await codec.put("z", chunked(data), meta());
    const stored = mem.stored("z")!;
    mem.replaceStored("z", Buffer.from(stored.subarray(0, stored.length - 100)));
    await expectStorageError(readBody((await codec.get("z"))!.body), Code.DataLoss);
    mem.replaceStored("z", Buffer.concat([stored.subarray(0, 10), Buffer.alloc(200, 0xff), stored.subarray(210)]));
    await expectStorageError(readBody((await codec.get("z"))!.body), Code.DataLoss);
    await expectStorageError(readBody((await codec.get("z", { range: { offset: 5, length: 10 } }))!.body), Code.DataLoss);
  });
});

describe("streaming", () => {
  test("a put honours backpressure: a stalled inner backend stops the source", async () => {
    // An inner backend that takes one chunk, then stalls until released.
    let release!: () => void;
    const stalled = new Promise<void>((resolve) => (release = resolve));
    let pulled = 0;
    let stored = 0;
    const sink: Backend = {
      ...createMemoryBackend(),
      async put(key, source, m): Promise<ObjectRecord> {
        for await (const chunk of source) {
          stored += chunk.length;
          await stalled;
        }
        return { key, size: m.size!, crc32c: m.crc32c!, storedSize: stored, encoding: m.encoding! } as ObjectRecord;
      },
    };
    const codec = createCodecBackend(sink, {
      compression: { enabled: true, thresholdBytes: 1024 },
      encryption: createKeyring({ primary: randomBytes(32) }),
    });
    const block = jsonDoc(10_000).subarray(0, 256 * KiB);
    async function* source() {
      for (let i = 0; i < 256; i++) {
        pulled += block.length;
        yield Buffer.from(block);
      }
    }
    const done = codec.put("big", source(), meta());
    await new Promise((resolve) => setTimeout(resolve, 300));
    // 64 MiB offered; only a few MiB may be in flight while the sink stalls.
    expect(pulled).toBeLessThan(8 * MiB);
    release();
    const rec = await done;
    expect(pulled).toBe(64 * MiB);
    expect(rec.size).toBe(64 * MiB);
    expect(rec.encoding.compression).toBe("gzip");
  });
});
