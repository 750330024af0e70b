/** The options of FileStorageClient and of its calls. */
import type * as grpc from "@grpc/grpc-js";
import type { ProgressCallback } from "./store-stream-upload.js";
import type { ObjectInfo } from "./object-info.js";
import type { DataKindName } from "./value-encoding.js";

/** TLS settings; `true` means the system roots and no client certificate. */
export interface TlsOptions {
  rootCerts?: Buffer;
  /** Client key and certificate (PEM), for mutual TLS: give both or neither. */
  privateKey?: Buffer;
  certChain?: Buffer;
  /** The name expected in the server certificate, when it differs from the address. */
  serverNameOverride?: string;
}

export interface FileStorageClientOptions {
  /** Default false (plaintext, for loopback and sidecars). */
  tls?: boolean | TlsOptions;
  /** Sent with every call as `authorization: Bearer <token>`. */
  token?: string;
  /** Deadline of each unary call attempt in ms; default 30000. Streams have none. */
  deadlineMs?: number;
  /** Retries of idempotent calls answered UNAVAILABLE; default 2. */
  retries?: number;
  /** Values larger than this go through the streaming RPCs; default 4 MiB (the daemon's MAX_UNARY_BYTES). */
  maxUnaryBytes?: number;
  /** Extra grpc-js channel options; they win over the client's own. */
  channelOptions?: grpc.ChannelOptions;
}

/** Options of `store`. */
export interface StoreOptions {
  metadata?: Record<string, unknown>;
  contentType?: string;
  /** Write only if the key's generation equals this; 0 = only if the key is absent. */
  ifGenerationMatch?: bigint | number;
  expiresAt?: Date;
  /** Overrides kind inference (see encodeValue). */
  kind?: DataKindName;
  signal?: AbortSignal;
}

/** Options of `upload`. */
export interface UploadOptions extends Omit<StoreOptions, "kind"> {
  /** Default "bytes". */
  kind?: DataKindName;
  /** Called as chunks are sent; totalBytes when the size is known. */
  onProgress?: ProgressCallback;
  /** Declared size, checked by the daemon; taken from the file for a path. */
  size?: number;
  /** Bytes per message; default 1 MiB. */
  chunkSize?: number;
  /**
   * Make the upload resumable: its bytes are kept durably by the daemon under
   * an upload id, and after a dropped connection or a daemon restart the
   * client asks where the upload stands (QueryUpload) and continues from
   * there. Default false: a one-shot stream, which an abandoned upload leaves
   * nothing of. Implied by `uploadId`.
   */
  resumable?: boolean;
  /**
   * The upload id (1..128 of A-Z a-z 0-9 _ -); default a random one. Given
   * explicitly, the client first asks the daemon where that upload stands, so
   * an upload another process (or an earlier run) began is continued: a file
   * is read from the committed size, another source is read up to it.
   */
  uploadId?: string;
  /** Failed attempts in a row without progress before a resumable upload gives up; default 10 (about half a minute of a daemon away). */
  maxResumeAttempts?: number;
  /**
   * For a source that is not a file path: the bytes last sent that are kept
   * to send again after a failure; default 64 MiB. Resuming before them fails
   * with FAILED_PRECONDITION (a file path can resume from anywhere).
   */
  replayWindowBytes?: number;
}

/** Where a resumable upload stands (QueryUpload). */
export interface UploadStatus {
  /** Bytes the daemon holds durably; never decreases. */
  committedSize: number;
  complete: boolean;
  /** The stored object, once complete. */
  object?: ObjectInfo;
  /** When the daemon forgets the upload unless a stream resumes it. */
  expiresAt?: Date;
}

/** Options of `download`. */
export interface DownloadOptions {
  /** First byte to send; past the end is OUT_OF_RANGE. */
  offset?: number;
  /** Bytes to send at most; default to the end. */
  limit?: number;
  /** Fail with FAILED_PRECONDITION unless the object has this generation. */
  ifGenerationMatch?: bigint | number;
  signal?: AbortSignal;
  /** Check size and CRC32C at the end of a whole download (no offset or limit); default true. */
  verifyChecksum?: boolean;
}

/** Options of `downloadToFile`. */
export interface DownloadToFileOptions {
  /** Called as bytes are written; receivedBytes counts a resumed prefix too. */
  onProgress?: (receivedBytes: number, totalBytes: number) => void;
  /** Continue a partial download of the same generation left by an earlier call. */
  resume?: boolean;
  signal?: AbortSignal;
}

export interface ListKeysOptions {
  prefix?: string;
  /** Page size; 0 or absent = the daemon's default (1000), at most 10000. */
  limit?: number;
  pageToken?: string;
  /** Usually "/": keys with it after the prefix are rolled up into `prefixes`. */
  delimiter?: string;
  /** Fill `objects` with one ObjectInfo per key. */
  includeInfo?: boolean;
  /**
   * While the daemon cannot reach GCS, answer with what its local tier knows
   * (writes waiting for replication, disk-cache copies) and set `partial`,
   * instead of failing UNAVAILABLE.
   */
  allowPartial?: boolean;
}

export interface ListKeysPage {
  keys: string[];
  prefixes: string[];
  /** Absent on the last page. */
  nextPageToken?: string;
  /** Parallel to `keys` when includeInfo was set, else empty. */
  objects: ObjectInfo[];
  /** True when the daemon could not reach GCS and answered from its local tier (allowPartial): keys only GCS holds are missing. */
  partial: boolean;
}

/** `value` when it is a safe integer of at least `min`; RangeError naming the option otherwise. */
export function checkInteger(name: string, value: number, min: number): number {
  if (!Number.isSafeInteger(value) || value < min) {
    throw new RangeError(`FileStorageClient option ${name} must be an integer >= ${min}, got ${value}`);
  }
  return value;
}
