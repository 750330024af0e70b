/**
 * The backend conformance suite: every rule of the Backend contract
 * (server/backends/backend.ts), run against any implementation: each tier,
 * each layer over a tier, and the composed stack (one test file each in
 * test/conformance/).
 *
 * Usage, in a *.test.ts file:
 *   describeBackendConformance("local (fs)", async () => ({ backend, cleanup }), { outbox: true });
 *
 * `make` is called before every test and `cleanup` after it. Each test puts
 * its keys under its own unique prefix and lists only under it, so a factory
 * may hand out a shared store (one bucket) as long as it works.
 *
 * Where a layer legitimately differs from a raw tier, a toggle says so, with
 * its reason (ConformanceCaps); the affected tests then check what holds for
 * that layer instead, and carry the reason in their names. Ranges need no
 * toggle: they are in the bytes the backend's get returns (stored bytes for a
 * tier, original bytes for the codec), and the suite reads back exactly what
 * it wrote, so the same offsets hold for both.
 */
import { randomBytes } from "node:crypto";
import { crc32c } from "@node-rs/crc32";
import type { Backend, PutMeta } from "../../server/backends/backend.js";
import { compareKeys } from "../../server/backends/backend.js";
import { Code, StorageError } from "../../server/storage-error.js";
import { chunked, expectStorageError, readBody } from "../support/backend-io.js";

export interface ConformanceCaps {
  /** The backend is the local fallback tier: its `outbox` records `pending` writes and deletes. */
  outbox?: boolean;
  /**
   * Why the backend computes an object's original size, CRC32C and encoding
   * itself (it is or contains the codec), e.g. "codec: it computes size,
   * CRC32C and encoding itself". The raw-tier rule "PutMeta's size, crc32c
   * and encoding are recorded as given" is then replaced by "a caller's are
   * replaced by the codec's own".
   */
  codec?: string;
  /**
   * Why every object, the empty one too, is stored in other bytes than its
   * original ones (encryption), e.g. "AES: a header and a tag per segment".
   * Then storedSize exceeds size and encoding names the key, where a raw tier
   * has storedSize equal to size and an empty encoding.
   */
  encrypted?: string;
}

/** The toggles of every combination that contains the codec (the codec alone, the stack), without and with encryption. */
export const CODEC_TOGGLES = {
  plain: { codec: "codec: it computes the original size, CRC32C and encoding itself" },
  encrypting: {
    codec: "codec: it computes the original size, CRC32C and encoding itself",
    encrypted: "AES: every object is stored with a header and a tag per segment, under a named key",
  },
} satisfies Record<string, ConformanceCaps>;

export type BackendFactory = () => Promise<{ backend: Backend; cleanup(): Promise<void> }>;

const MiB = 1024 * 1024;

const plainMeta = (over: Partial<PutMeta> = {}): PutMeta => ({
  kind: "BYTES",
  contentType: "application/octet-stream",
  metadata: {},
  ...over,
});

let suiteCounter = 0;

/** A test's title, with the reason of the toggle that changed what it checks. */
const titled = (title: string, toggle: string | undefined) => (toggle === undefined ? title : `${title} (${toggle})`);

export function describeBackendConformance(name: string, make: BackendFactory, caps: ConformanceCaps = {}): void {
  describe(`Backend conformance: ${name}`, () => {
    let backend: Backend;
    let cleanup: () => Promise<void>;
    let base: string;
    let testCounter = 0;
    const suiteId = `${process.pid}-${++suiteCounter}-${randomBytes(4).toString("hex")}`;

    beforeEach(async () => {
      ({ backend, cleanup } = await make());
      base = `conf-${suiteId}-${++testCounter}/`;
    });
    afterEach(async () => {
      await backend.close();
      await cleanup();
    });

    /** A key under this test's own prefix. */
    const k = (s: string) => base + s;

    async function put(key: string, data: Uint8Array | string, meta: Partial<PutMeta> = {}, chunkSize?: number) {
      const bytes = typeof data === "string" ? Buffer.from(data) : data;
      return backend.put(key, chunked(bytes, chunkSize), plainMeta(meta));
    }

    async function read(key: string, opts?: Parameters<Backend["get"]>[1]): Promise<Buffer | undefined> {
      const got = await backend.get(key, opts);
      return got === undefined ? undefined : readBody(got.body);
    }

    /** Walks every page of a listing and returns all keys and prefixes seen. */
    async function listAll(prefix: string, limit: number, delimiter?: string) {
      const keys: string[] = [];
      const prefixes: string[] = [];
      let startAfter: string | undefined;
      for (let pages = 0; ; pages++) {
        if (pages > 1000) throw new Error("listing does not end");
        const page = await backend.list({ prefix, limit, startAfter, delimiter });
        expect(page.objects.length + page.prefixes.length).toBeLessThanOrEqual(limit);
        keys.push(...page.objects.map((o) => o.key));
        prefixes.push(...page.prefixes);
        if (page.next === undefined) break;
        startAfter = page.next;
      }
      return { keys, prefixes };
    }

    const sortUtf8 = (keys: string[]) => [...keys].sort(compareKeys);

    describe("put / get / head", () => {
      test("a miss is undefined or false, never an error", async () => {
        expect(await backend.get(k("missing"))).toBeUndefined();
        expect(await backend.head(k("missing"))).toBeUndefined();
        expect(await backend.delete(k("missing"))).toBe(false);
      });

      test(titled("round-trips an empty object", caps.encrypted), async () => {
        const rec = await backend.put(k("empty"), chunked(Buffer.alloc(0)), plainMeta());
        expect(rec.size).toBe(0);
        if (caps.encrypted) expect(rec.storedSize).toBeGreaterThan(0);
        else expect(rec.storedSize).toBe(0);
        expect(rec.crc32c).toBe(0);
        expect((await read(k("empty")))!.length).toBe(0);
        expect((await backend.head(k("empty")))!.size).toBe(0);
      });

      test("round-trips an empty source that yields nothing and one that yields empty chunks", async () => {
        async function* nothing(): AsyncGenerator<Uint8Array> {}
        async function* empties(): AsyncGenerator<Uint8Array> {
          yield new Uint8Array(0);
          yield Buffer.from("x");
          yield new Uint8Array(0);
        }
        await backend.put(k("none"), nothing(), plainMeta());
        await backend.put(k("empties"), empties(), plainMeta());
        expect((await read(k("none")))!.length).toBe(0);
        expect((await read(k("empties")))!.toString()).toBe("x");
      });

      test("round-trips one byte", async () => {
        await put(k("one"), Buffer.from([0xff]));
        expect(await read(k("one"))).toEqual(Buffer.from([0xff]));
      });

      test("round-trips a few MiB streamed in many odd-sized chunks", async () => {
        const data = randomBytes(3 * MiB + 17);
        const rec = await put(k("big"), data, {}, 64 * 1024 - 7);
        expect(rec.size).toBe(data.length);
        expect(rec.crc32c).toBe(crc32c(data));
        const back = await read(k("big"));
        expect(back!.length).toBe(data.length);
        expect(back!.equals(data)).toBe(true);
      });

      test("round-trips thousands of tiny chunks", async () => {
        const data = randomBytes(20_000);
        await put(k("tiny-chunks"), data, {}, 3);
        expect((await read(k("tiny-chunks")))!.equals(data)).toBe(true);
      });

      test("get and head return the same record as put", async () => {
        const rec = await put(k("r"), "hello");
        const got = await backend.get(k("r"));
        await readBody(got!.body);
        expect(got!.record).toEqual(rec);
        expect(await backend.head(k("r"))).toEqual(rec);
      });

      test(titled("records carry kind, content type, metadata, expiresAt and timestamps", caps.encrypted), async () => {
        const before = Date.now();
        const expiresAt = Date.now() + 3_600_000 + 123;
        const metadata = {
          tags: ["a", "b", "c d"],
          count: 3,
          ratio: 1.5,
          negative: -42,
          name: "ünïcödé ✓",
          flag: true,
          none: null,
          nested: { list: [1, "two", [3, { four: 4 }]], empty: {} },
          emptyList: [],
        };
        const rec = await put(k("meta.json"), '{"x":1}', {
          kind: "JSON",
          contentType: "application/json; charset=utf-8",
          metadata,
          expiresAt,
        });
        const after = Date.now();
        const got = await backend.get(k("meta.json"));
        got!.body.destroy();
        for (const r of [rec, await backend.head(k("meta.json")), got!.record]) {
          expect(r).toBeDefined();
          expect(r!.key).toBe(k("meta.json"));
          expect(r!.kind).toBe("JSON");
          expect(r!.contentType).toBe("application/json; charset=utf-8");
          expect(r!.metadata).toEqual(metadata);
          expect(r!.expiresAt).toBe(expiresAt);
          if (caps.encrypted) {
            // A small object is not compressed; it is encrypted with a named key.
            expect(r!.encoding.compression).toBeUndefined();
            expect(r!.encoding.encryption?.keyId).toEqual(expect.any(String));
          } else {
            expect(r!.encoding).toEqual({});
          }
          expect(["gcs", "local"]).toContain(r!.tier);
          expect(r!.pendingReplication).toBe(false);
          expect(typeof r!.generation).toBe("bigint");
          expect(r!.generation > 0n).toBe(true);
          // Clocks of an emulator may differ slightly; a minute of slack.
          expect(r!.createdAt).toBeGreaterThanOrEqual(before - 60_000);
          expect(r!.createdAt).toBeLessThanOrEqual(after + 60_000);
          expect(r!.updatedAt).toBeGreaterThanOrEqual(r!.createdAt);
        }
        const text = await put(k("t.txt"), "text", { kind: "TEXT", contentType: "text/plain" });
        expect(text.kind).toBe("TEXT");
        expect(text.expiresAt).toBeUndefined();
        expect((await backend.head(k("t.txt")))!.expiresAt).toBeUndefined();
      });

      test(titled("a raw put records the stored size and CRC32C as the original ones", caps.encrypted), async () => {
        const data = Buffer.from("some stored bytes");
        const rec = await put(k("raw"), data);
        expect(rec.size).toBe(data.length);
        expect(rec.crc32c).toBe(crc32c(data));
        if (caps.encrypted) {
          expect(rec.storedSize).toBeGreaterThan(data.length);
          expect(await backend.head(k("raw"))).toMatchObject({ size: data.length, storedSize: rec.storedSize, crc32c: crc32c(data) });
        } else {
          expect(rec.storedSize).toBe(data.length);
          expect(await backend.head(k("raw"))).toMatchObject({ size: data.length, storedSize: data.length, crc32c: crc32c(data) });
        }
      });

      const codecReason = caps.codec;
      if (codecReason !== undefined) {
        test(titled("a caller's size, crc32c and encoding are replaced by the codec's own", codecReason), async () => {
          const data = randomBytes(1000);
          const encoding = { compression: "gzip" as const, encryption: { keyId: "key-2024" } };
          const rec = await backend.put(k("enc"), chunked(data), plainMeta({ size: 5000, crc32c: 0xdeadbeef, encoding }));
          for (const r of [rec, await backend.head(k("enc"))]) {
            expect(r!.size).toBe(data.length);
            expect(r!.crc32c).toBe(crc32c(data));
            // Random bytes never compress; the key is the codec's, not the caller's.
            expect(r!.encoding.compression).toBeUndefined();
            expect(r!.encoding.encryption?.keyId).not.toBe("key-2024");
          }
          expect((await read(k("enc")))!.equals(data)).toBe(true);
        });
      }

      (codecReason === undefined ? test : test.skip)(titled("size, crc32c and encoding given by the codec round-trip beside the stored size", codecReason), async () => {
        const stored = randomBytes(1000);
        const encoding = { compression: "gzip" as const, encryption: { keyId: "key-2024" } };
        const rec = await backend.put(k("enc"), chunked(stored), plainMeta({ size: 5000, crc32c: 0xdeadbeef, encoding }));
        for (const r of [rec, await backend.head(k("enc"))]) {
          expect(r!.size).toBe(5000);
          expect(r!.crc32c).toBe(0xdeadbeef);
          expect(r!.storedSize).toBe(1000);
          expect(r!.encoding).toEqual(encoding);
        }
        // The body is the stored bytes, untouched.
        expect((await read(k("enc")))!.equals(stored)).toBe(true);
      });

      test("verify receives the size and CRC32C of what was received", async () => {
        const data = randomBytes(300_000);
        let seen: { size: number; crc32c: number } | undefined;
        await backend.put(k("v"), chunked(data, 10_000), plainMeta(), {
          verify: (received) => {
            seen = received;
          },
        });
        expect(seen).toEqual({ size: data.length, crc32c: crc32c(data) });
      });

      test("keys a, a/b and a/b/c coexist", async () => {
        await put(k("a"), "A");
        await put(k("a/b"), "AB");
        await put(k("a/b/c"), "ABC");
        expect((await read(k("a")))!.toString()).toBe("A");
        expect((await read(k("a/b")))!.toString()).toBe("AB");
        expect((await read(k("a/b/c")))!.toString()).toBe("ABC");
        expect(await backend.delete(k("a/b"))).toBe(true);
        expect((await read(k("a")))!.toString()).toBe("A");
        expect(await backend.head(k("a/b"))).toBeUndefined();
        expect((await read(k("a/b/c")))!.toString()).toBe("ABC");
      });

      test("keys that differ only in their extension do not collide", async () => {
        await put(k("x.json"), "json");
        await put(k("x.txt"), "txt");
        await put(k("x"), "bare");
        expect((await read(k("x.json")))!.toString()).toBe("json");
        expect((await read(k("x.txt")))!.toString()).toBe("txt");
        expect((await read(k("x")))!.toString()).toBe("bare");
      });

      test("unicode, spaces and punctuation in keys", async () => {
        const keys = ["日本語/ファイル.txt", "emoji 😀 key", "spaces  in  key ", "a%2Fb", "back\\slash", "q?#[]*!'\"&;=+,", "\u00e9", "e\u0301"];
        for (const [i, key] of keys.entries()) await put(k(key), `v${i}`);
        for (const [i, key] of keys.entries()) {
          expect((await read(k(key)))!.toString()).toBe(`v${i}`);
          expect((await backend.head(k(key)))!.key).toBe(k(key));
        }
        const listed = await listAll(base, 1000);
        expect(listed.keys).toEqual(sortUtf8(keys.map(k)));
      });
    });

    describe("generations and preconditions", () => {
      test("generations rise on every overwrite and after delete and re-create", async () => {
        const g1 = (await put(k("g"), "1")).generation;
        const g2 = (await put(k("g"), "2")).generation;
        const g3 = (await put(k("g"), "3")).generation;
        expect(g2 > g1).toBe(true);
        expect(g3 > g2).toBe(true);
        expect((await backend.head(k("g")))!.generation).toBe(g3);
        expect(await backend.delete(k("g"))).toBe(true);
        expect(await backend.head(k("g"))).toBeUndefined();
        const g4 = (await put(k("g"), "4")).generation;
        expect(g4 > g3).toBe(true);
      });

      test("put with ifGenerationMatch 0n writes only when absent", async () => {
        const rec = await backend.put(k("p0"), chunked(Buffer.from("first")), plainMeta(), { ifGenerationMatch: 0n });
        await expectStorageError(
          backend.put(k("p0"), chunked(Buffer.from("second")), plainMeta(), { ifGenerationMatch: 0n }),
          Code.FailedPrecondition,
        );
        expect((await read(k("p0")))!.toString()).toBe("first");
        expect((await backend.head(k("p0")))!.generation).toBe(rec.generation);
      });

      test("put with a matching generation writes; a mismatch fails and keeps the old version", async () => {
        const r1 = await put(k("pg"), "one");
        const r2 = await backend.put(k("pg"), chunked(Buffer.from("two")), plainMeta(), { ifGenerationMatch: r1.generation });
        expect(r2.generation > r1.generation).toBe(true);
        await expectStorageError(
          backend.put(k("pg"), chunked(Buffer.from("three")), plainMeta(), { ifGenerationMatch: r1.generation }),
          Code.FailedPrecondition,
        );
        expect((await read(k("pg")))!.toString()).toBe("two");
        expect(await backend.head(k("pg"))).toEqual(r2);
      });

      test("put with a generation on an absent key fails", async () => {
        await expectStorageError(
          backend.put(k("absent"), chunked(Buffer.from("x")), plainMeta(), { ifGenerationMatch: 12345n }),
          Code.FailedPrecondition,
        );
        expect(await backend.head(k("absent"))).toBeUndefined();
      });

      test("delete with ifGenerationMatch: a mismatch fails and keeps the object, a match deletes", async () => {
        const r1 = await put(k("d"), "keep");
        await expectStorageError(backend.delete(k("d"), { ifGenerationMatch: r1.generation + 1n }), Code.FailedPrecondition);
        expect((await read(k("d")))!.toString()).toBe("keep");
        expect(await backend.delete(k("d"), { ifGenerationMatch: r1.generation })).toBe(true);
        expect(await backend.head(k("d"))).toBeUndefined();
      });

      test("get with ifGenerationMatch: a mismatch fails, a match reads", async () => {
        const r1 = await put(k("gg"), "v1");
        await expectStorageError(backend.get(k("gg"), { ifGenerationMatch: r1.generation + 1n }), Code.FailedPrecondition);
        expect((await read(k("gg"), { ifGenerationMatch: r1.generation }))!.toString()).toBe("v1");
        const r2 = await put(k("gg"), "v2");
        await expectStorageError(backend.get(k("gg"), { ifGenerationMatch: r1.generation }), Code.FailedPrecondition);
        expect((await read(k("gg"), { ifGenerationMatch: r2.generation }))!.toString()).toBe("v2");
      });

      test("delete returns false for a missing key and true only once", async () => {
        await put(k("once"), "x");
        expect(await backend.delete(k("once"))).toBe(true);
        expect(await backend.delete(k("once"))).toBe(false);
      });
    });

    describe("ranges", () => {
      const data = Buffer.from("0123456789abcdefghij");

      test("offset and length select exact bytes", async () => {
        await put(k("r"), data);
        expect((await read(k("r"), { range: { offset: 0, length: 5 } }))!.toString()).toBe("01234");
        expect((await read(k("r"), { range: { offset: 10 } }))!.toString()).toBe("abcdefghij");
        expect((await read(k("r"), { range: { offset: 3, length: 4 } }))!.toString()).toBe("3456");
        expect((await read(k("r"), { range: { offset: 19, length: 1 } }))!.toString()).toBe("j");
        // A length past the end is cut at the end.
        expect((await read(k("r"), { range: { offset: 15, length: 100 } }))!.toString()).toBe("fghij");
      });

      test("offset == size gives an empty body; offset > size is OUT_OF_RANGE", async () => {
        await put(k("r"), data);
        expect((await read(k("r"), { range: { offset: data.length } }))!.length).toBe(0);
        await expectStorageError(backend.get(k("r"), { range: { offset: data.length + 1 } }), Code.OutOfRange);
      });

      test("a range of an empty object at offset 0 is empty", async () => {
        await put(k("e"), Buffer.alloc(0));
        expect((await read(k("e"), { range: { offset: 0 } }))!.length).toBe(0);
      });

      test("compressible text round-trips whole and in ranges anywhere in it", async () => {
        // What the codec gzips (a layer may store it in fewer bytes); a tier keeps it as it is.
        const line = (i: number) => `{"id":${i},"name":"item-${i % 97}","tags":["alpha","beta"]}\n`;
        const text = Buffer.from(Array.from({ length: 8000 }, (_, i) => line(i)).join(""));
        const rec = await put(k("text"), text, { kind: "TEXT", contentType: "text/plain" }, 10_000);
        expect(rec.size).toBe(text.length);
        expect(rec.crc32c).toBe(crc32c(text));
        expect((await read(k("text")))!.equals(text)).toBe(true);
        for (const [offset, length] of [[0, 1], [1, 99_999], [123_457, 70_001], [text.length - 5, undefined]] as const) {
          const got = await read(k("text"), { range: { offset, length } });
          expect(got!.equals(text.subarray(offset, length === undefined ? undefined : offset + length))).toBe(true);
        }
      });

      test("a range deep inside a multi-MiB object", async () => {
        const big = randomBytes(2 * MiB + 5);
        await put(k("big"), big, {}, MiB / 2 + 3);
        const off = MiB + 12345;
        const got = await read(k("big"), { range: { offset: off, length: 700_000 } });
        expect(got!.equals(big.subarray(off, off + 700_000))).toBe(true);
      });
    });

    describe("failed puts leave the old version intact", () => {
      async function* failingSource(err: Error): AsyncGenerator<Uint8Array> {
        yield randomBytes(300_000);
        yield randomBytes(300_000);
        throw err;
      }

      test("a source that throws midway", async () => {
        const old = await put(k("f"), "old");
        const err = await expectStorageError(
          backend.put(k("f"), failingSource(new StorageError(Code.InvalidArgument, "bad chunk")), plainMeta()),
        );
        expect(err.code).toBe(Code.InvalidArgument);
        expect((await read(k("f")))!.toString()).toBe("old");
        expect(await backend.head(k("f"))).toEqual(old);
      });

      test("a source that throws on a new key leaves nothing", async () => {
        await expect(backend.put(k("new"), failingSource(new StorageError(Code.InvalidArgument, "x")), plainMeta())).rejects.toThrow();
        expect(await backend.head(k("new"))).toBeUndefined();
        expect((await listAll(base, 100)).keys).toEqual([]);
      });

      test("a verify that throws", async () => {
        const old = await put(k("f"), "old");
        await expectStorageError(
          backend.put(k("f"), chunked(randomBytes(100_000)), plainMeta(), {
            verify: () => {
              throw new StorageError(Code.DataLoss, "trailer crc32c mismatch");
            },
          }),
          Code.DataLoss,
        );
        expect((await read(k("f")))!.toString()).toBe("old");
        expect(await backend.head(k("f"))).toEqual(old);
      });

      test("a signal aborted midway", async () => {
        const old = await put(k("f"), "old");
        const ac = new AbortController();
        async function* source(): AsyncGenerator<Uint8Array> {
          yield randomBytes(200_000);
          ac.abort();
          // A slow client: the backend must not wait for the rest.
          for (let i = 0; i < 20; i++) {
            await new Promise((r) => setTimeout(r, 5));
            yield randomBytes(200_000);
          }
        }
        await expectStorageError(backend.put(k("f"), source(), plainMeta(), { signal: ac.signal }));
        expect((await read(k("f")))!.toString()).toBe("old");
        expect(await backend.head(k("f"))).toEqual(old);
      });

      test("a signal aborted before the put", async () => {
        const old = await put(k("f"), "old");
        await expectStorageError(
          backend.put(k("f"), chunked(Buffer.from("new")), plainMeta(), { signal: AbortSignal.abort() }),
        );
        expect(await backend.head(k("f"))).toEqual(old);
      });

      test("concurrent puts to one key leave one complete version, never a torn one", async () => {
        const versions = [randomBytes(MiB + 1), randomBytes(MiB + 2), randomBytes(MiB + 3)];
        const results = await Promise.allSettled(versions.map((v) => put(k("c"), v, {}, 32 * 1024)));
        expect(results.some((r) => r.status === "fulfilled")).toBe(true);
        const got = await backend.get(k("c"));
        const body = await readBody(got!.body);
        const match = versions.findIndex((v) => v.equals(body));
        expect(match).toBeGreaterThanOrEqual(0);
        expect(got!.record.size).toBe(versions[match].length);
        expect(got!.record.crc32c).toBe(crc32c(versions[match]));
        // The winner is the version with the highest generation.
        const generations = results.flatMap((r) => (r.status === "fulfilled" ? [r.value.generation] : []));
        const highest = generations.reduce((a, b) => (a > b ? a : b));
        expect(got!.record.generation).toBe(highest);
      });
    });

    describe("list", () => {
      // "\uff5e" sorts before "😀" in UTF-8 bytes but after it in UTF-16 code units.
      const names = ["b", "a", "a/b", "a-b", "a0", "B", "é", "\uff5e", "😀", "a/b/c", "z z", "~"];

      test("is sorted by UTF-8 bytes and restricted to the prefix", async () => {
        for (const n of names) await put(k(n), n);
        await put(`${base.slice(0, -1)}-outside`, "x");
        const page = await backend.list({ prefix: base, limit: 1000 });
        expect(page.objects.map((o) => o.key)).toEqual(sortUtf8(names.map(k)));
        expect(page.prefixes).toEqual([]);
        expect(page.next).toBeUndefined();
        const a = await backend.list({ prefix: k("a"), limit: 1000 });
        expect(a.objects.map((o) => o.key)).toEqual(sortUtf8(["a", "a/b", "a-b", "a0", "a/b/c"].map(k)));
        await backend.delete(`${base.slice(0, -1)}-outside`);
      });

      test("listed records equal head", async () => {
        await put(k("one"), "1", { kind: "TEXT", metadata: { tags: ["x"] } });
        await put(k("two"), "22", { kind: "JSON", expiresAt: Date.now() + 99_999 });
        const page = await backend.list({ prefix: base, limit: 10 });
        expect(page.objects).toHaveLength(2);
        for (const rec of page.objects) expect(rec).toEqual(await backend.head(rec.key));
      });

      test("an empty prefix range lists nothing", async () => {
        const page = await backend.list({ prefix: k("nothing-here/"), limit: 10 });
        expect(page).toEqual({ objects: [], prefixes: [] });
      });

      test("limit and startAfter page through every key exactly once", async () => {
        for (const n of names) await put(k(n), n);
        const all = sortUtf8(names.map(k));
        for (const limit of [1, 2, 3, 5, names.length, names.length + 1]) {
          const walked = await listAll(base, limit);
          expect(walked.keys).toEqual(all);
        }
        const first = await backend.list({ prefix: base, limit: 3 });
        expect(first.objects.map((o) => o.key)).toEqual(all.slice(0, 3));
        expect(first.next).toBeDefined();
        // startAfter is exclusive, and need not be an existing key.
        const after = await backend.list({ prefix: base, limit: 100, startAfter: all[4] });
        expect(after.objects.map((o) => o.key)).toEqual(all.slice(5));
        const afterGap = await backend.list({ prefix: base, limit: 100, startAfter: k("a/a") });
        expect(afterGap.objects.map((o) => o.key)).toEqual(all.filter((key) => compareKeys(key, k("a/a")) > 0));
      });

      test("a delimiter rolls keys up into prefixes", async () => {
        const keys = ["x/1", "x/2", "x/y/3", "x", "y", "z/1", "z/2/3", "zz", "a-", "a/", "a/1"];
        for (const n of keys) await put(k(n), n);
        const page = await backend.list({ prefix: base, limit: 100, delimiter: "/" });
        expect(page.objects.map((o) => o.key)).toEqual(sortUtf8(["x", "y", "zz", "a-"].map(k)));
        expect(page.prefixes).toEqual(sortUtf8(["a/", "x/", "z/"].map(k)));
        const inside = await backend.list({ prefix: k("x/"), limit: 100, delimiter: "/" });
        expect(inside.objects.map((o) => o.key)).toEqual([k("x/1"), k("x/2")]);
        expect(inside.prefixes).toEqual([k("x/y/")]);
      });

      test("paging across rolled-up prefixes neither repeats nor loses any", async () => {
        const keys = ["a", "b/1", "b/2", "b/3", "b/c/4", "c", "d/1", "d/2", "e", "f/1", "f0", "f/~", "g"];
        for (const n of keys) await put(k(n), n);
        const full = await backend.list({ prefix: base, limit: 1000, delimiter: "/" });
        expect(full.objects.map((o) => o.key)).toEqual(sortUtf8(["a", "c", "e", "f0", "g"].map(k)));
        expect(full.prefixes).toEqual(sortUtf8(["b/", "d/", "f/"].map(k)));
        for (const limit of [1, 2, 3, 4]) {
          const walked = await listAll(base, limit, "/");
          expect(walked.keys).toEqual(full.objects.map((o) => o.key));
          expect(walked.prefixes).toEqual(full.prefixes);
        }
        // startAfter a rolled-up prefix continues after every key under it.
        const afterB = await backend.list({ prefix: base, limit: 100, startAfter: k("b/"), delimiter: "/" });
        expect(afterB.objects.map((o) => o.key)).toEqual(sortUtf8(["c", "e", "f0", "g"].map(k)));
        expect(afterB.prefixes).toEqual(sortUtf8(["d/", "f/"].map(k)));
      });
    });

    test("probe resolves", async () => {
      await expect(backend.probe()).resolves.toBeUndefined();
    });

    if (caps.outbox) {
      describe("outbox", () => {
        const box = () => {
          if (!backend.outbox) throw new Error("backend has no outbox");
          return backend.outbox;
        };
        const pendingPut = (key: string, data: string) =>
          backend.put(key, chunked(Buffer.from(data)), plainMeta(), { pending: true });

        test("a pending put is flagged and has one outbox entry", async () => {
          const rec = await pendingPut(k("p"), "v1");
          expect(rec.pendingReplication).toBe(true);
          expect((await backend.head(k("p")))!.pendingReplication).toBe(true);
          const entry = box().get(k("p"));
          expect(entry).toMatchObject({ key: k("p"), op: "put", generation: rec.generation });
          expect(entry!.createdAt).toBeGreaterThan(Date.now() - 60_000);
          expect(box().stats().count).toBe(1);
          // A plain put of another key has none.
          const other = await put(k("q"), "x");
          expect(other.pendingReplication).toBe(false);
          expect(box().get(k("q"))).toBeUndefined();
        });

        test("a newer change replaces the entry with a new seq; completing the old one fails", async () => {
          await pendingPut(k("p"), "v1");
          const first = box().get(k("p"))!;
          const rec2 = await pendingPut(k("p"), "v2");
          const second = box().get(k("p"))!;
          expect(second.seq).toBeGreaterThan(first.seq);
          expect(second.generation).toBe(rec2.generation);
          expect(box().stats().count).toBe(1);
          expect(box().complete(first, { dropLocalCopy: true })).toBe(false);
          expect((await read(k("p")))!.toString()).toBe("v2");
          expect(box().get(k("p"))).toEqual(second);
        });

        test("complete removes the entry and keeps or drops the local copy", async () => {
          await pendingPut(k("keep"), "k");
          await pendingPut(k("drop"), "d");
          expect(box().complete(box().get(k("keep"))!)).toBe(true);
          expect(box().get(k("keep"))).toBeUndefined();
          const kept = await backend.head(k("keep"));
          expect(kept!.pendingReplication).toBe(false);
          expect(box().complete(box().get(k("drop"))!, { dropLocalCopy: true })).toBe(true);
          expect(await backend.head(k("drop"))).toBeUndefined();
          expect(await backend.get(k("drop"))).toBeUndefined();
          expect(box().stats()).toEqual({ count: 0 });
          expect((await listAll(base, 100)).keys).toEqual([k("keep")]);
        });

        test("list is oldest first and stats count them", async () => {
          const t0 = Date.now();
          for (const n of ["c", "a", "b"]) await pendingPut(k(n), n);
          await pendingPut(k("c"), "c2"); // c moves to the end
          const mine = box()
            .list(1000)
            .filter((e) => e.key.startsWith(base));
          expect(mine.map((e) => e.key)).toEqual([k("a"), k("b"), k("c")]);
          const seqs = mine.map((e) => e.seq);
          expect([...seqs].sort((x, y) => x - y)).toEqual(seqs);
          expect(box().list(1)).toHaveLength(1);
          const stats = box().stats();
          expect(stats.count).toBeGreaterThanOrEqual(3);
          expect(stats.oldestCreatedAt).toBeGreaterThanOrEqual(t0 - 60_000);
        });

        test("a pending delete records a tombstone, also for a key absent here", async () => {
          expect(await backend.delete(k("absent"), { pending: true })).toBe(false);
          expect(box().get(k("absent"))).toMatchObject({ key: k("absent"), op: "delete" });
          expect(await backend.head(k("absent"))).toBeUndefined();
          expect(await backend.get(k("absent"))).toBeUndefined();

          const rec = await pendingPut(k("present"), "x");
          expect(await backend.delete(k("present"), { pending: true })).toBe(true);
          const entry = box().get(k("present"))!;
          expect(entry.op).toBe("delete");
          expect(entry.generation >= rec.generation).toBe(true);
          expect(await backend.head(k("present"))).toBeUndefined();
          expect((await listAll(base, 100)).keys).toEqual([]);
          // Replicated: the tombstone goes away.
          expect(box().complete(entry)).toBe(true);
          expect(box().get(k("present"))).toBeUndefined();
        });

        test("a put after a pending delete replaces the tombstone", async () => {
          await backend.delete(k("t"), { pending: true });
          const tomb = box().get(k("t"))!;
          const rec = await pendingPut(k("t"), "back");
          const entry = box().get(k("t"))!;
          expect(entry).toMatchObject({ op: "put", generation: rec.generation });
          expect(entry.seq).toBeGreaterThan(tomb.seq);
          expect(box().complete(tomb)).toBe(false);
        });

        test("a failed pending put records nothing", async () => {
          async function* bad(): AsyncGenerator<Uint8Array> {
            yield Buffer.from("x");
            throw new StorageError(Code.InvalidArgument, "bad");
          }
          await expectStorageError(backend.put(k("bad"), bad(), plainMeta(), { pending: true }), Code.InvalidArgument);
          await expectStorageError(
            backend.put(k("bad"), chunked(Buffer.from("x")), plainMeta(), { pending: true, ifGenerationMatch: 7n }),
            Code.FailedPrecondition,
          );
          expect(box().get(k("bad"))).toBeUndefined();
        });
      });
    }
  });
}

