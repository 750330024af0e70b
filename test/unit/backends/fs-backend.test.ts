/**
 * What only the local backend has: the leftover sweep, identities, blob
 * files and inline objects, reopening, clock steps, group commits, close.
 * The shared contract: test/conformance/local.test.ts.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import Database from "better-sqlite3";
import type { PutMeta } from "../../../server/backends/backend.js";
import { INLINE_MAX_BYTES, createFsBackend } from "../../../server/backends/fs/fs-backend.js";
import { Code } from "../../../server/storage-error.js";
import { chunked, expectStorageError, readBody } from "../../support/backend-io.js";
import { makeTempDir, type TempDir } from "../../kit/temp-dir.js";

const meta: PutMeta = { kind: "BYTES", contentType: "application/octet-stream", metadata: {} };
/** A body over the inline limit, so it is kept in a blob file. */
const large = (fill: number | string) => Buffer.alloc(INLINE_MAX_BYTES + 1, fill);

/** Every file under `dir`, as paths relative to it. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await fs.readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => path.relative(dir, path.join(e.parentPath, e.name)));
}

describe("fs backend", () => {
  let dir: TempDir;
  let root: string;
  beforeEach(async () => {
    dir = await makeTempDir("fs-backend-");
    root = path.join(dir.path, "store");
  });
  afterEach(() => dir.cleanup());

  test("the leftover sweep removes crash leftovers: files in tmp/ and unreferenced blobs", async () => {
    const backend = await createFsBackend({ root });
    await backend.put("kept", chunked(large("kept")), meta);
    await backend.close();
    const before = (await filesUnder(path.join(root, "blobs"))).sort();
    expect(before).toHaveLength(1);
    await fs.writeFile(path.join(root, "tmp", "0123456789abcdef"), "half an upload");
    await fs.writeFile(path.join(root, "blobs", "ab", "ab00000000000000000000000000dead"), "orphan");

    const reopened = await createFsBackend({ root });
    await reopened.sweepLeftovers();
    expect(await fs.readdir(path.join(root, "tmp"))).toEqual([]);
    expect((await filesUnder(path.join(root, "blobs"))).sort()).toEqual(before);
    expect((await readBody((await reopened.get("kept"))!.body)).equals(large("kept"))).toBe(true);
    await reopened.close();
  });

  test("an identity is created once and survives a reopen", async () => {
    const backend = await createFsBackend({ root });
    const first = backend.identity("store-id", () => "one");
    expect(first).toBe("one");
    expect(backend.identity("store-id", () => "two")).toBe("one");
    await backend.close();
    const reopened = await createFsBackend({ root });
    expect(reopened.identity("store-id", () => "three")).toBe("one");
    expect(reopened.identity("other-id", () => "w")).toBe("w");
    await reopened.close();
  });

  test("failed puts leave no file behind", async () => {
    const backend = await createFsBackend({ root });
    async function* failing() {
      yield Buffer.alloc(3 * 1024 * 1024, 1);
      throw new Error("client went away");
    }
    await expectStorageError(backend.put("k", failing(), meta), Code.Unknown);
    await expectStorageError(
      backend.put("k", chunked(Buffer.from("x")), meta, {
        verify: () => {
          throw new Error("no");
        },
      }),
    );
    expect(await filesUnder(path.join(root, "tmp"))).toEqual([]);
    expect(await filesUnder(path.join(root, "blobs"))).toEqual([]);
    await backend.close();
  });

  test("an overwrite and a delete remove the old blob", async () => {
    const backend = await createFsBackend({ root });
    await backend.put("k", chunked(large(1)), meta);
    await backend.put("k", chunked(large(2)), meta);
    expect(await filesUnder(path.join(root, "blobs"))).toHaveLength(1);
    // Overwritten by a small (inline) version: the file goes too.
    await backend.put("k", chunked(Buffer.from("small")), meta);
    expect(await filesUnder(path.join(root, "blobs"))).toEqual([]);
    await backend.put("k", chunked(large(3)), meta);
    await backend.delete("k");
    expect(await filesUnder(path.join(root, "blobs"))).toEqual([]);
    await backend.close();
  });

  test("weird but valid keys stay inside the root and round-trip", async () => {
    const backend = await createFsBackend({ root });
    const keys = [
      "..a/b..",
      "a/.../b",
      "~/etc/passwd",
      "%2e%2e/%2e%2e/etc/passwd",
      "C:\\Windows\\system32",
      "tab\there",
      "spaces and  more ",
      "日本語/ファイル名.txt",
      "😀".repeat(256), // 1024 bytes of UTF-8
      "k".repeat(1024),
      "a".repeat(1023) + "/",
    ];
    const body = (key: string) => Buffer.concat([Buffer.from(key), large(0)]);
    for (const key of keys) await backend.put(key, chunked(body(key)), meta);
    for (const key of keys) expect((await readBody((await backend.get(key))!.body)).equals(body(key))).toBe(true);
    // Nothing but the lock, the index and blob files named by id.
    const files = await filesUnder(dir.path);
    for (const f of files) expect(f).toMatch(/^store\/(lock(-journal)?|index\.sqlite(-wal|-shm)?|blobs\/[0-9a-f]{2}\/[0-9a-f]{32})$/);
    expect(files.filter((f) => f.startsWith("store/blobs/"))).toHaveLength(keys.length);
    await backend.close();
  });

  test("a blob corrupted on disk is DATA_LOSS on a full read", async () => {
    const backend = await createFsBackend({ root });
    const data = Buffer.alloc(3 * 1024 * 1024 + 5, 7);
    await backend.put("c", chunked(data), meta);
    const [blob] = await filesUnder(path.join(root, "blobs"));
    const file = path.join(root, "blobs", blob);
    const handle = await fs.open(file, "r+");
    await handle.write(Buffer.from([8]), 0, 1, 2 * 1024 * 1024);
    await handle.close();
    const got = await backend.get("c");
    await expectStorageError(readBody(got!.body), Code.DataLoss);
    // A truncated blob too.
    await fs.truncate(file, 100);
    await expectStorageError(readBody((await backend.get("c"))!.body), Code.DataLoss);
    await backend.close();
  });

  test("reopening keeps data, records and outbox entries, and generations keep rising", async () => {
    const first = await createFsBackend({ root });
    const rec = await first.put("k", chunked(Buffer.from("v1")), { ...meta, metadata: { tags: ["a"] } }, { pending: true });
    await first.delete("gone", { pending: true });
    const entries = first.outbox.list(10);
    await first.close();

    const second = await createFsBackend({ root });
    expect(await second.head("k")).toEqual(rec);
    expect((await readBody((await second.get("k"))!.body)).toString()).toBe("v1");
    expect(second.outbox.list(10)).toEqual(entries);
    expect(entries.map((e) => [e.key, e.op])).toEqual([
      ["k", "put"],
      ["gone", "delete"],
    ]);
    const rec2 = await second.put("k", chunked(Buffer.from("v2")), meta);
    expect(rec2.generation > entries[1].generation).toBe(true);
    await second.close();
  });

  test("generations rise even when the clock goes back", async () => {
    const backend = await createFsBackend({ root });
    const g1 = (await backend.put("k", chunked(Buffer.from("1")), meta)).generation;
    const realNow = Date.now;
    try {
      Date.now = () => realNow() - 3_600_000;
      const g2 = (await backend.put("k", chunked(Buffer.from("2")), meta)).generation;
      expect(g2 > g1).toBe(true);
    } finally {
      Date.now = realNow;
    }
    await backend.close();
  });

  test("expired lists keys whose expiry has passed; get still returns them", async () => {
    const backend = await createFsBackend({ root });
    const now = Date.now();
    await backend.put("old", chunked(Buffer.from("x")), { ...meta, expiresAt: now - 1000 });
    await backend.put("older", chunked(Buffer.from("x")), { ...meta, expiresAt: now - 2000 });
    await backend.put("later", chunked(Buffer.from("x")), { ...meta, expiresAt: now + 60_000 });
    await backend.put("never", chunked(Buffer.from("x")), meta);
    expect(backend.expired(now, 10)).toEqual(["older", "old"]);
    expect(backend.expired(now, 1)).toEqual(["older"]);
    expect(await backend.head("old")).toBeDefined();
    await backend.close();
  });

  test("small chunks are coalesced and large uploads stream", async () => {
    const backend = await createFsBackend({ root, fsync: false });
    const piece = Buffer.alloc(1000, 3);
    async function* many() {
      for (let i = 0; i < 5000; i++) yield piece;
    }
    const rec = await backend.put("many", many(), meta);
    expect(rec.size).toBe(5_000_000);
    const body = await readBody((await backend.get("many"))!.body);
    expect(body.equals(Buffer.alloc(5_000_000, 3))).toBe(true);
    await backend.close();
  });

  test("reads racing overwrites and deletes see a whole version or nothing", async () => {
    const backend = await createFsBackend({ root, fsync: false });
    // Over the inline limit: the race is between a row and the blob file it names.
    const versions = Array.from({ length: 4 }, (_, i) => Buffer.alloc(INLINE_MAX_BYTES + 1000 + i, i + 1));
    await backend.put("k", chunked(versions[0]), meta);
    let writing = true;
    const writer = (async () => {
      for (let i = 1; i < 100; i++) {
        if (i % 25 === 0) await backend.delete("k");
        else await backend.put("k", chunked(versions[i % versions.length]), meta);
      }
      writing = false;
    })();
    // Several readers, so some read a row whose blob an overwrite unlinks before they open it.
    const reader = async () => {
      let reads = 0;
      while (writing || reads < 20) {
        const got = await backend.get("k");
        reads++;
        if (got === undefined) {
          // A miss resolves without I/O: give the writer a turn.
          await new Promise((r) => setImmediate(r));
          continue;
        }
        const body = await readBody(got.body);
        expect(versions.some((v) => v.equals(body))).toBe(true);
        expect(body.length).toBe(got.record.size);
      }
    };
    await Promise.all([writer, ...Array.from({ length: 8 }, reader)]);
    await backend.close();
  });

  test("small objects live inline in the index: no file, durable across reopen, ranges, corruption is DATA_LOSS", async () => {
    const backend = await createFsBackend({ root });
    const small = Buffer.alloc(INLINE_MAX_BYTES, 7);
    small[0] = 1;
    await backend.put("inline", chunked(small, 1000), meta);
    expect(await filesUnder(path.join(root, "blobs"))).toEqual([]);
    expect(await fs.readdir(path.join(root, "tmp"))).toEqual([]);
    const part = await readBody((await backend.get("inline", { range: { offset: 10, length: 5 } }))!.body);
    expect(part.equals(small.subarray(10, 15))).toBe(true);
    await backend.close();
    const reopened = await createFsBackend({ root });
    expect((await readBody((await reopened.get("inline"))!.body)).equals(small)).toBe(true);
    await reopened.close();
    // Flip a byte of the inline copy: a full read must fail, not return it.
    const db = new Database(path.join(root, "index.sqlite"));
    const data = Buffer.from(db.prepare("SELECT data FROM objects WHERE key = 'inline'").pluck().get() as Buffer);
    data[100] ^= 0xff;
    db.prepare("UPDATE objects SET data = ? WHERE key = 'inline'").run(data);
    db.close();
    const again = await createFsBackend({ root });
    // Checked before any byte goes out, for a range too.
    await expectStorageError(again.get("inline"), Code.DataLoss);
    await expectStorageError(again.get("inline", { range: { offset: 0, length: 1 } }), Code.DataLoss);
    await again.close();
  });

  test("concurrent small writes share group commits and each sees its own precondition outcome", async () => {
    const backend = await createFsBackend({ root });
    const first = await backend.put("g/0", chunked(Buffer.from("v0")), meta);
    const results = await Promise.allSettled(
      Array.from({ length: 32 }, (_, i) =>
        // Every other write is guarded by a stale generation and must fail alone.
        backend.put(`g/${i % 4}`, chunked(Buffer.from(`v${i}`)), meta, i % 2 ? { ifGenerationMatch: first.generation - 1n } : {}),
      ),
    );
    results.forEach((r, i) => expect(r.status).toBe(i % 2 ? "rejected" : "fulfilled"));
    const gens = results.filter((r) => r.status === "fulfilled").map((r) => (r as PromiseFulfilledResult<{ generation: bigint }>).value.generation);
    expect(new Set(gens).size).toBe(gens.length);
    await backend.close();
  });

  test("a stuck source is abandoned as soon as the signal aborts", async () => {
    const backend = await createFsBackend({ root });
    const ac = new AbortController();
    async function* stuck() {
      yield Buffer.from("start");
      await new Promise(() => undefined); // never resolves
    }
    setTimeout(() => ac.abort(), 50);
    await expectStorageError(backend.put("k", stuck(), meta, { signal: ac.signal }), Code.Cancelled);
    expect(await backend.head("k")).toBeUndefined();
    expect(await filesUnder(path.join(root, "tmp"))).toEqual([]);
    await backend.close();
  });

  test("calls after close are UNAVAILABLE", async () => {
    const backend = await createFsBackend({ root });
    await backend.close();
    await expectStorageError(backend.head("k"), Code.Unavailable);
    await expectStorageError(backend.put("k", chunked(Buffer.from("x")), meta), Code.Unavailable);
  });

  test("a list limit below 1 is INVALID_ARGUMENT", async () => {
    const backend = await createFsBackend({ root });
    await expectStorageError(backend.list({ limit: 0 }), Code.InvalidArgument);
    await backend.close();
  });
});
