/**
 * The local tier's blob files: uploads stream into tmp/<id> (written in
 * pieces of at least 1 MiB, fsynced), are renamed into blobs/<xx>/<id> and
 * the shard folder fsynced before the index commits them. Reads stream a
 * blob back, checked against its size and CRC32C when whole. The free-space
 * reserve is enforced here, where the bytes are written. The files of
 * resumable uploads live in uploads/<id> (upload-files.ts); the leftover
 * sweep keeps those a session names.
 */
import { randomBytes } from "node:crypto";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { Readable, Transform } from "node:stream";
import { crc32c } from "@node-rs/crc32";
import { Code, StorageError, dataLoss, unavailable } from "../../storage-error.js";
import { abortable } from "../../signals.js";
import { createFileWriter } from "./file-writer.js";
import { mib, translate } from "./fs-errors.js";
import { makePrivateFolder } from "./private-files.js";

/** Read stream buffer: the 64 KiB default halves read throughput. */
export const READ_HIGH_WATER_MARK = 1024 * 1024;

export interface BlobFilesOptions {
  root: string;
  /** fsync files and folders (off only for tests and scratch data). */
  durable: boolean;
  /** Writes are refused below this many free bytes (LOCAL_MIN_FREE_BYTES). */
  minFreeBytes: number;
  /** How the free bytes of the folder's file system are measured; default statfs (a test counts the looks). */
  measureFree?: (root: string) => Promise<number>;
}

/** What a leftover sweep asks of the index. */
export interface SweepReferences {
  /** True when some object row names the blob `id`. */
  blob(id: string): boolean;
  /** True when some upload session names the file `id` under uploads/. */
  upload(id: string): boolean;
}

/** How long a look at the free space far above the reserve stands for later writes. */
const SPACE_LOOK_MS = 100;
/** "Far above": more than this over the reserve (1 GiB: ten times what this daemon writes in SPACE_LOOK_MS). */
const SPACE_SLACK_BYTES = 1024 * 1024 * 1024;

/** Creates tmp/, uploads/ and every shard folder (so a put never creates and fsyncs a parent), and returns the blob store. */
export async function openBlobFiles(opts: BlobFilesOptions) {
  const { root, durable } = opts;
  const minFree = opts.minFreeBytes;
  const tmpDir = path.join(root, "tmp");
  const blobsDir = path.join(root, "blobs");
  const uploadsDir = path.join(root, "uploads");
  makePrivateFolder(tmpDir);
  makePrivateFolder(blobsDir);
  makePrivateFolder(uploadsDir);
  const shardNames = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));
  await Promise.all(shardNames.map((s) => fs.mkdir(path.join(blobsDir, s), { recursive: true, mode: 0o700 })));

  const blobPath = (id: string) => path.join(blobsDir, id.slice(0, 2), id);
  const tmpPath = (id: string) => path.join(tmpDir, id);
  const uploadPath = (id: string) => path.join(uploadsDir, id);

  /** The bytes free on the file system holding the folder. */
  async function freeBytes(): Promise<number> {
    if (opts.measureFree) return opts.measureFree(root);
    const stats = await fs.statfs(root);
    return stats.bavail * stats.bsize;
  }

  // The reserve check runs before every write: writes arriving together share
  // one statfs, and a look that found the disk far above the reserve answers
  // for SPACE_LOOK_MS (no write path fills SPACE_SLACK_BYTES that fast). Near
  // the reserve every write looks again.
  let look: Promise<number> | undefined;
  let lastLook = { free: 0, at: -Infinity };
  function freeForCheck(): Promise<number> {
    if (performance.now() - lastLook.at < SPACE_LOOK_MS && lastLook.free - minFree > SPACE_SLACK_BYTES) return Promise.resolve(lastLook.free);
    look ??= freeBytes().then(
      (free) => {
        lastLook = { free, at: performance.now() };
        look = undefined;
        return free;
      },
      (err: unknown) => {
        look = undefined;
        throw err;
      },
    );
    return look;
  }

  /** RESOURCE_EXHAUSTED once the disk is below the reserve kept for deletes and the index. */
  async function ensureSpace(): Promise<void> {
    let free: number;
    try {
      free = await freeForCheck();
    } catch (err) {
      throw translate(err, "checking free space");
    }
    if (free < minFree) {
      throw new StorageError(
        Code.ResourceExhausted,
        `the local disk is nearly full: ${mib(free)} free, below the ${mib(minFree)} kept for deletes and the index ` +
          `(LOCAL_MIN_FREE_BYTES); writes are refused until space is freed`,
      );
    }
  }

  /**
   * Streams `source` into a new file at `file` (file-writer.ts: coalesced
   * pieces, several writes in flight, the space reserve checked as it grows),
   * fsyncs it, and returns the size and CRC32C written.
   */
  async function writeSource(
    file: string,
    source: AsyncIterable<Uint8Array>,
    signal: AbortSignal | undefined,
  ): Promise<{ size: number; crc32c: number }> {
    const handle = await fs.open(file, "wx", 0o600).catch((err) => {
      throw translate(err, "creating a file");
    });
    const writer = createFileWriter(handle, { durable, ensureSpace });
    try {
      for await (const chunk of abortable(source, signal)) await writer.write(chunk);
      return await writer.sync();
    } finally {
      // A failed upload still waits for its writes before the file is closed (and removed).
      await writer.settle();
      await handle.close().catch(() => undefined);
    }
  }

  /** fsyncs the folder `dir` (a new or renamed entry in it is then durable). */
  async function syncFolder(dir: string): Promise<void> {
    if (!durable) return;
    const handle = await fs.open(dir, "r");
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }

  /** Unlinks a blob no row names any more; a failure leaves an orphan the next sweep removes. */
  async function dropBlob(id: string | undefined): Promise<void> {
    if (id === undefined) return;
    await fs.unlink(blobPath(id)).catch(() => undefined);
  }

  /**
   * The committed blob `id`, bytes [start, end), as a stream; undefined when
   * the file is gone (a concurrent write or delete replaced it: look again).
   * With `expected`, a whole read fails DATA_LOSS instead of ending when the
   * size or CRC32C are off.
   */
  async function openBlob(id: string, start: number, end: number, expected: { size: number; crc32c: number } | undefined): Promise<Readable | undefined> {
    let handle: fs.FileHandle;
    try {
      handle = await fs.open(blobPath(id), "r");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw translate(err, "reading");
    }
    if (end === start) {
      await handle.close();
      return Readable.from([]);
    }
    const file = handle.createReadStream({ start, end: end - 1, highWaterMark: READ_HIGH_WATER_MARK });
    return file.pipe(verifier(file, expected));
  }

  /**
   * Hard-links `file` (durable already) as tmp/<id>, to be published like a
   * written upload. False, leaving nothing, when the link is refused (another
   * file system, no hard links) or the file is not `size` bytes long.
   */
  async function linkTemp(id: string, file: string, size: number): Promise<boolean> {
    const temp = tmpPath(id);
    try {
      await fs.link(file, temp);
      if ((await fs.stat(temp)).size === size) return true;
    } catch {
      // Copied instead.
    }
    await fs.rm(temp, { force: true }).catch(() => undefined);
    return false;
  }

  /** Puts a finished upload in place: tmp/<id> renamed to its blob path, the shard folder fsynced. */
  async function publish(id: string): Promise<void> {
    await fs.rename(tmpPath(id), blobPath(id));
    await syncFolder(path.dirname(blobPath(id)));
  }

  /** Removes what a failed put of `id` left: its temp file, or its blob when it was published but not committed. */
  async function discard(id: string, published: boolean): Promise<void> {
    await fs.rm(published ? blobPath(id) : tmpPath(id), { force: true }).catch(() => undefined);
  }

  /** Whether tmp/ is writable; throws the platform error translated. */
  async function checkWritable(): Promise<void> {
    await fs.access(tmpDir, fs.constants.W_OK).catch((err) => Promise.reject(translate(err, "probing")));
  }

  // Ids of the files this backend made before its sweep finished: the sweep keeps them.
  let sweep: "pending" | "running" | "done" = "pending";
  const madeBeforeSweep = new Set<string>();
  function newFileId(): string {
    const id = randomBytes(16).toString("hex");
    if (sweep !== "done") madeBeforeSweep.add(id);
    return id;
  }

  async function sweepLeftovers(references: SweepReferences): Promise<{ tmpFiles: number; blobs: number; uploadFiles: number }> {
    if (sweep !== "pending") throw new Error("sweepLeftovers() runs once per open");
    sweep = "running";
    const removed = { tmpFiles: 0, blobs: 0, uploadFiles: 0 };
    try {
      for (const name of await fs.readdir(tmpDir)) {
        if (madeBeforeSweep.has(name)) continue;
        await fs.rm(path.join(tmpDir, name), { force: true, recursive: true });
        removed.tmpFiles++;
      }
      for (const shard of await fs.readdir(blobsDir)) {
        const shardDir = path.join(blobsDir, shard);
        if (!(await fs.stat(shardDir)).isDirectory()) continue;
        for (const name of await fs.readdir(shardDir)) {
          if (madeBeforeSweep.has(name) || references.blob(name)) continue;
          await fs.rm(path.join(shardDir, name), { force: true });
          removed.blobs++;
        }
      }
      // A session's file stays while its session does (it holds the upload's committed bytes).
      for (const name of await fs.readdir(uploadsDir)) {
        if (madeBeforeSweep.has(name) || references.upload(name)) continue;
        await fs.rm(path.join(uploadsDir, name), { force: true, recursive: true });
        removed.uploadFiles++;
      }
      return removed;
    } catch (err) {
      throw StorageError.is(err) ? err : unavailable("cannot clean up the local storage folder", err);
    } finally {
      sweep = "done";
      madeBeforeSweep.clear();
    }
  }

  /**
   * Ids of committed blob files no row names (by `isReferenced`) whose last
   * write is more than `graceMs` ago: what a crash or a failed unlink left.
   * The grace spares a put between publishing its file and committing its row.
   */
  async function unreferenced(isReferenced: (id: string) => boolean, graceMs: number): Promise<string[]> {
    const found: string[] = [];
    const before = Date.now() - graceMs;
    try {
      for (const shard of await fs.readdir(blobsDir)) {
        const shardDir = path.join(blobsDir, shard);
        if (!(await fs.stat(shardDir)).isDirectory()) continue;
        for (const name of await fs.readdir(shardDir)) {
          if (isReferenced(name)) continue;
          const stat = await fs.stat(path.join(shardDir, name)).catch(() => undefined);
          // Gone meanwhile (dropped after its row went), or too young to judge.
          if (stat === undefined || stat.mtimeMs > before) continue;
          // Named by a row that committed while we looked: not an orphan.
          if (!isReferenced(name)) found.push(name);
        }
      }
    } catch (err) {
      throw translate(err, "listing blob files");
    }
    return found;
  }

  return {
    tmpPath,
    blobPath,
    uploadPath,
    newFileId,
    writeSource,
    linkTemp,
    publish,
    discard,
    dropBlob,
    openBlob,
    ensureSpace,
    freeBytes,
    checkWritable,
    syncFolder,
    sweepLeftovers,
    unreferenced,
    minFree,
    durable,
  };
}

/** The blob files opened by openBlobFiles. */
export type BlobFiles = Awaited<ReturnType<typeof openBlobFiles>>;

/**
 * Passes a blob's bytes through with platform errors translated; given the
 * expected size and CRC32C of a whole blob, fails with DATA_LOSS instead of
 * ending when they are off.
 */
function verifier(file: Readable, expected: { size: number; crc32c: number } | undefined): Transform {
  let size = 0;
  let crc = 0;
  const check = new Transform({
    readableHighWaterMark: READ_HIGH_WATER_MARK,
    writableHighWaterMark: READ_HIGH_WATER_MARK,
    transform(chunk: Buffer, _enc, done) {
      if (expected !== undefined) {
        size += chunk.length;
        crc = crc32c(chunk, crc);
      }
      done(null, chunk);
    },
    flush(done) {
      if (expected !== undefined && (size !== expected.size || crc !== expected.crc32c)) done(dataLoss("the stored object is corrupt: its checksum does not match"));
      else done();
    },
  });
  // pipe() does not forward errors or teardown: do both ways by hand.
  file.on("error", (err) => check.destroy(translate(err, "reading")));
  check.on("close", () => file.destroy());
  return check;
}

/**
 * Reads `source` until it ends within `limit` bytes (then `inline` holds
 * it all) or passes that size (then `rest` yields everything, read or not).
 */
export async function takeSmall(
  source: AsyncIterable<Uint8Array>,
  signal: AbortSignal | undefined,
  limit: number,
): Promise<{ inline?: Buffer; rest: AsyncIterable<Uint8Array> }> {
  const iterator = abortable(source, signal)[Symbol.asyncIterator]();
  const head: Buffer[] = [];
  let size = 0;
  for (;;) {
    const step = await iterator.next();
    if (step.done) return { inline: Buffer.concat(head, size), rest: [] as unknown as AsyncIterable<Uint8Array> };
    head.push(step.value);
    size += step.value.length;
    if (size > limit) break;
  }
  async function* rest(): AsyncGenerator<Uint8Array> {
    try {
      yield* head.splice(0);
      for (;;) {
        const step = await iterator.next();
        if (step.done) return;
        yield step.value;
      }
    } finally {
      await iterator.return?.(undefined);
    }
  }
  return { rest: rest() };
}
