/**
 * The local backend's life cycle: one opener per folder (the lock), private
 * files, the leftover sweep run apart from opening, and close() waiting for
 * cancelled puts to remove their temp files.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import type { PutMeta } from "../../../server/backends/backend.js";
import { FolderInUseError } from "../../../server/backends/fs/folder-lock.js";
import { INLINE_MAX_BYTES, createFsBackend, type FsBackend } from "../../../server/backends/fs/fs-backend.js";
import { Code } from "../../../server/storage-error.js";
import { chunked, expectStorageError, readBody } from "../../support/backend-io.js";
import { makeTempDir, type TempDir } from "../../kit/temp-dir.js";

const meta: PutMeta = { kind: "BYTES", contentType: "application/octet-stream", metadata: {} };
const MiB = 1024 * 1024;

/** A source that yields `first` and then waits until `release()`, then yields `rest`. */
function heldSource(first: Buffer, rest: Buffer) {
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  async function* source() {
    yield first;
    await released;
    yield rest;
  }
  return { source: source(), release };
}

async function waitFor(cond: () => Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const until = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const modeOf = async (p: string) => (await fs.stat(p)).mode & 0o777;

describe("fs backend life cycle", () => {
  let dir: TempDir;
  let root: string;
  const open: FsBackend[] = [];
  beforeEach(async () => {
    dir = await makeTempDir("fs-life-");
    root = path.join(dir.path, "store");
  });
  afterEach(async () => {
    for (const b of open.splice(0)) await b.close();
    await dir.cleanup();
  });
  const openBackend = async () => {
    const b = await createFsBackend({ root, fsync: false });
    open.push(b);
    return b;
  };

  test("a second backend on the same folder is refused while the first is open, and opens once it closed", async () => {
    const first = await openBackend();
    const refused = await createFsBackend({ root }).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(refused).toBeInstanceOf(FolderInUseError);
    expect((refused as FolderInUseError).message).toContain(root);
    // The refusal did not break the first one's lock or index.
    await first.put("k", chunked(Buffer.from("v")), meta);
    await expect(createFsBackend({ root })).rejects.toBeInstanceOf(FolderInUseError);
    await first.close();
    open.splice(0);
    const second = await openBackend();
    expect((await readBody((await second.get("k"))!.body)).toString()).toBe("v");
  });

  test("opening does not sweep; sweepLeftovers removes a crash's tmp files and orphan blobs but keeps puts in flight", async () => {
    const first = await openBackend();
    await first.put("kept", chunked(Buffer.alloc(INLINE_MAX_BYTES + 1, 1)), meta);
    await first.close();
    open.splice(0);
    const crashTmp = path.join(root, "tmp", "0123456789abcdef0123456789abcdef");
    const crashBlob = path.join(root, "blobs", "ab", "ab00000000000000000000000000dead");
    await fs.writeFile(crashTmp, "half an upload");
    await fs.writeFile(crashBlob, "orphan");

    const backend = await openBackend();
    expect(await fs.readdir(path.join(root, "tmp"))).toEqual([crashTmp.split("/").pop()]);
    // A put is streaming into tmp/ when the sweep runs.
    const held = heldSource(Buffer.alloc(MiB + 1, 2), Buffer.alloc(MiB, 3));
    const putting = backend.put("in-flight", held.source, meta);
    await waitFor(async () => (await fs.readdir(path.join(root, "tmp"))).length === 2, "the put's temp file");
    expect(await backend.sweepLeftovers()).toEqual({ tmpFiles: 1, blobs: 1, uploadFiles: 0 });
    await expect(fs.stat(crashTmp)).rejects.toThrow();
    await expect(fs.stat(crashBlob)).rejects.toThrow();
    held.release();
    const record = await putting;
    expect(record.size).toBe(2 * MiB + 1);
    expect((await readBody((await backend.get("in-flight"))!.body)).length).toBe(2 * MiB + 1);
    expect((await readBody((await backend.get("kept"))!.body)).equals(Buffer.alloc(INLINE_MAX_BYTES + 1, 1))).toBe(true);
    await expect(backend.sweepLeftovers()).rejects.toThrow(/once/);
  });

  test("sweepLeftovers keeps the file of every upload session and removes the files in uploads/ no session names", async () => {
    const first = await openBackend();
    const session = await first.uploads.create({ caller: "anonymous", id: "kept-upload", key: "k", header: "{}", expiresAt: Date.now() + 60_000 });
    const writer = await first.uploads.openWriter(session);
    await writer.write(Buffer.from("committed bytes"));
    await writer.checkpoint(Date.now() + 60_000);
    await writer.close();
    await first.close();
    open.splice(0);
    const orphan = path.join(root, "uploads", "0123456789abcdef0123456789abcdef");
    await fs.writeFile(orphan, "a crash between the file and its row");

    const backend = await openBackend();
    expect(await backend.sweepLeftovers()).toEqual({ tmpFiles: 0, blobs: 0, uploadFiles: 1 });
    await expect(fs.stat(orphan)).rejects.toThrow();
    const reopened = backend.uploads.get("anonymous", "kept-upload")!;
    expect(reopened.committedSize).toBe(15);
    const files = await fs.readdir(path.join(root, "uploads"));
    expect(files).toHaveLength(1);
    expect((await fs.readFile(path.join(root, "uploads", files[0]!))).toString()).toBe("committed bytes");
    expect((await fs.stat(path.join(root, "uploads", files[0]!))).mode & 0o777).toBe(0o600);
    expect((await fs.stat(path.join(root, "uploads"))).mode & 0o777).toBe(0o700);
  });

  test("an upload session's file is cut back to its committed size when it is opened again, and continues from there", async () => {
    const backend = await openBackend();
    const session = await backend.uploads.create({ caller: "anonymous", id: "cut-back", key: "k", header: "{}", expiresAt: Date.now() + 60_000 });
    const writer = await backend.uploads.openWriter(session);
    await writer.write(Buffer.from("durable"));
    await writer.checkpoint(Date.now() + 60_000);
    // Written but never checkpointed (a crash would leave such a tail).
    await writer.write(Buffer.alloc(2 * MiB, 7));
    await writer.close();
    const again = backend.uploads.get("anonymous", "cut-back")!;
    expect(again.committedSize).toBe(7);
    const resumed = await backend.uploads.openWriter(again);
    expect(resumed.size).toBe(7);
    // The tail no checkpoint covered is gone from the disk too.
    const [file] = await fs.readdir(path.join(root, "uploads"));
    expect((await fs.stat(path.join(root, "uploads", file!))).size).toBe(7);
    await resumed.write(Buffer.from(" more"));
    const synced = await resumed.checkpoint(Date.now() + 60_000);
    await resumed.close();
    expect(synced.size).toBe(12);
    const body: Buffer[] = [];
    for await (const chunk of backend.uploads.source(backend.uploads.get("anonymous", "cut-back")!)) body.push(Buffer.from(chunk));
    expect(Buffer.concat(body).toString()).toBe("durable more");
  });

  test("close() cancels a put in flight and resolves only once its temp file is gone", async () => {
    const backend = await openBackend();
    const held = heldSource(Buffer.alloc(MiB + 1, 2), Buffer.alloc(MiB, 3));
    const putting = backend.put("k", held.source, meta);
    const failed = expectStorageError(putting, Code.Cancelled, Code.Unavailable);
    await waitFor(async () => (await fs.readdir(path.join(root, "tmp"))).length === 1, "the put's temp file");
    await backend.close();
    open.splice(0);
    // Checked before anything else runs: no cleanup may be left for later.
    expect(await fs.readdir(path.join(root, "tmp"))).toEqual([]);
    await failed;
    // A put offered after close is refused, and leaves nothing.
    await expectStorageError(backend.put("k2", chunked(Buffer.alloc(INLINE_MAX_BYTES + 1)), meta), Code.Unavailable);
    expect(await fs.readdir(path.join(root, "tmp"))).toEqual([]);
  });

  test("files are private: an existing 0755 folder and 0644 index are narrowed; new files are 0600", async () => {
    await fs.mkdir(root, { mode: 0o755 });
    await fs.chmod(root, 0o755);
    await fs.writeFile(path.join(root, "index.sqlite"), "", { mode: 0o644 });
    await fs.chmod(path.join(root, "index.sqlite"), 0o644);
    const backend = await openBackend();
    await backend.put("inline", chunked(Buffer.from("small")), meta);
    await backend.put("blob", chunked(Buffer.alloc(INLINE_MAX_BYTES + 1, 4)), meta);
    const held = heldSource(Buffer.alloc(MiB + 1, 2), Buffer.alloc(1, 3));
    const putting = backend.put("streaming", held.source, meta);
    await waitFor(async () => (await fs.readdir(path.join(root, "tmp"))).length === 1, "the put's temp file");

    expect(await modeOf(root)).toBe(0o700);
    expect(await modeOf(path.join(root, "tmp"))).toBe(0o700);
    expect(await modeOf(path.join(root, "blobs"))).toBe(0o700);
    const files = (await fs.readdir(root, { recursive: true, withFileTypes: true })).filter((e) => e.isFile());
    const names = files.map((e) => path.relative(root, path.join(e.parentPath, e.name))).sort();
    // The WAL files exist while the index is open; the lock and its journal too.
    expect(names).toEqual(expect.arrayContaining(["index.sqlite", "index.sqlite-wal", "index.sqlite-shm", "lock"]));
    expect(names.filter((n) => n.startsWith("blobs/"))).toHaveLength(1);
    expect(names.filter((n) => n.startsWith("tmp/"))).toHaveLength(1);
    for (const name of names) expect([name, await modeOf(path.join(root, name))]).toEqual([name, 0o600]);
    held.release();
    await putting;
  });
});
