/**
 * How our records live in GCS objects. Our flags (kind, content type, user
 * metadata, original size and CRC32C, encoding, expiry, creation time, the
 * write's origin, the tombstone flag) are custom metadata (`x-fs-*`), never
 * contentEncoding: gzip, which would make GCS decompress behind our back and
 * break checksums and ranges. Objects written by other tools read as BYTES
 * with GCS's own size, CRC32C and creation time.
 *
 * A record comes from an object resource (a stat, an upload's answer) or from
 * the headers of a media read (x-goog-generation, x-goog-stored-content-length,
 * x-goog-hash, x-goog-meta-*), so a read costs one request.
 *
 * created_at and updated_at are both the time of the write that made this
 * version (x-fs-written-at, by its writer's clock), the same on every copy of
 * it (local, replicated, cached); for an object another tool wrote, GCS's
 * creation time. A write keeps nothing of the version it replaces (it does not
 * look at it: one request per write), so created_at is the version's, not the
 * key's first write.
 */
import type { IncomingHttpHeaders } from "node:http";
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
  writtenAt: "x-fs-written-at",
  writer: "x-fs-writer",
  deleted: "x-fs-deleted",
} as const;

/** Upload parts in flight (composed into their key, then deleted). */
export const UPLOADS_PREFIX = `${RESERVED_PREFIX}uploads/`;
/** Content type of a tombstone object. */
export const TOMBSTONE_TYPE = "application/x-filestorage-tombstone";

/** The custom metadata of a new version. */
export function customMetadata(meta: PutMeta, origin: WriteOrigin): Record<string, string> {
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
  const created = Date.parse(String(md.timeCreated ?? md.updated ?? ""));
  const writtenAt = num(m[X.writtenAt]);
  // The version's time: its write's (see the file comment), else GCS's.
  const at = writtenAt !== undefined ? Math.floor(writtenAt / 1000) : created;
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
    createdAt: at,
    updatedAt: at,
    tier: "gcs",
    pendingReplication: false,
    // An object written by another tool carries no origin: its creation time stands in.
    origin: { writtenAt: writtenAt ?? created * 1000, writer: m[X.writer] ?? "" },
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

const META = "x-goog-meta-";

/**
 * The object resource a media read's headers describe (generation, stored
 * size, CRC32C, content type, custom metadata, Last-Modified for the creation
 * time), or undefined when they cannot be trusted to: a header missing, or a
 * custom metadata value that is not plain UTF-8 (GCS may encode non-ASCII
 * header values in ways an emulator does not; the caller then stats the object).
 */
export function resourceFromHeaders(headers: IncomingHttpHeaders): FileMetadata | undefined {
  const generation = headers["x-goog-generation"];
  const size = headers["x-goog-stored-content-length"];
  if (typeof generation !== "string" || typeof size !== "string") return undefined;
  const metadata: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (!name.startsWith(META) || typeof value !== "string") continue;
    // node:http reads header bytes as latin1: raw UTF-8 becomes its text again.
    const text = Buffer.from(value, "latin1").toString("utf8");
    if (text.includes("\uFFFD") || value.startsWith("=?")) return undefined;
    metadata[name.slice(META.length)] = text;
  }
  if (metadata[X.metadata] !== undefined && parseJson<unknown>(metadata[X.metadata], undefined) === undefined) return undefined;
  // An empty value may travel as no header at all: ours always carry a content type.
  if (metadata[X.kind] !== undefined) metadata[X.contentType] ??= "";
  const crc = /(?:^|,)\s*crc32c=([^,\s]+)/.exec(String(headers["x-goog-hash"] ?? ""))?.[1];
  const modified = Date.parse(String(headers["last-modified"] ?? ""));
  return {
    generation,
    size,
    crc32c: crc,
    contentType: headers["content-type"],
    metadata,
    timeCreated: Number.isNaN(modified) ? undefined : new Date(modified).toISOString(),
  };
}
