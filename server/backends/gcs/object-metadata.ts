/**
 * How our records live in GCS objects. Our flags (kind, content type, user
 * metadata, original size and CRC32C, encoding, expiry, creation time, the
 * write's origin, the tombstone flag) are custom metadata (`x-fs-*`), never
 * contentEncoding: gzip, which would make GCS decompress behind our back and
 * break checksums and ranges. Objects written by other tools read as BYTES
 * with GCS's own size, CRC32C and creation time.
 */
import type { FileMetadata } from "@google-cloud/storage";
import type { DataKindName, Encoding, JsonObject, ObjectRecord, PutMeta } from "../backend.js";
import type { WriteOrigin } from "../write-origin.js";
import { RESERVED_PREFIX } from "../../keys.js";

/** Our custom metadata keys. */
export const X = {
  kind: "x-fs-kind",
  contentType: "x-fs-content-type",
  metadata: "x-fs-metadata",
  size: "x-fs-size",
  crc32c: "x-fs-crc32c",
  encoding: "x-fs-encoding",
  expiresAt: "x-fs-expires-at",
  createdAt: "x-fs-created-at",
  writtenAt: "x-fs-written-at",
  writer: "x-fs-writer",
  deleted: "x-fs-deleted",
} as const;

/** Upload parts in flight (composed into their key, then deleted). */
export const UPLOADS_PREFIX = `${RESERVED_PREFIX}uploads/`;
/** Content type of a tombstone object. */
export const TOMBSTONE_TYPE = "application/x-filestorage-tombstone";

/** The custom metadata of a new version. */
export function customMetadata(meta: PutMeta, createdAt: number | undefined, origin: WriteOrigin): Record<string, string> {
  const m: Record<string, string> = {
    [X.kind]: meta.kind,
    [X.contentType]: meta.contentType,
    [X.metadata]: JSON.stringify(meta.metadata ?? {}),
    [X.writtenAt]: String(origin.writtenAt),
    [X.writer]: origin.writer,
  };
  if (meta.size !== undefined) m[X.size] = String(meta.size);
  if (meta.crc32c !== undefined) m[X.crc32c] = String(meta.crc32c >>> 0);
  if (meta.encoding && Object.keys(meta.encoding).length > 0) m[X.encoding] = JSON.stringify(meta.encoding);
  if (meta.expiresAt !== undefined) m[X.expiresAt] = String(meta.expiresAt);
  // A new key's creation time is GCS's own; an overwrite keeps the first one.
  if (createdAt !== undefined) m[X.createdAt] = String(createdAt);
  return m;
}

/** The custom metadata of a tombstone left by the delete `origin`. */
export function tombstoneMetadata(origin: WriteOrigin): Record<string, string> {
  return { [X.deleted]: "1", [X.writtenAt]: String(origin.writtenAt), [X.writer]: origin.writer };
}

const KINDS: readonly DataKindName[] = ["BYTES", "TEXT", "JSON"];

/** Our record of a GCS object (a tombstone has `deleted: true`). */
export function toRecord(key: string, md: FileMetadata): ObjectRecord {
  const m = (md.metadata ?? {}) as Record<string, string | null | undefined>;
  const num = (v: string | null | undefined) => (v === undefined || v === null || v === "" ? undefined : Number(v));
  const storedSize = Number(md.size ?? 0);
  const gcsCrc = md.crc32c ? Buffer.from(md.crc32c, "base64").readUInt32BE(0) : 0;
  const updatedAt = Date.parse(String(md.timeCreated ?? md.updated ?? ""));
  const kind = KINDS.includes(m[X.kind] as DataKindName) ? (m[X.kind] as DataKindName) : "BYTES";
  const record: ObjectRecord = {
    key,
    generation: BigInt(md.generation ?? 0),
    kind,
    contentType: m[X.contentType] ?? md.contentType ?? "application/octet-stream",
    metadata: parseJson<JsonObject>(m[X.metadata], {}),
    size: num(m[X.size]) ?? storedSize,
    crc32c: num(m[X.crc32c]) ?? gcsCrc,
    storedSize,
    storedCrc32c: gcsCrc,
    encoding: parseJson<Encoding>(m[X.encoding], {}),
    createdAt: num(m[X.createdAt]) ?? updatedAt,
    updatedAt,
    tier: "gcs",
    pendingReplication: false,
    // An object written by another tool carries no origin: its creation time stands in.
    origin: { writtenAt: num(m[X.writtenAt]) ?? updatedAt * 1000, writer: m[X.writer] ?? "" },
  };
  const expiresAt = num(m[X.expiresAt]);
  if (expiresAt !== undefined) record.expiresAt = expiresAt;
  if (m[X.deleted] === "1") record.deleted = true;
  return record;
}

function parseJson<T>(text: string | null | undefined, fallback: T): T {
  if (!text) return fallback;
  try {
    return JSON.parse(text) as T;
  } catch {
    return fallback;
  }
}
