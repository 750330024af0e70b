/**
 * The local-disk backend: blobs in files named by random ids (blob-files.ts),
 * everything else (key, record fields, generations, the outbox) in an
 * embedded SQLite index (index-db.ts).
 *
 * Layout under `root` (folders 0700, files 0600: see private-files.ts):
 *   lock                held exclusively while open: one process per folder (folder-lock.ts)
 *   index.sqlite        WAL database: objects, outbox, counters, identities, tier_totals
 *   tmp/<id>            uploads in flight; leftovers removed by sweepLeftovers()
 *   blobs/<xx>/<id>     committed blobs; an unreferenced one is removed by sweepLeftovers()
 *   uploads/<id>        bytes of resumable upload sessions (upload-store.ts); kept while their session is
 *
 * Keys never become paths, so no key reaches outside the root and record data
 * never collides with blob data. Objects up to INLINE_MAX_BYTES live inline in
 * the index. A larger put streams into tmp/, fsyncs, renames into blobs/,
 * fsyncs the folder, then commits one SQLite transaction (precondition, row,
 * outbox entry); the old blob is unlinked after the commit. A put whose
 * source is a file on this disk already (FileBackedSource: a completed
 * upload session's) reads it through and hard-links it into tmp/ instead of
 * copying it, then goes on the same way. A crash at any
 * point leaves the old version and at most an orphan file the next sweep removes.
 */
import * as fsp from "node:fs/promises";
import * as path from "node:path";
import { Readable } from "node:stream";
import { crc32c } from "@node-rs/crc32";
import Database from "better-sqlite3";
import type { Backend, ObjectRecord, Outbox } from "../backend.js";
import { FileBackedSource, checkRange } from "../backend.js";
import { abortable, bindSignal, throwIfAborted } from "../../signals.js";
import { Code, StorageError, dataLoss, unavailable } from "../../storage-error.js";
import { READ_HIGH_WATER_MARK, openBlobFiles, takeSmall } from "./blob-files.js";
import { mib, translate } from "./fs-errors.js";
import { lockFolder, type FolderLock } from "./folder-lock.js";
import { createInFlight } from "./in-flight.js";
import { checkPrecondition, openIndex, toRecord, type AgedOut, type FsFaults, type IndexDb, type IndexUsage } from "./index-db.js";
import { listPage } from "./listing.js";
import { successor } from "./key-range.js";
import { makePrivateFolder } from "./private-files.js";
import { createUploadStore, type UploadStore } from "./upload-store.js";

export type { AgedOut, FsFaults, IndexUsage } from "./index-db.js";
export type { UploadSessionRecord, UploadStore, UploadWriter } from "./upload-store.js";

export interface FsBackendOptions {
  /** The storage folder; created when missing. */
  root: string;
  /** fsync files, folders and the index on every commit (default true). Off only for tests and scratch data. */
  fsync?: boolean;
  /**
   * Writes are refused (RESOURCE_EXHAUSTED) once the file system holding the
   * folder has less than this many bytes free, so deletes and the index,
   * which need a little space to commit, keep working on a full disk
   * (LOCAL_MIN_FREE_BYTES; default 64 MiB).
   */
  minFreeBytes?: number;
  /** Fault injection for tests of the group commit; never set in production. */
  faults?: FsFaults;
}

/** The local backend: a Backend with an outbox, an index of expiries, identities and the leftover sweep. */
export type FsBackend = Backend & {
  readonly outbox: Outbox;
  /** Resumable upload sessions: rows in the index, bytes under uploads/ (upload-store.ts). */
  readonly uploads: UploadStore;
  /** Up to `limit` keys whose expiresAt is at or before `now` (Unix ms), soonest first. This
   * backend does not hide expired objects itself; the engine does, and sweeps them with this. */
  expired(now: number, limit: number): string[];
  /**
   * Up to `limit` keys under `prefix`, after `after` in key order, whose write
   * (its origin) is older than `before` (Unix µs): what a lifecycle rule ages out.
   */
  writtenBefore(prefix: string, before: number, after: string | undefined, limit: number): string[];
  /**
   * Count and bytes of the objects under `prefix` that are live at `now`
   * (Unix ms), those `agedOut` names (lifecycle rules) left out: one
   * aggregate over the index, exact.
   */
  usage(prefix: string, now: number, agedOut?: readonly AgedOut[]): IndexUsage;
  /** What the tier holds now (every row: expired and pending ones too), without a scan. */
  holdings(): IndexUsage;
  /**
   * A value kept in the index for the life of the storage folder: the one stored under `name`,
   * or, the first time, the one `create` makes (stored atomically, so every caller sees the same).
   * For identities such as this store's id and this daemon's writer id.
   */
  identity(name: string, create: () => string): string;
  /**
   * Removes what a crash left: every file in tmp/, every blob no row names
   * and every file in uploads/ no session names, except the files this
   * backend made meanwhile, so it is safe while serving. Call it once per open
   * (the daemon does, after binding); a second call rejects.
   */
  sweepLeftovers(): Promise<{ tmpFiles: number; blobs: number; uploadFiles: number }>;
  /** The storage folder, absolute (a layer keeping files beside the tier's, such as the disk cache, uses a subfolder of it). */
  readonly root: string;
  /**
   * A second connection to the index database, for a layer that keeps a
   * table of its own in it (index-schema.ts SCHEMA creates it): WAL,
   * synchronous=NORMAL (its commits are not fsynced: a crash may lose the
   * last ones, never corrupt the database), the same busy timeout. The
   * caller closes it before this backend closes.
   */
  openIndexConnection(): Database.Database;
  /**
   * The stored bytes of `key` as they are, unchecked, with the size and
   * CRC32C its row records, for a checker that verifies them itself (Verify,
   * the scrubber); `missing` when the row names a blob file that is gone;
   * undefined when there is no row.
   */
  readStored(key: string): Promise<StoredCopy | undefined>;
  /** Ids of blob files no row names, last written more than `graceMs` ago (see BlobFiles.unreferenced). */
  orphanBlobs(graceMs: number): Promise<string[]>;
  /** Removes the blob file `id` unless a row names it now; true when it removed one. */
  removeOrphanBlob(id: string): Promise<boolean>;
  /** How many objects are stored under `prefix` and their stored bytes (expired ones included). */
  count(prefix: string): { objects: number; storedBytes: number };
};

/** A local copy as stored (FsBackend.readStored). */
export type StoredCopy =
  | { record: ObjectRecord; expected: { size: number; crc32c: number }; body: Readable; missing?: undefined }
  | { record: ObjectRecord; expected: { size: number; crc32c: number }; body?: undefined; missing: true };

/**
 * Objects up to this size live inline in the SQLite index: one WAL commit
 * (shared by a group commit) makes them durable, instead of a file, its fsync,
 * a rename and a folder fsync (DESIGN.md: a file and an fsync per small object
 * cap small writes).
 */
export const INLINE_MAX_BYTES = 64 * 1024;
/** How many times a read retries when a concurrent write replaced the blob under it. */
const READ_ATTEMPTS = 5;
const DEFAULT_MIN_FREE_BYTES = 64 * 1024 * 1024;
/** How long close() waits for cancelled puts to remove their files before it closes anyway. */
const CLOSE_WAIT_MS = 5000;

/**
 * Opens (creating when missing) the local backend at `opts.root`: makes the
 * folder private, takes its lock before anything else (a second process or
 * backend on the folder gets a FolderInUseError; two would remove each other's
 * uploads), then opens the index. Leftovers of a crash stay until
 * sweepLeftovers().
 */
export async function createFsBackend(opts: FsBackendOptions): Promise<FsBackend> {
  const root = path.resolve(opts.root);
  let lock: FolderLock;
  try {
    makePrivateFolder(root);
    lock = lockFolder(root);
  } catch (err) {
    if (StorageError.is(err)) throw err;
    throw unavailable("cannot open the local storage folder", err);
  }
  let blobs: Awaited<ReturnType<typeof openBlobFiles>>;
  let index: IndexDb;
  try {
    blobs = await openBlobFiles({ root, durable: opts.fsync ?? true, minFreeBytes: opts.minFreeBytes ?? DEFAULT_MIN_FREE_BYTES });
    const files = blobs;
    index = openIndex(path.join(root, "index.sqlite"), { durable: opts.fsync ?? true, faults: opts.faults, onBlobFreed: (id) => void files.dropBlob(id) });
  } catch (err) {
    lock.release();
    throw unavailable("cannot open the local storage folder", err);
  }
  // close() cancels the puts still running and waits for their cleanup.
  const running = createInFlight(() => unavailable("the local storage is closed"));

  const uploads = createUploadStore(index, blobs);

  /**
   * Reads `source` through (so the layers above check it as it passes) and
   * hard-links its file as tmp/<id>: the object's blob without a copy of its
   * bytes. Undefined when the file cannot be linked (another file system,
   * or it is not `source.byteLength` long): the caller copies it then.
   */
  async function linkFile(id: string, source: FileBackedSource, signal: AbortSignal | undefined): Promise<{ size: number; crc32c: number } | undefined> {
    let size = 0;
    let crc = 0;
    for await (const chunk of abortable(source, signal)) {
      size += chunk.length;
      crc = crc32c(chunk, crc);
    }
    return (await blobs.linkTemp(id, source.file, size)) ? { size, crc32c: crc } : undefined;
  }

  const backend: FsBackend = {
    name: "local",
    outbox: index.outbox,
    uploads,

    async put(key, source, meta, putOpts = {}) {
      throwIfAborted(putOpts.signal);
      // Fail before receiving the body when the precondition already fails; the commit checks again.
      checkPrecondition(key, putOpts.ifGenerationMatch, index.generationOf(key));
      const id = blobs.newFileId();
      let published = false;
      try {
        await blobs.ensureSpace();
        // A file on this disk already (a completed upload session's): read through the checks above, then linked.
        const linked = source instanceof FileBackedSource && source.byteLength > INLINE_MAX_BYTES ? await linkFile(id, source, putOpts.signal) : undefined;
        const small = linked ? { rest: source } : await takeSmall(source, putOpts.signal, INLINE_MAX_BYTES);
        if (small.inline) {
          const data = small.inline;
          const stored = { size: data.length, crc32c: crc32c(data) };
          putOpts.verify?.(stored);
          throwIfAborted(putOpts.signal);
          const { oldBlob, row } = await index.groupCommit(() => index.commitPut(key, meta, stored, { data }, putOpts));
          await blobs.dropBlob(oldBlob);
          return toRecord(row);
        }
        const stored = linked ?? (await blobs.writeSource(blobs.tmpPath(id), small.rest, putOpts.signal));
        putOpts.verify?.(stored);
        throwIfAborted(putOpts.signal);
        await blobs.publish(id);
        published = true;
        throwIfAborted(putOpts.signal);
        const { oldBlob, row } = await index.groupCommit(() => index.commitPut(key, meta, stored, { blob: id }, putOpts));
        await blobs.dropBlob(oldBlob);
        return toRecord(row);
      } catch (err) {
        await blobs.discard(id, published);
        throw translate(err, "writing");
      }
    },

    async get(key, getOpts = {}) {
      throwIfAborted(getOpts.signal);
      const range = getOpts.range;
      if (range) checkRange(range);
      for (let attempt = 0; attempt < READ_ATTEMPTS; attempt++) {
        const row = index.indexed("reading", () => index.readRow(key));
        if (row === undefined) return undefined;
        if (getOpts.ifGenerationMatch !== undefined) checkPrecondition(key, getOpts.ifGenerationMatch, row.generation);
        const storedSize = Number(row.stored_size);
        const start = range?.offset ?? 0;
        if (start > storedSize) throw new StorageError(Code.OutOfRange, `offset ${start} is past the end of the object (${storedSize} bytes)`);
        const end = range?.length === undefined ? storedSize : Math.min(storedSize, start + range.length);
        const whole = start === 0 && end === storedSize;
        if (row.blob === null) {
          const data = index.inlineData(key, row.generation);
          // Replaced between the two reads: look again.
          if (data === undefined) continue;
          // All of it is in memory: check it whole, even for a range, before any byte goes out.
          if (data.length !== storedSize || crc32c(data) !== Number(row.stored_crc32c)) {
            throw dataLoss("the stored object is corrupt: its checksum does not match");
          }
          const bytes = Readable.from(end > start ? [data.subarray(start, end)] : []);
          return { record: toRecord(row), body: bindSignal(bytes, getOpts.signal) };
        }
        // Only a whole read can be checked against the stored CRC32C.
        const expected = whole ? { size: storedSize, crc32c: Number(row.stored_crc32c) } : undefined;
        const body = await blobs.openBlob(row.blob, start, end, expected);
        // A concurrent write or delete replaced the blob after we read the row: look again.
        if (body === undefined) continue;
        return { record: toRecord(row), body: bindSignal(body, getOpts.signal) };
      }
      throw new StorageError(Code.Aborted, "the object kept changing while it was being read; try again");
    },

    async head(key, headOpts = {}) {
      throwIfAborted(headOpts.signal);
      const row = index.indexed("reading", () => index.readRow(key));
      return row === undefined ? undefined : toRecord(row);
    },

    async delete(key, delOpts = {}) {
      throwIfAborted(delOpts.signal);
      const { existed, blob } = await index.groupCommit(() => index.commitDelete(key, delOpts));
      await blobs.dropBlob(blob);
      return existed;
    },

    async list(listOpts) {
      throwIfAborted(listOpts.signal);
      return index.indexed("listing", () => listPage(index.scanFor, listOpts, toRecord));
    },

    async probe(signal) {
      throwIfAborted(signal);
      index.probe();
      await blobs.checkWritable();
      const free = await blobs.freeBytes().catch((err) => Promise.reject(translate(err, "probing")));
      if (free < blobs.minFree) {
        throw new StorageError(Code.Unavailable, `the local disk has ${mib(free)} free, below its reserve (LOCAL_MIN_FREE_BYTES=${mib(blobs.minFree)})`);
      }
    },

    async close() {
      // A put cancelled here removes its temp file before close resolves, so an
      // exit right after leaves none (a put that does not stop in time leaves
      // an orphan for the next sweep).
      await running.close(unavailable("the local storage is closing"), CLOSE_WAIT_MS);
      // Writes waiting for the next group commit are committed, not dropped.
      index.close();
      lock.release();
    },

    sweepLeftovers: () => blobs.sweepLeftovers({ blob: (id) => index.blobReferenced(id), upload: (id) => uploads.fileReferenced(id) }),
    root,
    openIndexConnection() {
      const db = new Database(path.join(root, "index.sqlite"), { fileMustExist: true });
      db.defaultSafeIntegers(true);
      db.pragma("journal_mode = WAL");
      db.pragma("synchronous = NORMAL");
      db.pragma("busy_timeout = 5000");
      return db;
    },
    async readStored(key) {
      for (let attempt = 0; attempt < READ_ATTEMPTS; attempt++) {
        const row = index.indexed("reading", () => index.readRow(key));
        if (row === undefined) return undefined;
        const record = toRecord(row);
        const expected = { size: Number(row.stored_size), crc32c: Number(row.stored_crc32c) };
        if (row.blob === null) {
          const data = index.inlineData(key, row.generation);
          if (data === undefined) continue;
          return { record, expected, body: Readable.from([data]) };
        }
        let handle: fsp.FileHandle;
        try {
          handle = await fsp.open(blobs.blobPath(row.blob), "r");
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw translate(err, "reading");
          // Replaced meanwhile, or really gone: the row says which.
          if (index.indexed("reading", () => index.readRow(key))?.blob === row.blob) return { record, expected, missing: true };
          continue;
        }
        return { record, expected, body: handle.createReadStream({ highWaterMark: READ_HIGH_WATER_MARK }) };
      }
      throw new StorageError(Code.Aborted, "the object kept changing while it was being read; try again");
    },
    orphanBlobs: (graceMs) => blobs.unreferenced((id) => index.blobReferenced(id), graceMs),
    count: (prefix) => index.count(prefix, prefix === "" ? undefined : successor(prefix)),
    async removeOrphanBlob(id) {
      if (index.blobReferenced(id)) return false;
      await blobs.dropBlob(id);
      return true;
    },
    expired: (now, limit) => index.expired(now, limit),
    writtenBefore: (prefix, before, after, limit) => index.writtenBefore(prefix, before, after, limit),
    usage: (prefix, now, agedOut = []) => index.usage(prefix, now, agedOut),
    holdings: () => index.totals(),
    identity: (name, create) => index.identity(name, create),
  };
  const put = backend.put;
  backend.put = (key, source, meta, putOpts = {}) =>
    running.run(putOpts.signal, (signal) => put(key, source, meta, { ...putOpts, signal }));
  return backend;
}
