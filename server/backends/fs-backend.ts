/**
 * The local-disk backend: blobs in files named by random ids, everything else
 * (key, record fields, generations, the outbox) in an embedded SQLite index.
 *
 * Layout under `root` (folders 0700, files 0600: see private-files.ts):
 *   lock                held exclusively while open: one process per folder (folder-lock.ts)
 *   index.sqlite        WAL database: objects, outbox, counters
 *   tmp/<id>            uploads in flight; leftovers removed by sweepLeftovers()
 *   blobs/<xx>/<id>     committed blobs; an unreferenced one is removed by sweepLeftovers()
 *
 * Keys never become paths, so no key reaches outside the root and record data
 * never collides with blob data. A put streams into tmp/, fsyncs, renames into
 * blobs/, fsyncs the folder, then commits one SQLite transaction (precondition,
 * row, outbox entry); the old blob is unlinked after the commit. A crash at any
 * point leaves the old version and at most an orphan file the next start's sweep removes.
 */
import { randomBytes, randomUUID } from "node:crypto";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { Readable, Transform } from "node:stream";
import { crc32c } from "@node-rs/crc32";
import Database from "better-sqlite3";
import type {
  Backend,
  DataKindName,
  DeleteOptions,
  JsonObject,
  ListOptions,
  ListPage,
  ObjectRecord,
  Outbox,
  OutboxEntry,
  PutMeta,
  PutOptions,
} from "./backend.js";
import { compareKeys } from "./backend.js";
import { newOrigin } from "./write-origin.js";
import { lockFolder, type FolderLock } from "./folder-lock.js";
import { createInFlight } from "./in-flight.js";
import { makePrivateFile, makePrivateFolder } from "./private-files.js";
import { Code, StorageError, dataLoss, generationMismatch, invalidArgument, unavailable } from "../storage-error.js";

export interface FsBackendOptions {
  /** The storage folder; created when missing. */
  root: string;
  tierName?: "local";
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

/** Hooks a test uses to fail a group commit at a chosen point. */
export interface FsFaults {
  /** Runs inside the shared transaction before job `index` of a batch of `size`; `exec` runs SQL there. */
  beforeCommitJob?(index: number, size: number, exec: (sql: string) => void): void;
}

/** The local backend: a Backend with an outbox and a query for the expiry sweeper. */
export type FsBackend = Backend & {
  readonly outbox: Outbox;
  /** Up to `limit` keys whose expiresAt is at or before `now` (Unix ms), soonest first. This
   * backend does not hide expired objects itself; the engine does, and sweeps them with this. */
  expired(now: number, limit: number): string[];
  /**
   * A value kept in the index for the life of the storage folder: the one stored under `name`,
   * or, the first time, the one `create` makes (stored atomically, so every caller sees the same).
   * For identities such as this store's id and this daemon's writer id.
   */
  identity(name: string, create: () => string): string;
  /**
   * Removes what a crash left: every file in tmp/ and every blob no row names,
   * except the files of puts this backend started meanwhile, so it is safe
   * while serving. Call it once per open (the daemon does, after binding);
   * a second call rejects.
   */
  sweepLeftovers(): Promise<{ tmpFiles: number; blobs: number }>;
};

/** Writes reach the disk in pieces of at least this much (small chunks are coalesced). */
const PIECE_BYTES = 1024 * 1024;
/** Read stream buffer: the 64 KiB default halves read throughput. */
const READ_HIGH_WATER_MARK = 1024 * 1024;
/** How many times a read retries when a concurrent write replaced the blob under it. */
const READ_ATTEMPTS = 5;
const DEFAULT_MIN_FREE_BYTES = 64 * 1024 * 1024;
/** A streamed write checks the free space again after each this many bytes. */
const SPACE_CHECK_BYTES = 16 * 1024 * 1024;
/** How long close() waits for cancelled puts to remove their files before it closes anyway. */
const CLOSE_WAIT_MS = 5000;

interface ObjectRow {
  key: string;
  generation: bigint;
  kind: string;
  content_type: string;
  metadata: string;
  size: bigint;
  crc32c: bigint;
  stored_size: bigint;
  stored_crc32c: bigint;
  encoding: string;
  created_at: bigint;
  updated_at: bigint;
  expires_at: bigint | null;
  blob: string | null;
  pending: bigint;
  written_at: bigint;
  writer: string;
}

interface OutboxRow {
  seq: bigint;
  key: string;
  op: "put" | "delete";
  generation: bigint;
  created_at: bigint;
  written_at: bigint;
  writer: string;
}

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS objects (
    key TEXT PRIMARY KEY,            -- BINARY collation: memcmp of UTF-8 = byte order
    generation INTEGER NOT NULL,
    kind TEXT NOT NULL,
    content_type TEXT NOT NULL,
    metadata TEXT NOT NULL,          -- JSON
    size INTEGER NOT NULL,
    crc32c INTEGER NOT NULL,
    stored_size INTEGER NOT NULL,
    stored_crc32c INTEGER NOT NULL,
    encoding TEXT NOT NULL,          -- JSON
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    expires_at INTEGER,
    blob TEXT,                       -- file id under blobs/; NULL when the bytes are inline
    data BLOB,                       -- the bytes of a small object, kept in the index
    written_at INTEGER NOT NULL DEFAULT 0, -- the write's origin (write-origin.ts): microseconds
    writer TEXT NOT NULL DEFAULT ''        -- and the writing daemon
  ) WITHOUT ROWID;
  CREATE INDEX IF NOT EXISTS objects_blob ON objects (blob);
  CREATE INDEX IF NOT EXISTS objects_expires_at ON objects (expires_at) WHERE expires_at IS NOT NULL;
  CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    op TEXT NOT NULL,
    generation INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    written_at INTEGER NOT NULL DEFAULT 0,
    writer TEXT NOT NULL DEFAULT ''
  );
  CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS identities (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
`;

// Every column but the inline bytes, which only a read of the object needs.
const RECORD_COLUMNS =
  `o.key, o.generation, o.kind, o.content_type, o.metadata, o.size, o.crc32c, o.stored_size, o.stored_crc32c, ` +
  `o.encoding, o.created_at, o.updated_at, o.expires_at, o.blob, o.written_at, o.writer, ` +
  `EXISTS (SELECT 1 FROM outbox b WHERE b.key = o.key) AS pending`;

/**
 * Brings an index made by an older version up to this schema. Version 1 added
 * write origins: rows and outbox entries of older indexes get their update /
 * creation time as the write time and an unknown writer.
 */
function migrate(db: Database.Database): void {
  const version = Number(db.pragma("user_version", { simple: true }));
  if (version >= 1) return;
  db.transaction(() => {
    const has = (table: string, column: string) =>
      (db.prepare(`SELECT 1 FROM pragma_table_info(?) WHERE name = ?`).get(table, column) as unknown) !== undefined;
    for (const table of ["objects", "outbox"]) {
      if (!has(table, "written_at")) db.exec(`ALTER TABLE ${table} ADD COLUMN written_at INTEGER NOT NULL DEFAULT 0`);
      if (!has(table, "writer")) db.exec(`ALTER TABLE ${table} ADD COLUMN writer TEXT NOT NULL DEFAULT ''`);
    }
    db.exec(`UPDATE objects SET written_at = updated_at * 1000 WHERE written_at = 0`);
    db.exec(`UPDATE outbox SET written_at = created_at * 1000 WHERE written_at = 0`);
    db.pragma("user_version = 1");
  })();
}

/**
 * Objects up to this size live inline in the SQLite index: one WAL commit
 * (shared by a group commit) makes them durable, instead of a file, its fsync,
 * a rename and a folder fsync (DESIGN.md: a file and an fsync per small object
 * cap small writes).
 */
export const INLINE_MAX_BYTES = 64 * 1024;

/**
 * Opens (creating when missing) the local backend at `opts.root`: makes the
 * folder private, takes its lock before anything else (a second process or
 * backend on the folder gets a FolderInUseError; two would remove each other's
 * uploads), then opens the index. Leftovers of a crash stay until
 * sweepLeftovers().
 */
export async function createFsBackend(opts: FsBackendOptions): Promise<FsBackend> {
  const root = path.resolve(opts.root);
  const durable = opts.fsync ?? true;
  const tmpDir = path.join(root, "tmp");
  const blobsDir = path.join(root, "blobs");
  const shardNames = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

  let lock: FolderLock;
  try {
    makePrivateFolder(root);
    lock = lockFolder(root);
  } catch (err) {
    if (StorageError.is(err)) throw err;
    throw unavailable("cannot open the local storage folder", err);
  }
  let db: Database.Database;
  try {
    makePrivateFolder(tmpDir);
    makePrivateFolder(blobsDir);
    // Every shard folder exists up front, so a put never creates (and fsyncs) a parent.
    await Promise.all(shardNames.map((s) => fs.mkdir(path.join(blobsDir, s), { recursive: true, mode: 0o700 })));
    // SQLite gives -wal and -shm the mode of the database file, so it is created private.
    const indexFile = path.join(root, "index.sqlite");
    makePrivateFile(indexFile, { create: true });
    for (const side of ["-wal", "-shm"]) makePrivateFile(indexFile + side);
    db = new Database(indexFile);
    db.defaultSafeIntegers(true);
    db.pragma("encoding = 'UTF-8'");
    db.pragma("journal_mode = WAL");
    db.pragma(`synchronous = ${durable ? "FULL" : "NORMAL"}`);
    db.pragma("busy_timeout = 5000");
    db.exec(SCHEMA);
    migrate(db);
  } catch (err) {
    lock.release();
    throw unavailable("cannot open the local storage folder", err);
  }

  const sql = {
    row: db.prepare(`SELECT ${RECORD_COLUMNS} FROM objects o WHERE o.key = ?`),
    generationOf: db.prepare(`SELECT generation FROM objects WHERE key = ?`).pluck(),
    upsert: db.prepare(`
      INSERT INTO objects (key, generation, kind, content_type, metadata, size, crc32c, stored_size,
                           stored_crc32c, encoding, created_at, updated_at, expires_at, blob, data, written_at, writer)
      VALUES (@key, @generation, @kind, @contentType, @metadata, @size, @crc32c, @storedSize,
              @storedCrc32c, @encoding, @now, @now, @expiresAt, @blob, @data, @writtenAt, @writer)
      ON CONFLICT (key) DO UPDATE SET
        generation = excluded.generation, kind = excluded.kind, content_type = excluded.content_type,
        metadata = excluded.metadata, size = excluded.size, crc32c = excluded.crc32c,
        stored_size = excluded.stored_size, stored_crc32c = excluded.stored_crc32c,
        encoding = excluded.encoding, updated_at = excluded.updated_at,
        expires_at = excluded.expires_at, blob = excluded.blob, data = excluded.data,
        written_at = excluded.written_at, writer = excluded.writer`),
    dataOf: db.prepare(`SELECT data FROM objects WHERE key = ? AND generation = ?`).pluck(),
    blobOf: db.prepare(`SELECT blob, generation FROM objects WHERE key = ?`),
    deleteRow: db.prepare(`DELETE FROM objects WHERE key = ?`),
    blobReferenced: db.prepare(`SELECT 1 FROM objects WHERE blob = ?`).pluck(),
    counter: db.prepare(`SELECT value FROM counters WHERE name = 'generation'`).pluck(),
    setCounter: db.prepare(
      `INSERT INTO counters (name, value) VALUES ('generation', ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value`,
    ),
    // REPLACE deletes the key's older entry, so the new one takes a new seq.
    recordChange: db.prepare(
      `INSERT OR REPLACE INTO outbox (key, op, generation, created_at, written_at, writer) VALUES (?, ?, ?, ?, ?, ?)`,
    ),
    outboxEntry: db.prepare(`SELECT * FROM outbox WHERE key = ?`),
    outboxList: db.prepare(`SELECT * FROM outbox ORDER BY seq LIMIT ?`),
    outboxRemove: db.prepare(`DELETE FROM outbox WHERE key = ? AND seq = ?`),
    outboxRemoveKey: db.prepare(`DELETE FROM outbox WHERE key = ?`),
    outboxStats: db.prepare(`SELECT count(*) AS count, min(created_at) AS oldest FROM outbox`),
    expired: db.prepare(`SELECT key FROM objects WHERE expires_at <= ? ORDER BY expires_at LIMIT ?`).pluck(),
    identity: db.prepare(`SELECT value FROM identities WHERE name = ?`).pluck(),
    createIdentity: db.prepare(`INSERT OR IGNORE INTO identities (name, value) VALUES (?, ?)`),
  };
  const scans = new Map<string, Database.Statement>();
  /** The range scan for a listing, prepared once per shape (an OR in the bound would defeat the index). */
  const scanFor: ScanFor = (inclusive, bounded) => {
    const shape = `${inclusive}${bounded}`;
    let scan = scans.get(shape);
    if (scan === undefined) {
      scan = db.prepare(
        `SELECT ${RECORD_COLUMNS} FROM objects o WHERE o.key ${inclusive ? ">=" : ">"} @from` +
          (bounded ? ` AND o.key < @upper` : "") +
          ` ORDER BY o.key LIMIT @batch`,
      );
      scans.set(shape, scan);
    }
    return scan;
  };

  const blobPath = (id: string) => path.join(blobsDir, id.slice(0, 2), id);

  function identity(name: string, create: () => string): string {
    return indexed("reading an identity", () => {
      const known = sql.identity.get(name) as string | undefined;
      if (known !== undefined) return known;
      sql.createIdentity.run(name, create());
      return sql.identity.get(name) as string;
    });
  }
  /** This folder's writer id: the origin of writes that come without one (write-origin.ts). */
  const writer = identity("writer-id", () => randomUUID());

  /** Generations are microseconds like GCS's, and rise across delete/re-create via a persisted counter. */
  function nextGeneration(): bigint {
    const last = (sql.counter.get() as bigint | undefined) ?? 0n;
    const now = BigInt(Date.now()) * 1000n;
    const generation = last + 1n > now ? last + 1n : now;
    sql.setCounter.run(generation);
    return generation;
  }

  function readRow(key: string): ObjectRow | undefined {
    return sql.row.get(key) as ObjectRow | undefined;
  }

  /** Runs a synchronous index operation, translating SQLite failures. */
  function indexed<T>(what: string, fn: () => T): T {
    if (!db.open) throw unavailable("the local storage is closed");
    try {
      return fn();
    } catch (err) {
      throw translate(err, what);
    }
  }

  // Group commit: with synchronous=FULL every transaction ends in an fsync,
  // which better-sqlite3 runs on the main thread. Commits that arrive within
  // one event-loop turn run in one outer transaction (one fsync), each in its
  // own savepoint (nested transaction functions), so a failed precondition
  // undoes only its own write. Each caller resolves after the shared commit.
  type CommitJob = { run: () => unknown; resolve: (v: unknown) => void; reject: (e: unknown) => void };
  let commitQueue: CommitJob[] = [];
  const commitBatch = db.transaction((jobs: CommitJob[]) =>
    jobs.map((job, index) => {
      // Never run a job outside the shared transaction (see below).
      if (!db.inTransaction) throw new BatchRolledBack(new Error("the transaction ended before the batch did"));
      try {
        opts.faults?.beforeCommitJob?.(index, jobs.length, (text) => db.exec(text));
        return { ok: true as const, value: job.run() };
      } catch (err) {
        // SQLite may answer some failures (a full disk, I/O errors) by rolling
        // back the whole transaction, not just this job's savepoint. Then the
        // earlier jobs' writes are gone and the later ones would run outside
        // any transaction: fail the whole batch, so no job reports success.
        if (!db.inTransaction) throw new BatchRolledBack(err);
        return { ok: false as const, err };
      }
    }),
  );
  function flushCommits(): void {
    const jobs = commitQueue;
    commitQueue = [];
    let outcomes: ReturnType<typeof commitBatch>;
    try {
      if (!db.open) throw unavailable("the local storage is closed");
      outcomes = commitBatch(jobs);
    } catch (err) {
      const cause = err instanceof BatchRolledBack ? err.cause : err;
      for (const job of jobs) job.reject(translate(cause, "committing"));
      return;
    }
    jobs.forEach((job, i) => {
      const o = outcomes[i]!;
      if (o.ok) job.resolve(o.value);
      else job.reject(translate(o.err, "committing"));
    });
  }
  /** Runs `run` (a transaction function) in the next group commit. */
  function groupCommit<T>(run: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (commitQueue.push({ run, resolve: resolve as (v: unknown) => void, reject }) === 1) setImmediate(flushCommits);
    });
  }

  const commitPut = db.transaction(
    (key: string, meta: PutMeta, stored: { size: number; crc32c: number }, body: { blob: string } | { data: Buffer }, opts: PutOptions) => {
      const current = sql.blobOf.get(key) as { blob: string | null; generation: bigint } | undefined;
      checkPrecondition(key, opts.ifGenerationMatch, current?.generation);
      const generation = nextGeneration();
      const origin = meta.origin ?? newOrigin(writer);
      sql.upsert.run({
        key,
        generation,
        kind: meta.kind,
        contentType: meta.contentType,
        metadata: JSON.stringify(meta.metadata),
        size: meta.size ?? stored.size,
        crc32c: meta.crc32c ?? stored.crc32c,
        storedSize: stored.size,
        storedCrc32c: stored.crc32c,
        encoding: JSON.stringify(meta.encoding ?? {}),
        now: Date.now(),
        expiresAt: meta.expiresAt ?? null,
        blob: "blob" in body ? body.blob : null,
        data: "data" in body ? body.data : null,
        writtenAt: origin.writtenAt,
        writer: origin.writer,
      });
      if (opts.pending) sql.recordChange.run(key, "put", generation, Date.now(), origin.writtenAt, origin.writer);
      return { oldBlob: current?.blob ?? undefined, row: readRow(key)! };
    },
  );

  const commitDelete = db.transaction((key: string, opts: DeleteOptions) => {
    const current = sql.blobOf.get(key) as { blob: string | null; generation: bigint } | undefined;
    if (current !== undefined) checkPrecondition(key, opts.ifGenerationMatch, current.generation);
    if (current !== undefined) sql.deleteRow.run(key);
    // A tombstone even for a key absent here: the primary may still hold it.
    if (opts.pending) {
      const origin = opts.origin ?? newOrigin(writer);
      sql.recordChange.run(key, "delete", nextGeneration(), Date.now(), origin.writtenAt, origin.writer);
    }
    // Deleted without going through the outbox: nothing of this key is left to replicate.
    else sql.outboxRemoveKey.run(key);
    // Inline bytes go with the row; only a file needs unlinking.
    return { existed: current !== undefined, blob: current?.blob ?? undefined };
  });

  const completeEntry = db.transaction((entry: OutboxEntry, dropLocalCopy: boolean) => {
    if (sql.outboxRemove.run(entry.key, entry.seq).changes === 0) return { done: false };
    if (!dropLocalCopy || entry.op !== "put") return { done: true };
    const current = sql.blobOf.get(entry.key) as { blob: string | null; generation: bigint } | undefined;
    // Only the copy the entry was for; a later unreplicated write stays.
    if (current === undefined || current.generation !== entry.generation) return { done: true };
    sql.deleteRow.run(entry.key);
    return { done: true, blob: current.blob ?? undefined };
  });

  /** Unlinks a blob no row names any more; a failure leaves an orphan the next start removes. */
  async function dropBlob(id: string | undefined): Promise<void> {
    if (id === undefined) return;
    await fs.unlink(blobPath(id)).catch(() => undefined);
  }

  // Ids of the files this backend made before its sweep finished: the sweep keeps them.
  let sweep: "pending" | "running" | "done" = "pending";
  const madeBeforeSweep = new Set<string>();
  function newFileId(): string {
    const id = randomBytes(16).toString("hex");
    if (sweep !== "done") madeBeforeSweep.add(id);
    return id;
  }

  async function sweepLeftovers(): Promise<{ tmpFiles: number; blobs: number }> {
    if (sweep !== "pending") throw new Error("sweepLeftovers() runs once per open");
    sweep = "running";
    const removed = { tmpFiles: 0, blobs: 0 };
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
          if (madeBeforeSweep.has(name) || indexed("sweeping", () => sql.blobReferenced.get(name)) !== undefined) continue;
          await fs.rm(path.join(shardDir, name), { force: true });
          removed.blobs++;
        }
      }
      return removed;
    } catch (err) {
      throw StorageError.is(err) ? err : unavailable("cannot clean up the local storage folder", err);
    } finally {
      sweep = "done";
      madeBeforeSweep.clear();
    }
  }

  // close() cancels the puts still running and waits for their cleanup.
  const running = createInFlight(() => unavailable("the local storage is closed"));

  const bufferPool: Buffer[] = [];
  const minFree = opts.minFreeBytes ?? DEFAULT_MIN_FREE_BYTES;

  /** RESOURCE_EXHAUSTED once the disk is below the reserve kept for deletes and the index. */
  async function ensureSpace(): Promise<void> {
    let free: number;
    try {
      const stats = await fs.statfs(root);
      free = stats.bavail * stats.bsize;
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

  /** Streams `source` into a new file at `file`; returns the size and CRC32C written. */
  async function writeSource(
    file: string,
    source: AsyncIterable<Uint8Array>,
    signal: AbortSignal | undefined,
    checkSpace: () => Promise<void>,
  ): Promise<{ size: number; crc32c: number }> {
    const handle = await fs.open(file, "wx", 0o600).catch((err) => {
      throw translate(err, "creating a file");
    });
    const piece = bufferPool.pop() ?? Buffer.allocUnsafe(PIECE_BYTES);
    let fill = 0;
    let size = 0;
    let crc = 0;
    let checkedAt = 0;
    const flush = async (bytes: Uint8Array) => {
      if (size - checkedAt >= SPACE_CHECK_BYTES) {
        checkedAt = size;
        await checkSpace();
      }
      for (let at = 0; at < bytes.length; ) {
        const { bytesWritten } = await handle.write(bytes, at, bytes.length - at).catch((err) => {
          throw translate(err, "writing");
        });
        at += bytesWritten;
      }
    };
    try {
      for await (const chunk of abortable(source, signal)) {
        size += chunk.length;
        crc = crc32c(chunk, crc);
        let at = 0;
        if (fill > 0) {
          at = chunk.copy(piece, fill, 0, Math.min(chunk.length, PIECE_BYTES - fill));
          fill += at;
          if (fill < PIECE_BYTES) continue;
          await flush(piece);
          fill = 0;
        }
        const rest = chunk.subarray(at);
        // Large chunks go straight to disk; a small tail waits for more.
        if (rest.length >= PIECE_BYTES) await flush(rest);
        else fill = rest.copy(piece, 0);
      }
      if (fill > 0) await flush(piece.subarray(0, fill));
      if (durable) await handle.sync().catch((err) => Promise.reject(translate(err, "syncing")));
      return { size, crc32c: crc };
    } finally {
      if (bufferPool.length < 8) bufferPool.push(piece);
      await handle.close().catch(() => undefined);
    }
  }

  async function syncFolder(dir: string): Promise<void> {
    if (!durable) return;
    const handle = await fs.open(dir, "r");
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }

  const outbox: Outbox = {
    get(key) {
      return indexed("reading the outbox", () => toEntry(sql.outboxEntry.get(key) as OutboxRow | undefined));
    },
    list(limit) {
      return indexed("reading the outbox", () => (sql.outboxList.all(limit) as OutboxRow[]).map((r) => toEntry(r)!));
    },
    complete(entry, opts = {}) {
      const result = indexed("completing an outbox entry", () => completeEntry(entry, opts.dropLocalCopy ?? false));
      void dropBlob(result.blob);
      return result.done;
    },
    stats() {
      return indexed("reading the outbox", () => {
        const { count, oldest } = sql.outboxStats.get() as { count: bigint; oldest: bigint | null };
        return oldest === null ? { count: Number(count) } : { count: Number(count), oldestCreatedAt: Number(oldest) };
      });
    },
  };

  const backend: FsBackend = {
    name: opts.tierName ?? "local",
    outbox,

    async put(key, source, meta, opts = {}) {
      throwIfAborted(opts.signal);
      // Fail before receiving the body when the precondition already fails; the commit checks again.
      indexed("reading", () => {
        const current = sql.generationOf.get(key) as bigint | undefined;
        checkPrecondition(key, opts.ifGenerationMatch, current);
      });
      const id = newFileId();
      const tmpFile = path.join(tmpDir, id);
      let renamed = false;
      try {
        await ensureSpace();
        const small = await takeSmall(source, opts.signal);
        if (small.inline) {
          const data = small.inline;
          const stored = { size: data.length, crc32c: crc32c(data) };
          opts.verify?.(stored);
          throwIfAborted(opts.signal);
          const { oldBlob, row } = await groupCommit(() => commitPut(key, meta, stored, { data }, opts));
          await dropBlob(oldBlob);
          return toRecord(row);
        }
        const stored = await writeSource(tmpFile, small.rest, opts.signal, ensureSpace);
        opts.verify?.(stored);
        throwIfAborted(opts.signal);
        await fs.rename(tmpFile, blobPath(id));
        renamed = true;
        await syncFolder(path.dirname(blobPath(id)));
        throwIfAborted(opts.signal);
        const { oldBlob, row } = await groupCommit(() => commitPut(key, meta, stored, { blob: id }, opts));
        await dropBlob(oldBlob);
        return toRecord(row);
      } catch (err) {
        await fs.rm(renamed ? blobPath(id) : tmpFile, { force: true }).catch(() => undefined);
        throw translate(err, "writing");
      }
    },

    async get(key, opts = {}) {
      throwIfAborted(opts.signal);
      const range = opts.range;
      if (range && (!Number.isSafeInteger(range.offset) || range.offset < 0)) throw invalidArgument("range offset must be a non-negative integer");
      if (range?.length !== undefined && (!Number.isSafeInteger(range.length) || range.length < 0)) {
        throw invalidArgument("range length must be a non-negative integer");
      }
      for (let attempt = 0; attempt < READ_ATTEMPTS; attempt++) {
        const row = indexed("reading", () => readRow(key));
        if (row === undefined) return undefined;
        if (opts.ifGenerationMatch !== undefined) checkPrecondition(key, opts.ifGenerationMatch, row.generation);
        const storedSize = Number(row.stored_size);
        const start = range?.offset ?? 0;
        if (start > storedSize) throw new StorageError(Code.OutOfRange, `offset ${start} is past the end of the object (${storedSize} bytes)`);
        const end = range?.length === undefined ? storedSize : Math.min(storedSize, start + range.length);
        const whole = start === 0 && end === storedSize;
        const expected = whole ? { size: storedSize, crc32c: Number(row.stored_crc32c) } : undefined;
        if (row.blob === null) {
          const data = indexed("reading", () => sql.dataOf.get(key, row.generation) as Buffer | undefined);
          // Replaced between the two reads: look again.
          if (data === undefined) continue;
          // All of it is in memory: check it whole, even for a range, before any byte goes out.
          if (data.length !== storedSize || crc32c(data) !== Number(row.stored_crc32c)) {
            throw dataLoss("the stored object is corrupt: its checksum does not match");
          }
          const bytes = Readable.from(end > start ? [data.subarray(start, end)] : []);
          return { record: toRecord(row), body: withSignal(bytes, opts.signal) };
        }
        let handle: fs.FileHandle;
        try {
          handle = await fs.open(blobPath(row.blob), "r");
        } catch (err) {
          // A concurrent write or delete replaced the blob after we read the row: look again.
          if ((err as NodeJS.ErrnoException).code === "ENOENT") continue;
          throw translate(err, "reading");
        }
        const record = toRecord(row);
        if (end === start) {
          await handle.close();
          return { record, body: withSignal(Readable.from([]), opts.signal) };
        }
        const file = handle.createReadStream({ start, end: end - 1, highWaterMark: READ_HIGH_WATER_MARK });
        // Only a whole read can be checked against the stored CRC32C.
        const body = file.pipe(verifier(file, expected));
        return { record, body: withSignal(body, opts.signal) };
      }
      throw unavailable("the object kept changing while it was being read");
    },

    async head(key, opts = {}) {
      throwIfAborted(opts.signal);
      const row = indexed("reading", () => readRow(key));
      return row === undefined ? undefined : toRecord(row);
    },

    async delete(key, opts = {}) {
      throwIfAborted(opts.signal);
      const { existed, blob } = await groupCommit(() => commitDelete(key, opts));
      await dropBlob(blob);
      return existed;
    },

    async list(opts) {
      throwIfAborted(opts.signal);
      return indexed("listing", () => listPage(scanFor, opts));
    },

    async probe(signal) {
      throwIfAborted(signal);
      indexed("probing", () => db.prepare("SELECT 1").get());
      let free: number;
      try {
        await fs.access(tmpDir, fs.constants.W_OK);
        const stats = await fs.statfs(root);
        free = stats.bavail * stats.bsize;
      } catch (err) {
        throw translate(err, "probing");
      }
      if (free < minFree) {
        throw new StorageError(Code.Unavailable, `the local disk has ${mib(free)} free, below its reserve (LOCAL_MIN_FREE_BYTES=${mib(minFree)})`);
      }
    },

    async close() {
      // A put cancelled here removes its temp file before close resolves, so an
      // exit right after leaves none (a put that does not stop in time leaves
      // an orphan for the next sweep).
      await running.close(unavailable("the local storage is closing"), CLOSE_WAIT_MS);
      // Writes waiting for the next group commit are committed, not dropped.
      if (commitQueue.length > 0) flushCommits();
      if (db.open) db.close();
      lock.release();
    },

    sweepLeftovers,

    expired(now, limit) {
      return indexed("listing expired objects", () => sql.expired.all(now, limit) as string[]);
    },

    identity,
  };
  const put = backend.put;
  backend.put = (key, source, meta, putOpts = {}) =>
    running.run(putOpts.signal, (signal) => put(key, source, meta, { ...putOpts, signal }));
  return backend;
}

/**
 * One page of a listing, by SQL range scans on the key index (never LIKE, whose
 * wildcards and case folding do not fit). With a delimiter, keys under a
 * rolled-up prefix P are skipped with one jump to the first key after P.
 */
function listPage(scanFor: ScanFor, opts: ListOptions): ListPage {
  const prefix = opts.prefix ?? "";
  const { limit, delimiter, startAfter } = opts;
  if (!Number.isSafeInteger(limit) || limit < 1) throw invalidArgument("list limit must be a positive integer");
  if (delimiter === "") throw invalidArgument("list delimiter must not be empty");
  const upper = prefix === "" ? undefined : successor(prefix);
  const objects: ObjectRecord[] = [];
  const prefixes: string[] = [];
  const full = () => objects.length + prefixes.length >= limit;
  // The scan position: keys after `from`, or from `from` on when inclusive.
  let from = prefix;
  let inclusive = true;
  if (startAfter !== undefined && compareKeys(startAfter, prefix) >= 0) {
    from = startAfter;
    inclusive = false;
  }
  const scan = (batch: number) =>
    scanFor(inclusive, upper !== undefined).all({ from, upper: upper ?? null, batch }) as ObjectRow[];
  let last: string | undefined;
  let end = false;
  while (!end && !full()) {
    const batch = Math.min(limit - objects.length - prefixes.length + 1, 1000);
    const rows = scan(batch);
    end = rows.length < batch;
    for (const row of rows) {
      const cut = delimiter === undefined ? -1 : row.key.indexOf(delimiter, prefix.length);
      if (cut < 0) {
        objects.push(toRecord(row));
        last = from = row.key;
        inclusive = false;
        if (full()) break;
        continue;
      }
      const rolled = row.key.slice(0, cut + delimiter!.length);
      // A prefix at or before startAfter was on an earlier page; its keys are skipped all the same.
      if (startAfter === undefined || compareKeys(rolled, startAfter) > 0) {
        prefixes.push(rolled);
        last = rolled;
      }
      const next = successor(rolled);
      if (next === undefined) {
        end = true;
      } else {
        from = next;
        inclusive = true;
        end = false; // the rows after the jump are not read yet
      }
      break;
    }
  }
  if (end || last === undefined) return { objects, prefixes };
  // A full page: name `next` only when something follows.
  return scan(1).length > 0 ? { objects, prefixes, next: last } : { objects, prefixes };
}

type ScanFor = (inclusive: boolean, bounded: boolean) => Database.Statement;

/**
 * The smallest string greater than every string starting with `s` (UTF-8 byte
 * order equals code point order): its last code point plus one, skipping the
 * surrogate gap; undefined when `s` is all U+10FFFF.
 */
function successor(s: string): string | undefined {
  const points = Array.from(s);
  while (points.length > 0) {
    const cp = points.pop()!.codePointAt(0)!;
    if (cp < 0x10ffff) {
      const next = cp + 1 === 0xd800 ? 0xe000 : cp + 1;
      return points.join("") + String.fromCodePoint(next);
    }
  }
  return undefined;
}

function checkPrecondition(key: string, expected: bigint | undefined, actual: bigint | undefined): void {
  if (expected === undefined) return;
  if (expected === 0n ? actual !== undefined : actual !== expected) throw generationMismatch(key, expected, actual);
}

function toRecord(row: ObjectRow): ObjectRecord {
  const record: ObjectRecord = {
    key: row.key,
    generation: row.generation,
    kind: row.kind as DataKindName,
    contentType: row.content_type,
    metadata: JSON.parse(row.metadata) as JsonObject,
    size: Number(row.size),
    crc32c: Number(row.crc32c),
    storedSize: Number(row.stored_size),
    encoding: JSON.parse(row.encoding),
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
    tier: "local",
    pendingReplication: Number(row.pending) !== 0,
    origin: { writtenAt: Number(row.written_at), writer: row.writer },
  };
  if (row.expires_at !== null) record.expiresAt = Number(row.expires_at);
  return record;
}

function toEntry(row: OutboxRow | undefined): OutboxEntry | undefined {
  if (row === undefined) return undefined;
  return {
    seq: Number(row.seq),
    key: row.key,
    op: row.op,
    generation: row.generation,
    createdAt: Number(row.created_at),
    origin: { writtenAt: Number(row.written_at), writer: row.writer },
  };
}

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

/** Destroys `body` with a StorageError when `signal` aborts. */
function withSignal(body: Readable, signal: AbortSignal | undefined): Readable {
  if (signal === undefined) return body;
  const onAbort = () => body.destroy(abortError(signal));
  signal.addEventListener("abort", onAbort, { once: true });
  body.once("close", () => signal.removeEventListener("abort", onAbort));
  return body;
}

/**
 * Reads `source` until it ends within INLINE_MAX_BYTES (then `inline` holds
 * it all) or passes that size (then `rest` yields everything, read or not).
 */
async function takeSmall(
  source: AsyncIterable<Uint8Array>,
  signal: AbortSignal | undefined,
): Promise<{ inline?: Buffer; rest: AsyncIterable<Uint8Array> }> {
  const iterator = abortable(source, signal)[Symbol.asyncIterator]();
  const head: Buffer[] = [];
  let size = 0;
  for (;;) {
    const step = await iterator.next();
    if (step.done) return { inline: Buffer.concat(head, size), rest: [] as unknown as AsyncIterable<Uint8Array> };
    head.push(step.value);
    size += step.value.length;
    if (size > INLINE_MAX_BYTES) break;
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

/** Iterates `source`, stopping at once when `signal` aborts even while the source is waiting. */
async function* abortable(source: AsyncIterable<Uint8Array>, signal: AbortSignal | undefined): AsyncGenerator<Buffer> {
  const iterator = source[Symbol.asyncIterator]();
  let finished = false;
  try {
    for (;;) {
      throwIfAborted(signal);
      let step: IteratorResult<Uint8Array>;
      try {
        step = await nextOrAbort(iterator, signal);
      } catch (err) {
        if (StorageError.is(err)) throw err;
        finished = true; // a source that threw is done
        throw new StorageError(Code.Unknown, "the upload source failed", { cause: err });
      }
      if (step.done) {
        finished = true;
        return;
      }
      const chunk = step.value;
      yield Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    }
  } finally {
    // Let the source release what it holds; do not wait for a source that is stuck.
    if (!finished) void Promise.resolve(iterator.return?.()).catch(() => undefined);
  }
}

/**
 * The next step of `iterator`, or an abort error as soon as `signal` fires.
 * The listener lives for one step only: racing every step against one
 * long-lived abort promise would leave a reaction per step on it, each holding
 * its chunk, so a whole upload would stay in memory until it ended.
 */
function nextOrAbort<T>(iterator: AsyncIterator<T>, signal: AbortSignal | undefined): Promise<IteratorResult<T>> {
  const next = iterator.next();
  if (signal === undefined) return next;
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      next.catch(() => undefined); // when the abort wins, a later failure of the source is moot
      reject(abortError(signal));
    };
    signal.addEventListener("abort", onAbort, { once: true });
    next.then(
      (step) => {
        signal.removeEventListener("abort", onAbort);
        resolve(step);
      },
      (err: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(err);
      },
    );
  });
}

function abortError(signal: AbortSignal): StorageError {
  const reason = signal.reason as { name?: string } | undefined;
  return reason?.name === "TimeoutError"
    ? new StorageError(Code.DeadlineExceeded, "the deadline passed", { cause: reason })
    : new StorageError(Code.Cancelled, "the call was cancelled", { cause: reason });
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortError(signal);
}

/** "12.5 MiB" */
function mib(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}

/** Thrown out of a group commit whose transaction SQLite rolled back mid-batch. */
class BatchRolledBack extends Error {
  constructor(override readonly cause: unknown) {
    super("the group commit was rolled back");
  }
}

/** Platform failures become StorageErrors whose messages carry no paths. */
function translate(err: unknown, what: string): StorageError {
  if (err instanceof StorageError) return err;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === "ENOSPC" || code === "EDQUOT" || code === "SQLITE_FULL") {
    return new StorageError(Code.ResourceExhausted, `the local disk is full (${what})`, { cause: err });
  }
  return unavailable(`local storage failed while ${what}`, err);
}
