/** Conversions between the storage layers' records and the wire messages. */
import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import {
  Backend as WireBackend,
  DataKind,
  ObjectInfoSchema,
  type ObjectInfo,
} from "../../gen/filestorage/v1/file_storage_pb.js";
import type { DataKindName, JsonObject, ObjectRecord } from "../backends/backend.js";
import { invalidArgument } from "../storage-error.js";

const kindValue: Record<DataKindName, DataKind> = {
  BYTES: DataKind.BYTES,
  TEXT: DataKind.TEXT,
  JSON: DataKind.JSON,
};

export function toObjectInfo(r: ObjectRecord): ObjectInfo {
  return create(ObjectInfoSchema, {
    key: r.key,
    kind: kindValue[r.kind],
    size: BigInt(r.size),
    storedSize: BigInt(r.storedSize),
    contentType: r.contentType,
    metadata: r.metadata,
    generation: r.generation,
    crc32c: r.crc32c >>> 0,
    compressed: r.encoding.compression !== undefined,
    encrypted: r.encoding.encryption !== undefined,
    backend: r.tier === "gcs" ? WireBackend.GCS : WireBackend.LOCAL,
    pendingReplication: r.pendingReplication,
    createdAt: timestampFromMs(r.createdAt),
    updatedAt: timestampFromMs(r.updatedAt),
    expiresAt: r.expiresAt === undefined ? undefined : timestampFromMs(r.expiresAt),
    cachedCopy: r.cachedCopy === true,
  });
}

export function kindName(kind: DataKind): DataKindName {
  switch (kind) {
    case DataKind.UNSPECIFIED:
    case DataKind.BYTES:
      return "BYTES";
    case DataKind.TEXT:
      return "TEXT";
    case DataKind.JSON:
      return "JSON";
    default:
      throw invalidArgument(`kind ${kind as number} is not a DataKind (BYTES=1, TEXT=2, JSON=3)`);
  }
}

/** Unix ms of an optional expiry; INVALID_ARGUMENT when it is already past. */
export function expiryMs(ts: Timestamp | undefined, now = Date.now()): number | undefined {
  if (!ts) return undefined;
  const ms = timestampDate(ts).getTime();
  if (!Number.isFinite(ms)) throw invalidArgument("expires_at is not a valid timestamp");
  if (ms <= now) throw invalidArgument("expires_at must be in the future");
  return ms;
}

/**
 * GCS keeps at most 8 KiB of custom metadata per object. The daemon stores the
 * caller's metadata as JSON in one value (`x-fs-metadata`) beside about ten
 * fields of its own, so it reserves 1 KiB of the 8 for those. The same limit
 * holds on every tier, so a write accepted by the local tier during an outage
 * can always be replicated.
 */
export const MAX_METADATA_JSON_BYTES = 7 * 1024;
/** Nesting levels of metadata; the metadata object itself is level 1. */
export const MAX_METADATA_DEPTH = 16;
/** content_type travels as an HTTP header value to GCS. */
export const MAX_CONTENT_TYPE_BYTES = 256;

/**
 * Checks a metadata Struct: at most MAX_METADATA_DEPTH levels, finite numbers
 * only (JSON has no NaN or Infinity: they would be stored as null), and at
 * most MAX_METADATA_JSON_BYTES as JSON. Returns it ({} when absent).
 */
export function checkMetadata(metadata: JsonObject | undefined): JsonObject {
  if (!metadata) return {};
  // Iterative, so a hostile nesting cannot exhaust the stack here.
  const pending: { value: unknown; depth: number }[] = [{ value: metadata, depth: 1 }];
  for (let item = pending.pop(); item; item = pending.pop()) {
    const { value, depth } = item;
    if (typeof value === "number" && !Number.isFinite(value)) {
      throw invalidArgument(`metadata numbers must be finite; found ${value}`);
    }
    if (value === null || typeof value !== "object") continue;
    if (depth > MAX_METADATA_DEPTH) {
      throw invalidArgument(`metadata is nested more than ${MAX_METADATA_DEPTH} levels deep (the metadata object is level 1)`);
    }
    for (const child of Object.values(value)) pending.push({ value: child, depth: depth + 1 });
  }
  const size = Buffer.byteLength(JSON.stringify(metadata));
  if (size > MAX_METADATA_JSON_BYTES) {
    throw invalidArgument(
      `metadata is ${size} bytes as JSON; the limit is ${MAX_METADATA_JSON_BYTES} ` +
        "(GCS keeps at most 8 KiB of custom metadata per object; the daemon reserves 1 KiB of it for its own fields)",
    );
  }
  return metadata;
}

/**
 * Checks content_type as the HTTP header value it becomes on GCS: at most
 * MAX_CONTENT_TYPE_BYTES bytes of printable ASCII (0x20-0x7E; no CR, LF, tab
 * or other control character, no non-ASCII). Empty is allowed. Returns it.
 */
export function checkContentType(contentType: string): string {
  const bytes = Buffer.byteLength(contentType, "utf8");
  if (bytes > MAX_CONTENT_TYPE_BYTES) {
    throw invalidArgument(`content_type is ${bytes} bytes; the limit is ${MAX_CONTENT_TYPE_BYTES}`);
  }
  const bad = /[^\x20-\x7E]/.exec(contentType);
  if (bad) {
    const code = bad[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0");
    throw invalidArgument(
      `content_type must be printable ASCII (0x20-0x7E), as an HTTP header value; found U+${code} at character ${bad.index}`,
    );
  }
  return contentType;
}
