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

/** Checks a metadata Struct: JSON-serialisable and at most 64 KiB encoded. */
export function checkMetadata(metadata: JsonObject | undefined, maxBytes = 64 * 1024): JsonObject {
  if (!metadata) return {};
  const size = Buffer.byteLength(JSON.stringify(metadata));
  if (size > maxBytes) throw invalidArgument(`metadata is ${size} bytes as JSON; the limit is ${maxBytes}`);
  return metadata;
}
