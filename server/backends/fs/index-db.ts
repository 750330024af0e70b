/**
 * The local tier's index: an embedded SQLite database (WAL, synchronous=FULL)
 * holding every record, the inline bytes of small objects, generations, the
 * outbox and the folder's identities. Writes go through a group commit:
 * commits that arrive within one event-loop turn share one transaction (one
 * fsync), each in its own savepoint.
 */
import { randomUUID } from "node:crypto";
import Database from "better-sqlite3";
import type { DeleteOptions, Outbox, OutboxEntry, PutMeta, PutOptions } from "../backend.js";
import { RECORD_COLUMNS, SCHEMA, migrate, toEntry, type ObjectRow, type OutboxRow } from "./index-schema.js";

export { toRecord, type ObjectRow } from "./index-schema.js";
import { newOrigin } from "../write-origin.js";
import { generationMismatch, unavailable } from "../../storage-error.js";
import { translate } from "./fs-errors.js";
import { successor } from "./key-range.js";
import { makePrivateFile } from "./private-files.js";

/** The range scan for a listing shape: keys from (inclusive) or after a bound, optionally below an upper bound. */
export type ScanFor = (inclusive: boolean, bounded: boolean) => Database.Statement;

/** Hooks a test uses to fail a group commit at a chosen point. */
export interface FsFaults {
  /** Runs inside the shared transaction before job `index` of a batch of `size`; `exec` runs SQL there. */
  beforeCommitJob?(index: number, size: number, exec: (sql: string) => void): void;
}

/** The index: records, the outbox, the group commit and the folder's identities. */
export interface IndexDb {
  /** The database, for the tables another module of this backend owns (upload-store.ts). */
  readonly database: Database.Database;
  readonly outbox: Outbox;
  readonly scanFor: ScanFor;
  /** This folder's writer id: the origin of writes that come without one. */
  readonly writer: string;
  identity(name: string, create: () => string): string;
  /** Runs a synchronous index operation, translating SQLite failures. */
  indexed<T>(what: string, fn: () => T): T;
  readRow(key: string): ObjectRow | undefined;
  /** Runs `run` (a transaction function) in the next group commit. */
  groupCommit<T>(run: () => T): Promise<T>;
  /** In a transaction: checks the precondition, writes the row (and the outbox entry), returns the replaced blob. */
  commitPut(key: string, meta: PutMeta, stored: { size: number; crc32c: number }, body: { blob: string } | { data: Buffer }, opts: PutOptions): { oldBlob?: string; row: ObjectRow };
  /** In a transaction: checks the precondition, deletes the row (records a tombstone with `pending`), returns its blob. */
  commitDelete(key: string, opts: DeleteOptions): { existed: boolean; blob?: string };
  /** The generation of `key` now, or undefined. */
  generationOf(key: string): bigint | undefined;
  /** The inline bytes of `key` at `generation`, or undefined (replaced meanwhile). */
  inlineData(key: string, generation: bigint): Buffer | undefined;
  /** True when some row names the blob `id`. */
  blobReferenced(id: string): boolean;
  /** Up to `limit` keys expired at `now`, soonest first. */
  expired(now: number, limit: number): string[];
  /** Up to `limit` keys under `prefix` after `after` (in key order) whose write is older than `writtenBefore` (Unix µs). */
  writtenBefore(prefix: string, writtenBefore: number, after: string | undefined, limit: number): string[];
  /** Count and bytes of the objects under `prefix` live at `now` (Unix ms), leaving out those `agedOut` names. */
  usage(prefix: string, now: number, agedOut: readonly AgedOut[]): IndexUsage;
  /** Every object the index holds (expired and pending ones too), kept by triggers: no scan. */
  totals(): IndexUsage;
  /** Objects with keys from `from` (inclusive) to `upper` (exclusive; undefined = no bound) and their stored bytes. */
  count(from: string, upper: string | undefined): { objects: number; storedBytes: number };
  probe(): void;
  /** Commits what waits for the next group commit, then closes the database. */
  close(): void;
}

/** Objects under `prefix` whose write is older than `writtenBefore` (Unix µs): what a lifecycle rule expired. */
export interface AgedOut {
  prefix: string;
  writtenBefore: number;
}

export interface IndexUsage {
  objects: number;
  bytes: number;
  storedBytes: number;
}

/**
 * Opens (creating, private) the index at `file` and brings it up to this
 * schema. `onBlobFreed` is told of every blob a completed outbox entry no
 * longer needs (the caller unlinks it).
 */
export function openIndex(file: string, opts: { durable: boolean; faults?: FsFaults; onBlobFreed: (id: string) => void }): IndexDb {
  const { onBlobFreed, faults } = opts;
  // SQLite gives -wal and -shm the mode of the database file, so it is created private.
  makePrivateFile(file, { create: true });
  for (const side of ["-wal", "-shm"]) makePrivateFile(file + side);
  const db = new Database(file);
  db.defaultSafeIntegers(true);
  db.pragma("encoding = 'UTF-8'");
  db.pragma("journal_mode = WAL");
  db.pragma(`synchronous = ${opts.durable ? "FULL" : "NORMAL"}`);
  db.pragma("busy_timeout = 5000");
  db.exec(SCHEMA);
  migrate(db);

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
        encoding = excluded.encoding, created_at = excluded.created_at, updated_at = excluded.updated_at,
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
    // A range scan of the prefix on the key index; the age is checked per row.
    writtenBefore: db
      .prepare(`SELECT key FROM objects WHERE key >= @from AND key < @upper AND written_at < @before ORDER BY key LIMIT @limit`)
      .pluck(),
    countFrom: db.prepare(`SELECT count(*) AS n, coalesce(sum(stored_size), 0) AS bytes FROM objects WHERE key >= ?`),
    countRange: db.prepare(`SELECT count(*) AS n, coalesce(sum(stored_size), 0) AS bytes FROM objects WHERE key >= ? AND key < ?`),
    identity: db.prepare(`SELECT value FROM identities WHERE name = ?`).pluck(),
    totals: db.prepare(`SELECT objects, bytes, stored_bytes AS storedBytes FROM tier_totals WHERE id = 1`),
    createIdentity: db.prepare(`INSERT OR IGNORE INTO identities (name, value) VALUES (?, ?)`),
  };
  const scans = new Map<string, Database.Statement>();
  const usageQueries = new Map<number, Database.Statement>();
  /** The usage aggregate with `rules` exclusions, prepared once per count: a range scan of the prefix. */
  const usageFor = (rules: number) => {
    let q = usageQueries.get(rules);
    if (q === undefined) {
      const aged = Array.from({ length: rules }, (_, i) => ` AND NOT (key >= @p${i} AND key < @u${i} AND written_at < @b${i})`).join("");
      q = db.prepare(
        `SELECT count(*) AS objects, coalesce(sum(size), 0) AS bytes, coalesce(sum(stored_size), 0) AS storedBytes FROM objects ` +
          `WHERE key >= @from AND key < @upper AND (expires_at IS NULL OR expires_at > @now)${aged}`,
      );
      usageQueries.set(rules, q);
    }
    return q;
  };
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
        faults?.beforeCommitJob?.(index, jobs.length, (text) => db.exec(text));
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

  const outbox: Outbox = {
    get(key) {
      return indexed("reading the outbox", () => toEntry(sql.outboxEntry.get(key) as OutboxRow | undefined));
    },
    list(limit) {
      return indexed("reading the outbox", () => (sql.outboxList.all(limit) as OutboxRow[]).map((r) => toEntry(r)!));
    },
    complete(entry, opts = {}) {
      const result = indexed("completing an outbox entry", () => completeEntry(entry, opts.dropLocalCopy ?? false));
      if (result.blob !== undefined) onBlobFreed(result.blob);
      return result.done;
    },
    stats() {
      return indexed("reading the outbox", () => {
        const { count, oldest } = sql.outboxStats.get() as { count: bigint; oldest: bigint | null };
        return oldest === null ? { count: Number(count) } : { count: Number(count), oldestCreatedAt: Number(oldest) };
      });
    },
  };

  return {
    database: db,
    outbox,
    scanFor,
    identity,
    writer,
    indexed,
    readRow,
    groupCommit,
    commitPut,
    commitDelete,
    /** The generation of `key` now, or undefined. */
    generationOf: (key: string) => indexed("reading", () => sql.generationOf.get(key) as bigint | undefined),
    /** The inline bytes of `key` at `generation`, or undefined (replaced meanwhile). */
    inlineData: (key: string, generation: bigint) => indexed("reading", () => sql.dataOf.get(key, generation) as Buffer | undefined),
    /** True when some row names the blob `id`. */
    blobReferenced: (id: string) => indexed("sweeping", () => sql.blobReferenced.get(id)) !== undefined,
    /** Up to `limit` keys expired at `now`, soonest first. */
    expired: (now: number, limit: number) => indexed("listing expired objects", () => sql.expired.all(now, limit) as string[]),
    writtenBefore: (prefix: string, before: number, after: string | undefined, limit: number) =>
      indexed("listing aged objects", () => {
        // Keys never hold NUL, so after + NUL is the first string after `after` a key can be. A prefix with
        // no successor (all U+10FFFF) is bounded by a BLOB, which SQLite sorts after every TEXT.
        const from = after === undefined ? prefix : `${after}\u0000`;
        const upper = successor(prefix) ?? Buffer.alloc(0);
        return sql.writtenBefore.all({ from, upper, before, limit }) as string[];
      }),
    usage: (prefix: string, now: number, agedOut: readonly AgedOut[]) =>
      indexed("counting usage", () => {
        const params: Record<string, unknown> = { from: prefix, upper: successor(prefix) ?? Buffer.alloc(0), now };
        agedOut.forEach((a, i) => {
          params[`p${i}`] = a.prefix;
          params[`u${i}`] = successor(a.prefix) ?? Buffer.alloc(0);
          params[`b${i}`] = a.writtenBefore;
        });
        const row = usageFor(agedOut.length).get(params) as { objects: number | bigint; bytes: number | bigint; storedBytes: number | bigint };
        return { objects: Number(row.objects), bytes: Number(row.bytes), storedBytes: Number(row.storedBytes) };
      }),
    totals: () =>
      indexed("reading totals", () => {
        const row = sql.totals.get() as { objects: number | bigint; bytes: number | bigint; storedBytes: number | bigint } | undefined;
        return { objects: Number(row?.objects ?? 0), bytes: Number(row?.bytes ?? 0), storedBytes: Number(row?.storedBytes ?? 0) };
      }),
    count(from: string, upper: string | undefined) {
      const row = indexed("counting", () => (upper === undefined ? sql.countFrom.get(from) : sql.countRange.get(from, upper))) as { n: bigint; bytes: bigint };
      return { objects: Number(row.n), storedBytes: Number(row.bytes) };
    },
    probe: () => void indexed("probing", () => db.prepare("SELECT 1").get()),
    /** Commits what waits for the next group commit, then closes the database. */
    close() {
      if (commitQueue.length > 0) flushCommits();
      if (db.open) db.close();
    },
  };
}


export function checkPrecondition(key: string, expected: bigint | undefined, actual: bigint | undefined): void {
  if (expected === undefined) return;
  if (expected === 0n ? actual !== undefined : actual !== expected) throw generationMismatch(key, expected, actual);
}

/** Thrown out of a group commit whose transaction SQLite rolled back mid-batch. */
class BatchRolledBack extends Error {
  constructor(override readonly cause: unknown) {
    super("the group commit was rolled back");
  }
}
