/**
 * @filestorage/client: the typed TypeScript client of the FileStorage daemon.
 * Depends on @grpc/grpc-js and @bufbuild/protobuf only.
 */
export {
  FileStorageClient,
  newUploadId,
  type UploadStatus,
  type FileStorageClientOptions,
  type TlsOptions,
  type StoreOptions,
  type UploadOptions,
  type DownloadOptions,
  type DownloadToFileOptions,
  type ListKeysOptions,
  type ListKeysPage,
} from "./file-storage-client.js";
export type { FlushOptions, FlushProgress } from "./flush-call.js";
export { channelOptions } from "./channel-options.js";
export { FileStorageError, codeName } from "./file-storage-error.js";
export type { ObjectInfo, StorageStats, OperationCount, BackendName, Usage } from "./object-info.js";
export type { VerifyEvent, VerifyFindingEvent, VerifyProgressEvent, VerifySummaryEvent, VerifyTierName, VerifyProblemName } from "./verify-events.js";
export type { ProgressCallback } from "./store-stream-upload.js";
export { encodeValue, decodeValue, type DataKindName } from "./value-encoding.js";
export { crc32c, crc32cJs } from "./crc32c.js";
export { status } from "@grpc/grpc-js";
