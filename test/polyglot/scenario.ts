/**
 * The shared client scenario (clients/SCENARIO.md) in TypeScript, written
 * the way a service would: it imports only `@filestorage/client` and Node's
 * own modules, so the same file runs in jest (test/rpc/ts-client-scenario)
 * and, compiled against the packed and installed client, as a program
 * (test/process/ts-client-package):
 *
 *   FILESTORAGE_ADDRESS=127.0.0.1:50051 SCENARIO_PREFIX=ts/1/ node scenario.js
 *
 * Each step prints "scenario: step N (name) held"; the first that does not
 * throws an Error naming the step and what differed.
 */
import { createHash } from "node:crypto";
import { isDeepStrictEqual } from "node:util";
import { crc32c, FileStorageClient, FileStorageError, status } from "@filestorage/client";

type Log = (line: string) => void;

const STEPS = ["text", "bytes", "json", "exists", "list", "stream", "precondition", "errors", "delete", "stats"] as const;

export async function runScenario(client: FileStorageClient, prefix: string, log: Log = console.log): Promise<void> {
  const P = prefix;
  const steps: Record<(typeof STEPS)[number], () => Promise<void>> = {
    async text() {
      const metadata = { tags: ["a", "b"], n: 3, nested: { x: true } };
      await client.store(P + "text", "héllo wörld", { metadata, contentType: "text/plain; charset=utf-8" });
      same("retrieve", await client.retrieve(P + "text"), "héllo wörld");
      const info = await mustStat(P + "text");
      same("kind", info.kind, "text");
      same("size", info.size, 13);
      same("metadata", info.metadata, metadata);
      same("content type", info.contentType, "text/plain; charset=utf-8");
      check("generation > 0", info.generation > 0n, info.generation);
      same("crc32c", info.crc32c, crc32c(Buffer.from("héllo wörld", "utf8")));
    },
    async bytes() {
      const png = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
      await client.store(P + "bytes", png);
      same("png", await client.retrieve(P + "bytes"), png);
      await client.store(P + "empty", Buffer.alloc(0));
      same("empty", await client.retrieve(P + "empty"), Buffer.alloc(0));
    },
    async json() {
      const value = { score: 0.93, items: [1, "two", null], ok: false };
      await client.store(P + "json", value);
      same("json", await client.retrieve(P + "json"), value);
      await client.store(P + "json-looking", '{"not": "json"}');
      same("json-looking", await client.retrieve(P + "json-looking"), '{"not": "json"}');
    },
    async exists() {
      same("exists text", await client.exists(P + "text"), true);
      same("exists missing", await client.exists(P + "missing"), false);
      same("retrieve missing", await client.retrieve(P + "missing"), null);
    },
    async list() {
      const all = [P + "bytes", P + "empty", P + "json", P + "json-looking", P + "text"];
      same("keys", (await client.listKeys({ prefix: P })).keys, all);
      const first = await client.listKeys({ prefix: P, limit: 2 });
      same("first page", first.keys, all.slice(0, 2));
      check("next page token", Boolean(first.nextPageToken), first.nextPageToken);
      const paged: string[] = [];
      for await (const key of client.iterateKeys({ prefix: P, pageSize: 2 })) paged.push(key);
      same("all pages", paged, all);
    },
    async stream() {
      const data = Buffer.alloc(3 * 1024 * 1024 + 17);
      for (let i = 0; i < data.length; i++) data[i] = (i * 31 + 7) % 251;
      const chunks = function* (): Generator<Uint8Array> {
        for (let at = 0; at < data.length; at += 64 * 1024) yield data.subarray(at, at + 64 * 1024);
      };
      const info = await client.upload(P + "stream", chunks(), { size: data.length, chunkSize: 64 * 1024 });
      same("stored size", info.size, data.length);
      const range = await client.download(P + "stream", { offset: 1048576, limit: 4096 });
      same("ranged bytes", await collect(range.stream), data.subarray(1048576, 1048576 + 4096));
      const whole = await client.download(P + "stream");
      same("sha256", sha256(await collect(whole.stream)), sha256(data));
    },
    async precondition() {
      const { generation } = await mustStat(P + "text");
      await expectCode("stale generation", status.FAILED_PRECONDITION, () =>
        client.store(P + "text", "héllo wörld", { ifGenerationMatch: generation + 12345n }),
      );
      const stored = await client.store(P + "text", "héllo wörld", { ifGenerationMatch: generation });
      check("generation rose", stored.generation > generation, stored.generation);
    },
    async errors() {
      await expectCode("key ../x", status.INVALID_ARGUMENT, () => client.store("../x", "v"));
      await expectCode("key with newline", status.INVALID_ARGUMENT, () => client.store(P + "a\nb", "v"));
      // stat() answers null for a missing key; the unary call under it is NOT_FOUND, which download surfaces.
      same("stat missing", await client.stat(P + "missing"), null);
      await expectCode("download missing", status.NOT_FOUND, () => client.download(P + "missing"));
      await expectCode("stale generation", status.FAILED_PRECONDITION, () =>
        client.store(P + "text", "x", { ifGenerationMatch: 999_999_999n }),
      );
      await expectCode("offset past the end", status.OUT_OF_RANGE, () => client.download(P + "bytes", { offset: 100 }));
      await expectCode("TEXT that is not UTF-8", status.INVALID_ARGUMENT, () =>
        client.store(P + "bad-text", Buffer.from([0xff, 0xfe]), { kind: "text" }),
      );
    },
    async delete() {
      same("delete", await client.delete(P + "bytes"), true);
      same("delete again", await client.delete(P + "bytes"), false);
      same("delete_many", await client.deleteMany({ prefix: P }), 5);
      same("left", (await client.listKeys({ prefix: P })).keys, []);
    },
    async stats() {
      const stats = await client.getStats();
      same("initialized", stats.initialized, true);
      check("total operations > 0", stats.totalOperations > 0, stats.totalOperations);
    },
  };

  for (const [i, name] of STEPS.entries()) {
    try {
      await steps[name]();
    } catch (err) {
      throw new Error(`step ${i + 1} (${name}): ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    log(`scenario: step ${i + 1} (${name}) held`);
  }

  async function mustStat(key: string) {
    const info = await client.stat(key);
    if (!info) throw new Error(`stat ${key}: missing`);
    return info;
  }
}

function same(what: string, got: unknown, want: unknown): void {
  if (!isDeepStrictEqual(got, want)) throw new Error(`${what}: got ${show(got)}, want ${show(want)}`);
}

function check(what: string, ok: boolean, got: unknown): void {
  if (!ok) throw new Error(`${what}: got ${show(got)}`);
}

async function expectCode(what: string, code: status, call: () => Promise<unknown>): Promise<void> {
  try {
    await call();
  } catch (err) {
    if (FileStorageError.is(err, code)) return;
    throw new Error(`${what}: want ${status[code]}, got ${err instanceof Error ? err.message : String(err)}`);
  }
  throw new Error(`${what}: want ${status[code]}, the call succeeded`);
}

async function collect(stream: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(Buffer.from(chunk));
  return Buffer.concat(parts);
}

function sha256(b: Uint8Array): string {
  return createHash("sha256").update(b).digest("hex");
}

function show(v: unknown): string {
  if (Buffer.isBuffer(v)) return `<${v.length} bytes ${v.subarray(0, 16).toString("hex")}>`;
  return JSON.stringify(v, (_k, x: unknown) => (typeof x === "bigint" ? `${x}n` : x));
}

async function main(): Promise<void> {
  const address = process.env.FILESTORAGE_ADDRESS;
  if (!address) {
    console.error("scenario: set FILESTORAGE_ADDRESS to the daemon's host:port");
    process.exit(2);
  }
  const client = new FileStorageClient(address);
  try {
    await runScenario(client, process.env.SCENARIO_PREFIX ?? `ts/${process.pid}/`);
    console.log("scenario: every step held");
  } catch (err) {
    console.error(`scenario: FAILED at ${err instanceof Error ? err.message : String(err)}`);
    process.exitCode = 1;
  } finally {
    client.close();
  }
}

if (require.main === module) void main();
