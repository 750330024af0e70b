/**
 * The layout of the local tier's index (index.sqlite): its tables, the
 * columns a record is read from, the migrations that bring an index made by
 * an older version up to date, and the mapping of rows to records.
 */
import type Database from "better-sqlite3";
import type { DataKindName, JsonObject, ObjectRecord, OutboxEntry } from "../backend.js";

export interface ObjectRow {
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

export interface OutboxRow {
  seq: bigint;
  key: string;
  op: "put" | "delete";
  generation: bigint;
  created_at: bigint;
  written_at: bigint;
  writer: string;
}

export const SCHEMA = `
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
  -- What the objects table holds, kept by its triggers in each write's own transaction (metrics).
  CREATE TABLE IF NOT EXISTS tier_totals (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    objects INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    stored_bytes INTEGER NOT NULL
  );
  CREATE TRIGGER IF NOT EXISTS tier_totals_insert AFTER INSERT ON objects BEGIN
    UPDATE tier_totals SET objects = objects + 1, bytes = bytes + NEW.size, stored_bytes = stored_bytes + NEW.stored_size;
  END;
  CREATE TRIGGER IF NOT EXISTS tier_totals_update AFTER UPDATE OF size, stored_size ON objects BEGIN
    UPDATE tier_totals SET bytes = bytes + NEW.size - OLD.size, stored_bytes = stored_bytes + NEW.stored_size - OLD.stored_size;
  END;
  CREATE TRIGGER IF NOT EXISTS tier_totals_delete AFTER DELETE ON objects BEGIN
    UPDATE tier_totals SET objects = objects - 1, bytes = bytes - OLD.size, stored_bytes = stored_bytes - OLD.stored_size;
  END;
  CREATE TABLE IF NOT EXISTS identities (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS uploads (  -- resumable upload sessions (upload-store.ts)
    caller TEXT NOT NULL,            -- the auth entry's name ("anonymous" without auth): ids are per caller
    id TEXT NOT NULL,                -- the client's upload_id
    key TEXT NOT NULL,
    header TEXT NOT NULL,            -- the first stream's header fields (JSON): a resume repeats them
    file TEXT,                       -- file id under uploads/; NULL once complete
    committed_size INTEGER NOT NULL, -- bytes of the file fsynced, never fewer than before
    crc32c INTEGER NOT NULL,         -- CRC32C of those bytes
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,     -- the session (and its file) is deleted from then on
    object TEXT,                     -- the stored object's record (JSON) once complete
    PRIMARY KEY (caller, id)
  ) WITHOUT ROWID;
  CREATE INDEX IF NOT EXISTS uploads_expires_at ON uploads (expires_at);
  CREATE INDEX IF NOT EXISTS uploads_file ON uploads (file) WHERE file IS NOT NULL;
  -- The disk cache of GCS objects (server/cache/disk/): one copy per key, its
  -- bytes in disk-cache/blobs/. Written through its own connection.
  CREATE TABLE IF NOT EXISTS disk_cache (
    key TEXT PRIMARY KEY,            -- BINARY collation: byte order, as objects
    generation INTEGER NOT NULL,     -- GCS's generation of the copy
    record TEXT NOT NULL,            -- JSON of GCS's record (generation as a string)
    stored_size INTEGER NOT NULL,
    stored_crc32c INTEGER NOT NULL,  -- of the whole stored bytes
    block_bytes INTEGER NOT NULL,
    block_crcs BLOB NOT NULL,        -- CRC32C of each block_bytes block, 4 bytes big-endian each
    blob TEXT NOT NULL,              -- file id under disk-cache/blobs/
    last_access INTEGER NOT NULL     -- Unix ms, written lazily (LRU order across restarts)
  );
  CREATE INDEX IF NOT EXISTS disk_cache_blob ON disk_cache (blob);
`;

export interface UploadRow {
  caller: string;
  id: string;
  key: string;
  header: string;
  file: string | null;
  committed_size: bigint;
  crc32c: bigint;
  created_at: bigint;
  updated_at: bigint;
  expires_at: bigint;
  object: string | null;
}

// Every column but the inline bytes, which only a read of the object needs.
export const RECORD_COLUMNS =
  `o.key, o.generation, o.kind, o.content_type, o.metadata, o.size, o.crc32c, o.stored_size, o.stored_crc32c, ` +
  `o.encoding, o.created_at, o.updated_at, o.expires_at, o.blob, o.written_at, o.writer, ` +
  `EXISTS (SELECT 1 FROM outbox b WHERE b.key = o.key) AS pending`;

/**
 * Brings an index made by an older version up to this schema, one step per
 * version, each in its own transaction:
 * 1. write origins: rows and outbox entries of older indexes get their
 *    update / creation time as the write time and an unknown writer;
 * 2. tier_totals: counted once from the objects there; its triggers (in
 *    SCHEMA) keep it from then on.
 */
export function migrate(db: Database.Database): void {
  const version = Number(db.pragma("user_version", { simple: true }));
  if (version < 1) addOrigins(db);
  if (version < 2) {
    db.transaction(() => {
      db.exec(`DELETE FROM tier_totals`);
      db.exec(
        `INSERT INTO tier_totals (id, objects, bytes, stored_bytes) ` +
          `SELECT 1, count(*), coalesce(sum(size), 0), coalesce(sum(stored_size), 0) FROM objects`,
      );
      db.pragma("user_version = 2");
    })();
  }
}

function addOrigins(db: Database.Database): void {
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

export function toRecord(row: ObjectRow): ObjectRecord {
  const record: ObjectRecord = {
    key: row.key,
    generation: row.generation,
    kind: row.kind as DataKindName,
    contentType: row.content_type,
    metadata: JSON.parse(row.metadata) as JsonObject,
    size: Number(row.size),
    crc32c: Number(row.crc32c),
    storedSize: Number(row.stored_size),
    storedCrc32c: Number(row.stored_crc32c),
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

export function toEntry(row: OutboxRow | undefined): OutboxEntry | undefined {
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
