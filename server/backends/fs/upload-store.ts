/**
 * Where resumable upload sessions live: a row in the local index (table
 * `uploads`, index-schema.ts) and the bytes received so far in
 * uploads/<file id> (0600). The local tier is their durable place whatever
 * the primary tier is. This module keeps rows and files consistent and
 * crash-safe; what a session means (limits, quotas, completion, expiry) is
 * decided above it (server/uploads/).
 *
 * Crash safety: a session's file is created (and it and the folder fsynced)
 * before its row, so a crash leaves at most an orphan file, which the
 * leftover sweep removes. committed_size only rises: a checkpoint fsyncs the
 * file first and then records the size and CRC32C of what it made durable;
 * bytes written after the last checkpoint are cut off when the session is
 * opened again. Completion clears the row's file (the file is then an orphan
 * whatever happens next) and keeps the stored object's record.
 */
import * as fs from "node:fs/promises";
import { FileBackedSource, type ReplayableSource } from "../backend.js";
import * as path from "node:path";
import { Code, StorageError, dataLoss } from "../../storage-error.js";
import type { BlobFiles } from "./blob-files.js";
import { READ_HIGH_WATER_MARK } from "./blob-files.js";
import { createFileWriter, type Synced } from "./file-writer.js";
import { translate } from "./fs-errors.js";
import type { IndexDb } from "./index-db.js";
import type { UploadRow } from "./index-schema.js";

/** One upload session as stored. */
export interface UploadSessionRecord {
  caller: string;
  id: string;
  key: string;
  /** The first stream's header fields, as the layer above encoded them. */
  header: string;
  /** Bytes fsynced under the session. */
  committedSize: number;
  /** CRC32C of those bytes. */
  crc32c: number;
  /** Unix ms. */
  createdAt: number;
  updatedAt: number;
  /** From then on the session may be deleted. */
  expiresAt: number;
  /** The stored object (as the layer above encoded it) once complete; undefined while open. */
  object?: string;
}

/** Appends to a session's file from its committed size. */
export interface UploadWriter {
  /** Bytes in the session now: committed ones plus those accepted since. */
  readonly size: number;
  /** Accepts a chunk (file-writer.ts: waits only while too many writes are out). */
  write(chunk: Buffer): Promise<void>;
  /**
   * Makes every byte accepted so far durable and records their size and
   * CRC32C as the session's committed size, with `expiresAt`. Rejects when a
   * write failed (the session keeps its last committed size).
   */
  checkpoint(expiresAt: number): Promise<Synced>;
  /** Waits for the writes under way and closes the file (no checkpoint). */
  close(): Promise<void>;
}

/** The sessions of the local tier (the fs backend's `uploads`). */
export interface UploadStore {
  get(caller: string, id: string): UploadSessionRecord | undefined;
  /** Incomplete sessions not expired at `now`, of one caller or of all. */
  countOpen(now: number, caller?: string): number;
  /** Every incomplete session (for the reservations taken again at start-up). */
  listOpen(): UploadSessionRecord[];
  /** Up to `limit` sessions expired at `now`, soonest first. */
  expired(now: number, limit: number): { caller: string; id: string }[];
  /** Creates an empty session (its file, then its row); the caller made sure none exists. */
  create(session: { caller: string; id: string; key: string; header: string; expiresAt: number }): Promise<UploadSessionRecord>;
  /** Opens the session's file for appending at its committed size; a longer file is cut back to it first. */
  openWriter(session: UploadSessionRecord): Promise<UploadWriter>;
  /**
   * The session's committed bytes, readable as often as needed (a completion
   * may be replayed on another tier), and backed by its file (the local tier
   * may link it as the object's blob instead of copying it).
   */
  source(session: UploadSessionRecord): ReplayableSource;
  /** Marks the session complete with the stored object and its new expiry; its file is removed. */
  complete(session: UploadSessionRecord, object: string, expiresAt: number): Promise<void>;
  /** Deletes the session and its file; false when it was gone already. */
  remove(caller: string, id: string): Promise<boolean>;
  /** True when a session names the file `id` (the leftover sweep keeps it). */
  fileReferenced(id: string): boolean;
}

/**
 * Makes `file` the only name of its bytes. A completion that kept the
 * session's file as the object's blob (a hard link) and then failed to mark
 * the session complete (a crash, a full disk) leaves it open; bytes a resume
 * appends must not reach that blob, so a copy takes the file's name first.
 */
async function unshare(file: string): Promise<void> {
  const { nlink } = await fs.stat(file);
  if (nlink <= 1) return;
  const copy = `${file}.unshared`;
  try {
    await fs.copyFile(file, copy);
    const handle = await fs.open(copy, "r");
    await handle.sync().finally(() => handle.close());
    await fs.rename(copy, file);
  } finally {
    await fs.rm(copy, { force: true });
  }
}

export function createUploadStore(index: IndexDb, blobs: BlobFiles): UploadStore {
  const db = index.database;
  const sql = {
    get: db.prepare(`SELECT * FROM uploads WHERE caller = ? AND id = ?`),
    countAll: db.prepare(`SELECT count(*) FROM uploads WHERE object IS NULL AND expires_at > ?`).pluck(),
    countCaller: db.prepare(`SELECT count(*) FROM uploads WHERE object IS NULL AND expires_at > ? AND caller = ?`).pluck(),
    listOpen: db.prepare(`SELECT * FROM uploads WHERE object IS NULL`),
    expired: db.prepare(`SELECT caller, id FROM uploads WHERE expires_at <= ? ORDER BY expires_at LIMIT ?`),
    insert: db.prepare(`
      INSERT INTO uploads (caller, id, key, header, file, committed_size, crc32c, created_at, updated_at, expires_at, object)
      VALUES (@caller, @id, @key, @header, @file, 0, 0, @now, @now, @expiresAt, NULL)`),
    // Guarded on the file (a session removed and made again has another) and on never going back.
    record: db.prepare(`
      UPDATE uploads SET committed_size = @size, crc32c = @crc, updated_at = @now, expires_at = @expiresAt
      WHERE caller = @caller AND id = @id AND file = @file AND committed_size <= @size`),
    complete: db.prepare(`
      UPDATE uploads SET file = NULL, object = @object, updated_at = @now, expires_at = @expiresAt
      WHERE caller = @caller AND id = @id AND file = @file`),
    fileOf: db.prepare(`SELECT file FROM uploads WHERE caller = ? AND id = ?`).pluck(),
    remove: db.prepare(`DELETE FROM uploads WHERE caller = ? AND id = ?`),
    fileReferenced: db.prepare(`SELECT 1 FROM uploads WHERE file = ?`).pluck(),
  };
  // Each record's file, kept beside it: callers only ever see the session.
  const files = new WeakMap<UploadSessionRecord, string>();
  const toSession = (row: UploadRow): UploadSessionRecord => {
    const session: UploadSessionRecord = {
      caller: row.caller,
      id: row.id,
      key: row.key,
      header: row.header,
      committedSize: Number(row.committed_size),
      crc32c: Number(row.crc32c),
      createdAt: Number(row.created_at),
      updatedAt: Number(row.updated_at),
      expiresAt: Number(row.expires_at),
      object: row.object ?? undefined,
    };
    if (row.file !== null) files.set(session, row.file);
    return session;
  };
  const fileOf = (session: UploadSessionRecord): string => {
    const file = files.get(session);
    if (file === undefined) throw new StorageError(Code.Internal, `upload "${session.id}" has no file: it is complete`);
    return file;
  };
  const unlink = (file: string) => fs.rm(blobs.uploadPath(file), { force: true }).catch(() => undefined);

  return {
    get: (caller, id) => index.indexed("reading an upload", () => {
      const row = sql.get.get(caller, id) as UploadRow | undefined;
      return row === undefined ? undefined : toSession(row);
    }),

    countOpen: (now, caller) =>
      index.indexed("counting uploads", () => Number((caller === undefined ? sql.countAll.get(now) : sql.countCaller.get(now, caller)) as bigint)),

    listOpen: () => index.indexed("listing uploads", () => (sql.listOpen.all() as UploadRow[]).map(toSession)),

    expired: (now, limit) => index.indexed("listing expired uploads", () => sql.expired.all(now, limit) as { caller: string; id: string }[]),

    async create(session) {
      await blobs.ensureSpace();
      const file = blobs.newFileId();
      try {
        const handle = await fs.open(blobs.uploadPath(file), "wx", 0o600);
        try {
          if (blobs.durable) await handle.sync();
        } finally {
          await handle.close();
        }
        await blobs.syncFolder(path.dirname(blobs.uploadPath(file)));
      } catch (err) {
        await unlink(file);
        throw translate(err, "creating an upload");
      }
      try {
        const row = await index.groupCommit(() => {
          sql.insert.run({ ...session, file, now: Date.now() });
          return sql.get.get(session.caller, session.id) as UploadRow;
        });
        return toSession(row);
      } catch (err) {
        await unlink(file);
        throw translate(err, "creating an upload");
      }
    },

    async openWriter(session) {
      const file = fileOf(session);
      let handle: fs.FileHandle;
      try {
        await unshare(blobs.uploadPath(file));
        handle = await fs.open(blobs.uploadPath(file), "r+");
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") {
          throw dataLoss(`the bytes of upload "${session.id}" are missing from the local storage folder`);
        }
        throw translate(err, "opening an upload");
      }
      try {
        const { size } = await handle.stat();
        if (size < session.committedSize) {
          throw dataLoss(`the local file of upload "${session.id}" holds ${size} of its ${session.committedSize} committed bytes`);
        }
        // Bytes written after the last checkpoint were never committed: this stream sends them again.
        if (size > session.committedSize) await handle.truncate(session.committedSize);
      } catch (err) {
        await handle.close().catch(() => undefined);
        throw StorageError.is(err) ? err : translate(err, "opening an upload");
      }
      const start = { size: session.committedSize, crc32c: session.crc32c };
      const writer = createFileWriter(handle, { start, durable: blobs.durable, ensureSpace: blobs.ensureSpace });
      let closed = false;
      return {
        get size() {
          return writer.size;
        },
        write: (chunk) => writer.write(chunk),
        async checkpoint(expiresAt) {
          const synced = await writer.sync();
          await index.groupCommit(() =>
            sql.record.run({ caller: session.caller, id: session.id, file, size: synced.size, crc: synced.crc32c, now: Date.now(), expiresAt }),
          );
          return synced;
        },
        async close() {
          if (closed) return;
          closed = true;
          await writer.settle();
          await handle.close().catch(() => undefined);
        },
      };
    },

    source(session) {
      const file = blobs.uploadPath(fileOf(session));
      const size = session.committedSize;
      // The file is only ever written past the committed size, so its first `size` bytes stay as they are.
      return new (class extends FileBackedSource {
        readonly file = file;
        readonly byteLength = size;
        async *[Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
          if (size === 0) return;
          const handle = await fs.open(file, "r").catch((err) => Promise.reject(translate(err, "reading an upload")));
          try {
            const stream = handle.createReadStream({ start: 0, end: size - 1, highWaterMark: READ_HIGH_WATER_MARK, autoClose: false });
            try {
              for await (const chunk of stream as AsyncIterable<Buffer>) yield chunk;
            } catch (err) {
              throw translate(err, "reading an upload");
            }
          } finally {
            await handle.close().catch(() => undefined);
          }
        }
      })();
    },

    async complete(session, object, expiresAt) {
      const file = fileOf(session);
      await index.groupCommit(() => sql.complete.run({ caller: session.caller, id: session.id, file, object, now: Date.now(), expiresAt }));
      files.delete(session);
      session.object = object;
      session.expiresAt = expiresAt;
      await unlink(file);
    },

    async remove(caller, id) {
      const file = await index.groupCommit(() => {
        const f = sql.fileOf.get(caller, id) as string | null | undefined;
        sql.remove.run(caller, id);
        return f;
      });
      if (typeof file === "string") await unlink(file);
      return file !== undefined;
    },

    fileReferenced: (id) => index.indexed("sweeping", () => sql.fileReferenced.get(id)) !== undefined,
  };
}
