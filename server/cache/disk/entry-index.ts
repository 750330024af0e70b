/**
 * The disk cache's index: the `disk_cache` table of the local tier's
 * database (server/backends/fs/index-schema.ts), one row per cached key,
 * through a connection of its own (synchronous=NORMAL: a crash may lose
 * the last entries, which are then orphans the start-up load removes).
 */
import type Database from "better-sqlite3";
import { compareKeys, type ObjectRecord } from "../../backends/backend.js";
import type { ScanFor } from "../../backends/fs/index-db.js";
import { successor } from "../../backends/fs/key-range.js";
import { recordFromJson, recordToJson } from "../cache-store.js";

/** One cached copy as the index knows it. */
export interface CacheEntry {
  key: string;
  /** GCS's generation of the copy (also in record). */
  generation: bigint;
  /** GCS's record of the copy, as it was when the copy was made. */
  record: ObjectRecord;
  /** Stored bytes of the copy and their CRC32C. */
  storedSize: number;
  storedCrc32c: number;
  blockBytes: number;
  /** Packed CRC32C per block (block-crcs.ts). */
  blockCrcs: Buffer;
  /** The file id of its bytes. */
  blob: string;
}

export interface EntryRow {
  key: string;
  generation: bigint;
  record: string;
  stored_size: bigint;
  stored_crc32c: bigint;
  block_bytes: bigint;
  block_crcs: Buffer;
  blob: string;
  last_access: bigint;
}

/** What the start-up load reads of every row, least recently used first. */
export interface EntrySummary {
  key: string;
  blob: string;
  storedSize: number;
}

export interface EntryIndex {
  get(key: string): CacheEntry | undefined;
  /** Inserts or replaces the row of `entry.key`; returns the blob of the row it replaced. */
  put(entry: CacheEntry, lastAccess: number): string | undefined;
  /** Deletes the row of `key` if it still names `blob`; true when it did. */
  remove(key: string, blob: string): boolean;
  /** Every row, least recently used first. */
  summaries(): EntrySummary[];
  /** Writes access times (one transaction). */
  touch(times: Iterable<[key: string, at: number]>): void;
  /** Up to `limit` entries under `prefix` after `after`, in key order. */
  page(prefix: string, after: string | undefined, limit: number): CacheEntry[];
  /** True when a row names the blob `id`. */
  blobReferenced(id: string): boolean;
  /** Entries under `prefix` and their stored bytes. */
  count(prefix: string): { entries: number; storedBytes: number };
  /** Range scans for listing.ts's listPage (rows carry key, generation and record). */
  readonly scanFor: ScanFor;
  close(): void;
}

export function toEntry(row: EntryRow): CacheEntry {
  return {
    key: row.key,
    generation: row.generation,
    record: recordFromJson(row.record),
    storedSize: Number(row.stored_size),
    storedCrc32c: Number(row.stored_crc32c),
    blockBytes: Number(row.block_bytes),
    blockCrcs: row.block_crcs,
    blob: row.blob,
  };
}

/** The index over `db` (a connection the index owns from now on: close() closes it). */
export function openEntryIndex(db: Database.Database): EntryIndex {
  const sql = {
    get: db.prepare(`SELECT * FROM disk_cache WHERE key = ?`),
    blobOf: db.prepare(`SELECT blob FROM disk_cache WHERE key = ?`).pluck(),
    put: db.prepare(`
      INSERT INTO disk_cache (key, generation, record, stored_size, stored_crc32c, block_bytes, block_crcs, blob, last_access)
      VALUES (@key, @generation, @record, @storedSize, @storedCrc32c, @blockBytes, @blockCrcs, @blob, @lastAccess)
      ON CONFLICT (key) DO UPDATE SET
        generation = excluded.generation, record = excluded.record, stored_size = excluded.stored_size,
        stored_crc32c = excluded.stored_crc32c, block_bytes = excluded.block_bytes, block_crcs = excluded.block_crcs,
        blob = excluded.blob, last_access = excluded.last_access`),
    remove: db.prepare(`DELETE FROM disk_cache WHERE key = ? AND blob = ?`),
    summaries: db.prepare(`SELECT key, blob, stored_size FROM disk_cache ORDER BY last_access, key`),
    touch: db.prepare(`UPDATE disk_cache SET last_access = ? WHERE key = ?`),
    pageAll: db.prepare(`SELECT * FROM disk_cache WHERE key > @after ORDER BY key LIMIT @limit`),
    pageFirst: db.prepare(`SELECT * FROM disk_cache WHERE key >= @after ORDER BY key LIMIT @limit`),
    blobReferenced: db.prepare(`SELECT 1 FROM disk_cache WHERE blob = ?`).pluck(),
    countFrom: db.prepare(`SELECT count(*) AS n, coalesce(sum(stored_size), 0) AS bytes FROM disk_cache WHERE key >= ?`),
    countRange: db.prepare(`SELECT count(*) AS n, coalesce(sum(stored_size), 0) AS bytes FROM disk_cache WHERE key >= ? AND key < ?`),
  };
  const putTx = db.transaction((entry: CacheEntry, lastAccess: number) => {
    const old = sql.blobOf.get(entry.key) as string | undefined;
    sql.put.run({
      key: entry.key,
      generation: entry.generation,
      record: recordToJson(entry.record),
      storedSize: entry.storedSize,
      storedCrc32c: entry.storedCrc32c,
      blockBytes: entry.blockBytes,
      blockCrcs: entry.blockCrcs,
      blob: entry.blob,
      lastAccess,
    });
    return old !== undefined && old !== entry.blob ? old : undefined;
  });
  const touchTx = db.transaction((times: Iterable<[string, number]>) => {
    for (const [key, at] of times) sql.touch.run(at, key);
  });
  const scans = new Map<string, Database.Statement>();
  const scanFor: ScanFor = (inclusive, bounded) => {
    const shape = `${inclusive}${bounded}`;
    let scan = scans.get(shape);
    if (scan === undefined) {
      scan = db.prepare(
        `SELECT key, generation, record FROM disk_cache WHERE key ${inclusive ? ">=" : ">"} @from` +
          (bounded ? ` AND key < @upper` : "") +
          ` ORDER BY key LIMIT @batch`,
      );
      scans.set(shape, scan);
    }
    return scan;
  };
  return {
    get(key) {
      const row = sql.get.get(key) as EntryRow | undefined;
      return row && toEntry(row);
    },
    put: (entry, lastAccess) => putTx(entry, lastAccess),
    remove: (key, blob) => sql.remove.run(key, blob).changes > 0,
    summaries: () =>
      (sql.summaries.all() as { key: string; blob: string; stored_size: bigint }[]).map((r) => ({ key: r.key, blob: r.blob, storedSize: Number(r.stored_size) })),
    touch: (times) => touchTx(times),
    page(prefix, after, limit) {
      const resume = after !== undefined && compareKeys(after, prefix) >= 0;
      const stmt = resume ? sql.pageAll : sql.pageFirst;
      // Keys under the prefix are one range from it on: the first key past it ends the page.
      const rows = (stmt.all({ after: resume ? after : prefix, limit }) as EntryRow[]).filter((r) => r.key.startsWith(prefix));
      return rows.map(toEntry);
    },
    blobReferenced: (id) => sql.blobReferenced.get(id) !== undefined,
    count(prefix) {
      const upper = prefix === "" ? undefined : successor(prefix);
      const row = (upper === undefined ? sql.countFrom.get(prefix) : sql.countRange.get(prefix, upper)) as { n: bigint; bytes: bigint };
      return { entries: Number(row.n), storedBytes: Number(row.bytes) };
    },
    scanFor,
    close() {
      if (db.open) db.close();
    },
  };
}
