/**
 * The client's plain views of the daemon's messages: sizes and counters as
 * numbers (exact up to 8 PiB), generations as bigint (they are compared, not
 * added), times as Date, kinds and backends as names.
 */
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import {
  Backend,
  type GetStatsResponse,
  type ObjectInfo as ObjectInfoMessage,
} from "../../gen/filestorage/v1/file_storage_pb.js";
import { kindName, type DataKindName } from "./value-encoding.js";

/** Where the authoritative copy of an object lives now. */
export type BackendName = "gcs" | "local" | "unspecified";

/** What the daemon knows about one stored object. */
export interface ObjectInfo {
  key: string;
  kind: DataKindName;
  /** Original size in bytes. */
  size: number;
  /** Size at rest, after compression and encryption. */
  storedSize: number;
  contentType: string;
  metadata: Record<string, unknown>;
  /** Rises on every write of the key; pass it as `ifGenerationMatch`. */
  generation: bigint;
  /** CRC32C of the original bytes. */
  crc32c: number;
  compressed: boolean;
  encrypted: boolean;
  backend: BackendName;
  /** True while the only copy is on the local fallback tier. */
  pendingReplication: boolean;
  /**
   * True when this is the daemon's disk-cache copy of a GCS object, served
   * while GCS is unavailable (backend is then "local"): it may be older than
   * GCS's copy if another daemon wrote the key meanwhile.
   */
  cachedCopy: boolean;
  createdAt?: Date;
  updatedAt?: Date;
  expiresAt?: Date;
}

/** Calls of one RPC method. */
export interface OperationCount {
  method: string;
  total: number;
  successful: number;
  failed: number;
}

/** The daemon's state and counters (GetStats). */
export interface StorageStats {
  initialized: boolean;
  gcsAvailable: boolean;
  localFallbackEnabled: boolean;
  cacheEnabled: boolean;
  compressionEnabled: boolean;
  encryptionEnabled: boolean;
  cacheEntries: number;
  cacheBytes: number;
  totalOperations: number;
  successfulOperations: number;
  failedOperations: number;
  cacheHits: number;
  cacheMisses: number;
  compressionSavingsBytes: number;
  pendingReplication: number;
  oldestPendingAgeSeconds: number;
  uptimeSeconds: number;
  version: string;
  operations: OperationCount[];
  /** The disk cache of GCS objects: copies held, their stored bytes, reads answered / not answered from it. */
  diskCacheEntries: number;
  diskCacheBytes: number;
  diskCacheHits: number;
  diskCacheMisses: number;
}

/** What GetUsage counted under a prefix. */
export interface Usage {
  objectCount: number;
  /** Original sizes. */
  totalBytes: number;
  /** Sizes at rest, after compression and encryption. */
  storedBytes: number;
  /** True when the daemon's local index answered (embedded mode), false when it listed the store. */
  fromIndex: boolean;
}

/** The plain view of a wire ObjectInfo. */
export function toObjectInfo(msg: ObjectInfoMessage): ObjectInfo {
  return {
    key: msg.key,
    kind: kindName(msg.kind),
    size: Number(msg.size),
    storedSize: Number(msg.storedSize),
    contentType: msg.contentType,
    metadata: { ...(msg.metadata ?? {}) },
    generation: msg.generation,
    crc32c: msg.crc32c,
    compressed: msg.compressed,
    encrypted: msg.encrypted,
    backend: msg.backend === Backend.GCS ? "gcs" : msg.backend === Backend.LOCAL ? "local" : "unspecified",
    pendingReplication: msg.pendingReplication,
    cachedCopy: msg.cachedCopy,
    createdAt: dateOf(msg.createdAt),
    updatedAt: dateOf(msg.updatedAt),
    expiresAt: dateOf(msg.expiresAt),
  };
}

/** The plain view of a GetStatsResponse. */
export function toStorageStats(msg: GetStatsResponse): StorageStats {
  return {
    initialized: msg.initialized,
    gcsAvailable: msg.gcsAvailable,
    localFallbackEnabled: msg.localFallbackEnabled,
    cacheEnabled: msg.cacheEnabled,
    compressionEnabled: msg.compressionEnabled,
    encryptionEnabled: msg.encryptionEnabled,
    cacheEntries: Number(msg.cacheEntries),
    cacheBytes: Number(msg.cacheBytes),
    totalOperations: Number(msg.totalOperations),
    successfulOperations: Number(msg.successfulOperations),
    failedOperations: Number(msg.failedOperations),
    cacheHits: Number(msg.cacheHits),
    cacheMisses: Number(msg.cacheMisses),
    compressionSavingsBytes: Number(msg.compressionSavingsBytes),
    pendingReplication: Number(msg.pendingReplication),
    oldestPendingAgeSeconds: msg.oldestPendingAgeSeconds,
    uptimeSeconds: msg.uptimeSeconds,
    version: msg.version,
    operations: msg.operations.map((op) => ({
      method: op.method,
      total: Number(op.total),
      successful: Number(op.successful),
      failed: Number(op.failed),
    })),
    diskCacheEntries: Number(msg.diskCacheEntries),
    diskCacheBytes: Number(msg.diskCacheBytes),
    diskCacheHits: Number(msg.diskCacheHits),
    diskCacheMisses: Number(msg.diskCacheMisses),
  };
}

function dateOf(ts: Timestamp | undefined): Date | undefined {
  return ts ? timestampDate(ts) : undefined;
}
