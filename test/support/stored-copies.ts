/**
 * What a daemon keeps in its storage folder, read and damaged the way a
 * disk would: the local tier's rows and blob files, the disk cache's rows
 * and files (index.sqlite's `objects` and `disk_cache` tables), and one byte
 * flipped in any of them. Tests use these to corrupt one stored byte and
 * watch the daemon notice.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import Database from "better-sqlite3";

const index = (storagePath: string, readonly: boolean) =>
  new Database(path.join(storagePath, "index.sqlite"), { readonly, fileMustExist: true, timeout: 5000 });

function withIndex<T>(storagePath: string, readonly: boolean, fn: (db: Database.Database) => T): T {
  const db = index(storagePath, readonly);
  try {
    return fn(db);
  } finally {
    db.close();
  }
}

/** The disk cache's row of `key` (its generation and file id), or undefined. */
export function cacheRow(storagePath: string, key: string): { generation: bigint; blob: string; storedSize: number } | undefined {
  return withIndex(storagePath, true, (db) => {
    db.defaultSafeIntegers(true);
    const row = db.prepare("SELECT generation, blob, stored_size FROM disk_cache WHERE key = ?").get(key) as
      | { generation: bigint; blob: string; stored_size: bigint }
      | undefined;
    return row && { generation: row.generation, blob: row.blob, storedSize: Number(row.stored_size) };
  });
}

/** Keys the disk cache holds, sorted. */
export function cachedKeys(storagePath: string): string[] {
  return withIndex(storagePath, true, (db) => (db.prepare("SELECT key FROM disk_cache ORDER BY key").pluck().all() as string[]));
}

/** The file holding the disk cache's copy with id `blob`. */
export function cacheFile(storagePath: string, blob: string): string {
  return path.join(storagePath, "disk-cache", "blobs", blob.slice(0, 2), blob);
}

/** The local tier's row of `key`: its blob file id (undefined when inline) and whether it is pending. */
export function localRow(storagePath: string, key: string): { blob?: string; generation: bigint } | undefined {
  return withIndex(storagePath, true, (db) => {
    db.defaultSafeIntegers(true);
    const row = db.prepare("SELECT blob, generation FROM objects WHERE key = ?").get(key) as { blob: string | null; generation: bigint } | undefined;
    return row && { blob: row.blob ?? undefined, generation: row.generation };
  });
}

/** The local tier's blob file with id `blob`. */
export function localBlobFile(storagePath: string, blob: string): string {
  return path.join(storagePath, "blobs", blob.slice(0, 2), blob);
}

/** Flips every bit of the byte at `offset` of `file` (its size and times otherwise unchanged). */
export function flipFileByte(file: string, offset: number): void {
  const fd = fs.openSync(file, "r+");
  try {
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, offset);
    b[0] = b[0]! ^ 0xff;
    fs.writeSync(fd, b, 0, 1, offset);
  } finally {
    fs.closeSync(fd);
  }
}

/** Flips the byte at `offset` of the inline bytes of `key`'s row in index.sqlite (small objects live there). */
export function flipInlineByte(storagePath: string, key: string, offset: number): void {
  withIndex(storagePath, false, (db) => {
    const data = db.prepare("SELECT data FROM objects WHERE key = ?").pluck().get(key) as Buffer | null | undefined;
    if (!data) throw new Error(`no inline bytes for key ${key}`);
    const copy = Buffer.from(data);
    copy[offset] = copy[offset]! ^ 0xff;
    db.prepare("UPDATE objects SET data = ? WHERE key = ?").run(copy, key);
  });
}

/** Writes a file into the local tier's blob folder that no row names, last modified `ageMs` ago (an orphan). */
export function plantOrphanBlob(storagePath: string, ageMs: number, folder: "blobs" | "disk-cache/blobs" = "blobs"): string {
  const id = "0f".padEnd(32, "e");
  const file = path.join(storagePath, folder, id.slice(0, 2), id);
  fs.writeFileSync(file, "left behind by a crash", { mode: 0o600 });
  const then = new Date(Date.now() - ageMs);
  fs.utimesSync(file, then, then);
  return id;
}

/**
 * Rewrites GCS's bytes of `key` with the byte at `offset` flipped, keeping
 * its content type and custom metadata (so its record, size and CRC32C of
 * the original bytes are unchanged; GCS gives it a new generation and its
 * own CRC32C of the new bytes): rot at rest, as a reader of the bucket sees it.
 */
export async function flipGcsByte(bucket: import("@google-cloud/storage").Bucket, key: string, offset: number): Promise<void> {
  const file = bucket.file(key);
  const [md] = await file.getMetadata();
  const [bytes] = await file.download();
  bytes[offset] = bytes[offset]! ^ 0xff;
  await file.save(bytes, { resumable: false, validation: false, metadata: { contentType: md.contentType, metadata: md.metadata } });
}
