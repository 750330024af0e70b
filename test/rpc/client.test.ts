/**
 * The client package against a real daemon on 127.0.0.1:0 (every method
 * round-trips). The pieces that need no daemon (CRC32C, kinds, options):
 * test/unit/client/client-offline.test.ts.
 */
import { randomBytes, createHash } from "node:crypto";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { Readable } from "node:stream";
import { crc32c as nativeCrc32c } from "@node-rs/crc32";
import { FileStorageClient, FileStorageError, status } from "../../client/src/index.js";
import { startDaemon } from "../support/daemon.js";
import { makeTempDir, type TempDir } from "../kit/temp-dir.js";

const MiB = 1024 * 1024;

describe("FileStorageClient against a daemon", () => {
  let daemon: Awaited<ReturnType<typeof startDaemon>>;
  let client: FileStorageClient;
  let tmp: TempDir;

  beforeAll(async () => {
    daemon = await startDaemon();
    client = new FileStorageClient(daemon.address);
    tmp = await makeTempDir("filestorage-client-");
  });

  afterAll(async () => {
    client?.close();
    await daemon?.stop();
    await tmp?.cleanup();
  });

  it("returns text, JSON and bytes exactly as stored", async () => {
    const values: [string, unknown][] = [
      ["kinds/text", "héllo wörld"],
      ["kinds/json-looking-text", '{"not":"parsed"}'],
      ["kinds/object", { a: 1, nested: { list: [1, "two", null] } }],
      ["kinds/array", [1, 2, 3]],
      ["kinds/number", 3.5],
      ["kinds/boolean", false],
      ["kinds/null", null],
      ["kinds/bytes", Buffer.from([0, 0xff, 0xfe, 0x80, 10])],
      ["kinds/empty", ""],
    ];
    for (const [key, value] of values) {
      const info = await client.store(key, value);
      expect(info.key).toBe(key);
      expect(await client.retrieve(key)).toEqual(value);
    }
    const bytes = await client.retrieve("kinds/bytes");
    expect(Buffer.isBuffer(bytes)).toBe(true);
    expect(typeof (await client.retrieve("kinds/json-looking-text"))).toBe("string");
  });

  it("keeps metadata, content type and kind in ObjectInfo", async () => {
    const expiresAt = new Date(Date.now() + 3_600_000);
    const info = await client.store("meta/one", { r: 1 }, {
      metadata: { owner: "task-7", tags: ["a", "b"], score: 0.5 },
      contentType: "application/json",
      expiresAt,
    });
    expect(info).toMatchObject({ kind: "json", size: 7, contentType: "application/json" });
    expect(info.metadata).toEqual({ owner: "task-7", tags: ["a", "b"], score: 0.5 });
    expect(typeof info.generation).toBe("bigint");
    expect(info.crc32c).toBe(nativeCrc32c(Buffer.from('{"r":1}')));
    const found = await client.retrieveWithInfo("meta/one");
    expect(found?.data).toEqual({ r: 1 });
    expect(found?.info.metadata).toEqual(info.metadata);
    expect((await client.stat("meta/one"))?.generation).toBe(info.generation);
  });

  it("answers null and false for missing keys", async () => {
    expect(await client.retrieve("missing/key")).toBeNull();
    expect(await client.retrieveWithInfo("missing/key")).toBeNull();
    expect(await client.stat("missing/key")).toBeNull();
    expect(await client.exists("missing/key")).toBe(false);
    expect(await client.delete("missing/key")).toBe(false);
  });

  it("exists and deletes, with generation preconditions", async () => {
    const first = await client.store("gen/a", "one");
    expect(await client.exists("gen/a")).toBe(true);
    await expect(client.store("gen/a", "two", { ifGenerationMatch: 0 })).rejects.toMatchObject({
      code: status.FAILED_PRECONDITION,
    });
    const second = await client.store("gen/a", "two", { ifGenerationMatch: first.generation });
    expect(second.generation > first.generation).toBe(true);
    await expect(client.delete("gen/a", { ifGenerationMatch: first.generation })).rejects.toBeInstanceOf(FileStorageError);
    expect(await client.delete("gen/a", { ifGenerationMatch: second.generation })).toBe(true);
    expect(await client.exists("gen/a")).toBe(false);
  });

  it("rejects bad keys with INVALID_ARGUMENT", async () => {
    await expect(client.store("../escape", "x")).rejects.toMatchObject({ code: status.INVALID_ARGUMENT });
  });

  it("stores and retrieves values over the unary limit through the streams", async () => {
    const big = randomBytes(5 * MiB + 123);
    const info = await client.store("big/bytes", big);
    expect(info.size).toBe(big.length);
    const back = (await client.retrieve("big/bytes")) as Buffer;
    expect(Buffer.compare(back, big)).toBe(0);
    const text = "x".repeat(5 * MiB);
    await client.store("big/text", text);
    expect(await client.retrieve("big/text")).toBe(text);
  });

  it("uploads and downloads 20 MiB files with progress", async () => {
    const source = path.join(tmp.path, "model.bin");
    const data = randomBytes(20 * MiB + 7);
    await fs.writeFile(source, data);
    const sent: number[] = [];
    const totals = new Set<number | undefined>();
    const info = await client.upload("files/model.bin", source, {
      onProgress: (n, total) => {
        sent.push(n);
        totals.add(total);
      },
    });
    expect(info).toMatchObject({ size: data.length, kind: "bytes", crc32c: nativeCrc32c(data) });
    expect(sent.length).toBeGreaterThanOrEqual(20);
    expect(sent).toEqual([...sent].sort((a, b) => a - b));
    expect(sent[sent.length - 1]).toBe(data.length);
    expect([...totals]).toEqual([data.length]);

    const target = path.join(tmp.path, "model.copy");
    const received: number[] = [];
    const got = await client.downloadToFile("files/model.bin", target, { onProgress: (n) => received.push(n) });
    expect(got.generation).toBe(info.generation);
    expect(received[received.length - 1]).toBe(data.length);
    expect(sha256(await fs.readFile(target))).toBe(sha256(data));
    expect((await fs.readdir(tmp.path)).filter((n) => n.endsWith(".partial"))).toEqual([]);

    const { info: streamed, stream } = await client.download("files/model.bin");
    expect(streamed.size).toBe(data.length);
    const hash = createHash("sha256");
    for await (const chunk of stream) hash.update(chunk as Buffer);
    expect(hash.digest("hex")).toBe(sha256(data));
  });

  it("uploads from a Readable and an async iterable of unknown size", async () => {
    const parts = [randomBytes(3 * MiB), randomBytes(100), randomBytes(MiB + 1)];
    const whole = Buffer.concat(parts);
    await client.upload("files/readable", Readable.from(parts), { chunkSize: 256 * 1024 });
    expect(Buffer.compare((await client.retrieve("files/readable")) as Buffer, whole)).toBe(0);
    async function* generate(): AsyncGenerator<Uint8Array> {
      yield* parts;
    }
    const info = await client.upload("files/iterable", generate(), { kind: "bytes", metadata: { from: "generator" } });
    expect(info.size).toBe(whole.length);
    expect(info.metadata).toEqual({ from: "generator" });
  });

  it("downloads a range from an offset", async () => {
    const data = randomBytes(3 * MiB);
    const info = await client.store("files/range", data);
    const { stream } = await client.download("files/range", { offset: MiB + 5, limit: 1000, ifGenerationMatch: info.generation });
    expect(Buffer.compare(await collect(stream), data.subarray(MiB + 5, MiB + 1005))).toBe(0);
    const tail = await client.download("files/range", { offset: 2 * MiB });
    expect(Buffer.compare(await collect(tail.stream), data.subarray(2 * MiB))).toBe(0);
    await expect(client.download("files/range", { ifGenerationMatch: info.generation + 1n })).rejects.toMatchObject({
      code: status.FAILED_PRECONDITION,
    });
    await expect(client.download("missing/key")).rejects.toMatchObject({ code: status.NOT_FOUND });
  });

  it("resumes an interrupted download from the partial file", async () => {
    const data = randomBytes(12 * MiB);
    const info = await client.store("files/resume", data);
    const target = path.join(tmp.path, "resume.bin");
    const abort = new AbortController();
    await expect(
      client.downloadToFile("files/resume", target, {
        signal: abort.signal,
        onProgress: (n) => n >= 3 * MiB && abort.abort(),
      }),
    ).rejects.toThrow();
    const partial = `${target}.g${info.generation}.partial`;
    const kept = (await fs.stat(partial)).size;
    expect(kept).toBeGreaterThan(0);
    expect(kept).toBeLessThan(data.length);
    await expect(fs.stat(target)).rejects.toThrow();

    const progress: number[] = [];
    await client.downloadToFile("files/resume", target, { resume: true, onProgress: (n) => progress.push(n) });
    expect(progress[0]).toBeGreaterThan(kept);
    expect(sha256(await fs.readFile(target))).toBe(sha256(data));
    await expect(fs.stat(partial)).rejects.toThrow();
  });

  it("starts over when the object changed since the partial download", async () => {
    const old = await client.store("files/changed", randomBytes(2 * MiB));
    const target = path.join(tmp.path, "changed.bin");
    await fs.writeFile(`${target}.g${old.generation}.partial`, randomBytes(MiB));
    const fresh = randomBytes(2 * MiB);
    await client.store("files/changed", fresh);
    await client.downloadToFile("files/changed", target, { resume: true });
    expect(Buffer.compare(await fs.readFile(target), fresh)).toBe(0);
    expect((await fs.readdir(tmp.path)).filter((n) => n.startsWith("changed.bin."))).toEqual([]);
  });

  it("starts over when the partial file is damaged, shorter or as long as the object", async () => {
    const data = randomBytes(2 * MiB);
    const info = await client.store("files/damaged", data);
    for (const [name, kept] of [["short.bin", MiB], ["whole.bin", data.length]] as const) {
      const target = path.join(tmp.path, name);
      const damaged = Buffer.from(data.subarray(0, kept));
      damaged[100] ^= 0xff;
      await fs.writeFile(`${target}.g${info.generation}.partial`, damaged);
      await client.downloadToFile("files/damaged", target, { resume: true });
      expect(Buffer.compare(await fs.readFile(target), data)).toBe(0);
      expect((await fs.readdir(tmp.path)).filter((n) => n.startsWith(`${name}.`))).toEqual([]);
    }
  });

  it("lists keys page by page and iterates over every page", async () => {
    const keys = Array.from({ length: 23 }, (_, i) => `list/k${String(i).padStart(2, "0")}`);
    for (const key of keys) await client.store(key, key);
    await client.store("list/sub/deeper", "d");

    const seen: string[] = [];
    for await (const key of client.iterateKeys({ prefix: "list/k", pageSize: 5 })) seen.push(key);
    expect(seen).toEqual(keys);

    const first = await client.listKeys({ prefix: "list/", limit: 10, includeInfo: true });
    expect(first.keys).toHaveLength(10);
    expect(first.nextPageToken).toBeDefined();
    expect(first.objects.map((o) => o.key)).toEqual(first.keys);
    const second = await client.listKeys({ prefix: "list/", limit: 10, pageToken: first.nextPageToken });
    expect(second.keys[0] > first.keys[9]).toBe(true);

    const rolled = await client.listKeys({ prefix: "list/", delimiter: "/" });
    expect(rolled.prefixes).toEqual(["list/sub/"]);
    expect(rolled.keys).toEqual(keys);
    expect(rolled.nextPageToken).toBeUndefined();
  });

  it("deletes many by keys and by prefix", async () => {
    for (const key of ["many/a", "many/b", "many/c", "other/x"]) await client.store(key, "v");
    expect(await client.deleteMany({ keys: ["other/x", "other/missing"] })).toBe(1);
    expect(await client.deleteMany({ prefix: "many/" })).toBe(3);
    expect(await client.exists("many/a")).toBe(false);
  });

  it("reports stats", async () => {
    const stats = await client.getStats();
    expect(stats.initialized).toBe(true);
    expect(typeof stats.version).toBe("string");
  });
});

function sha256(data: Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

async function collect(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

describe("upload abort", () => {
  test("an aborted upload rejects at once even while its source is stalled", async () => {
    const d = await startDaemon();
    const c = new FileStorageClient(d.address);
    try {
      const ac = new AbortController();
      async function* stalled() {
        yield Buffer.alloc(1024, 1);
        await new Promise((r) => setTimeout(r, 10_000));
        yield Buffer.alloc(1024, 2);
      }
      const started = Date.now();
      const upload = c.upload("abort/stalled", stalled(), { signal: ac.signal });
      setTimeout(() => ac.abort(), 200);
      await expect(upload).rejects.toBeDefined();
      expect(Date.now() - started).toBeLessThan(3000);
      expect(await c.exists("abort/stalled")).toBe(false);
    } finally {
      c.close();
      await d.stop();
    }
  });
});
