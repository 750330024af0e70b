/**
 * FileStorageClient: the typed TypeScript client of the FileStorage daemon.
 *
 * Familiar calls (store / retrieve / delete / exists / listKeys / getStats)
 * plus streaming upload and download for files of any size. Values keep their
 * kind: a string comes back a string, a JSON value comes back parsed, bytes
 * come back a Buffer. Misses are values (`null`, `false`); every failure
 * rejects with a FileStorageError carrying the gRPC status code.
 */
import type { Readable } from "node:stream";
import * as grpc from "@grpc/grpc-js";
import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  DataKind,
  DeleteManyRequestSchema,
  DeleteRequestSchema,
  ExistsRequestSchema,
  FileStorageService,
  FlushRequestSchema,
  GetStatsRequestSchema,
  GetUsageRequestSchema,
  ListKeysRequestSchema,
  QueryUploadRequestSchema,
  RetrieveRequestSchema,
  RetrieveStreamRequestSchema,
  StatRequestSchema,
  StoreRequestSchema,
  type QueryUploadResponse,
  VerifyRequestSchema,
  type StoreStreamRequest,
  type StoreStreamResponse,
} from "../../gen/filestorage/v1/file_storage_pb.js";
import { channelOptions } from "./channel-options.js";
import {
  checkInteger,
  type DownloadOptions,
  type DownloadToFileOptions,
  type FileStorageClientOptions,
  type ListKeysOptions,
  type ListKeysPage,
  type StoreOptions,
  type UploadOptions,
  type UploadStatus,
} from "./client-options.js";
import { downloadToFile } from "./download-to-file.js";
import { chunkFastPath, clientConstructor, type ServiceClient } from "./grpc-binding.js";
import { FileStorageError } from "./file-storage-error.js";
import { readFlush, type FlushOptions, type FlushProgress } from "./flush-call.js";
import { toObjectInfo, toStorageStats, type ObjectInfo, type StorageStats, type Usage } from "./object-info.js";
import { openRetrieveStream, type TailCheck } from "./retrieve-stream-download.js";
import { optionalBigInt, required, toStruct } from "./request-fields.js";
import { callUnary, type UnaryMethod } from "./unary-call.js";
import { uploadObject, type UploadSource } from "./upload-object.js";
import { decodeValue, encodeValue, dataKindOf } from "./value-encoding.js";
import { verifyEvents, type VerifyEvent } from "./verify-events.js";

export type {
  DownloadOptions,
  DownloadToFileOptions,
  FileStorageClientOptions,
  ListKeysOptions,
  ListKeysPage,
  StoreOptions,
  TlsOptions,
  UploadOptions,
  UploadStatus,
} from "./client-options.js";

export { newUploadId } from "./upload-object.js";

const MiB = 1024 * 1024;

// StoreStream's data chunks are encoded without protobuf-es's general writer (see chunkFastPath).
const Stub = clientConstructor(FileStorageService, { storeStream: { request: chunkFastPath(2, "payload", "chunk") } });

/** A client of one FileStorage daemon. Cheap to keep, one channel; call close() when done. */
export class FileStorageClient {
  private readonly stub: ServiceClient<typeof FileStorageService.method>;
  private readonly metadata = new grpc.Metadata();
  private readonly deadlineMs: number;
  private readonly retries: number;
  private readonly maxUnaryBytes: number;

  /** `address` is a gRPC target such as "127.0.0.1:50051". Throws RangeError for a bad option. */
  constructor(address: string, opts: FileStorageClientOptions = {}) {
    this.deadlineMs = checkInteger("deadlineMs", opts.deadlineMs ?? 30_000, 1);
    this.retries = checkInteger("retries", opts.retries ?? 2, 0);
    this.maxUnaryBytes = checkInteger("maxUnaryBytes", opts.maxUnaryBytes ?? 4 * MiB, 1);
    if (opts.token !== undefined) this.metadata.set("authorization", `Bearer ${opts.token}`);
    const tls = opts.tls === true ? {} : opts.tls || undefined;
    if (tls && (tls.privateKey === undefined) !== (tls.certChain === undefined)) {
      throw new RangeError("FileStorageClient option tls: privateKey and certChain go together (mutual TLS)");
    }
    const credentials = tls
      ? grpc.credentials.createSsl(tls.rootCerts ?? null, tls.privateKey ?? null, tls.certChain ?? null)
      : grpc.credentials.createInsecure();
    this.stub = new Stub(address, credentials, channelOptions({ ...opts, maxUnaryBytes: this.maxUnaryBytes, tls }));
  }

  /**
   * Stores `data` under `key` and returns the new ObjectInfo. The kind is
   * inferred (string -> text, Uint8Array/Buffer -> bytes, other JSON values ->
   * json) unless `opts.kind` says otherwise. Data over maxUnaryBytes goes
   * through StoreStream. FAILED_PRECONDITION when ifGenerationMatch fails.
   */
  async store(key: string, data: unknown, opts: StoreOptions = {}): Promise<ObjectInfo> {
    const { bytes, kind } = encodeValue(data, opts.kind);
    if (bytes.length > this.maxUnaryBytes) {
      return this.storeStream(key, [bytes], { ...opts, kind: undefined, size: bytes.length }, kind);
    }
    const request = create(StoreRequestSchema, {
      key,
      data: bytes,
      kind,
      contentType: opts.contentType ?? "",
      metadata: toStruct(opts.metadata),
      ifGenerationMatch: optionalBigInt(opts.ifGenerationMatch),
      expiresAt: opts.expiresAt && timestampFromDate(opts.expiresAt),
    });
    const res = await this.unary(this.stub.store, request, false, opts.signal);
    return toObjectInfo(required(res.object));
  }

  /**
   * The value stored under `key`, decoded by its kind (text -> string,
   * json -> parsed value, bytes -> Buffer), or null when there is none.
   * Objects over the daemon's unary limit arrive through RetrieveStream.
   */
  async retrieve<T = unknown>(key: string, opts: { signal?: AbortSignal } = {}): Promise<T | null> {
    const found = await this.retrieveWithInfo<T>(key, opts);
    return found ? found.data : null;
  }

  /** Like retrieve, with the object's ObjectInfo; null when there is none. */
  async retrieveWithInfo<T = unknown>(
    key: string,
    opts: { signal?: AbortSignal } = {},
  ): Promise<{ info: ObjectInfo; data: T } | null> {
    const request = create(RetrieveRequestSchema, { key });
    try {
      const res = await this.unary(this.stub.retrieve, request, true, opts.signal);
      const info = required(res.object);
      return { info: toObjectInfo(info), data: decodeValue(res.data, info.kind) as T };
    } catch (err) {
      if (FileStorageError.is(err, grpc.status.NOT_FOUND)) return null;
      // Retrieve has no precondition of its own: this is the unary limit.
      if (!FileStorageError.is(err, grpc.status.FAILED_PRECONDITION)) throw err;
    }
    try {
      const { info, stream } = await this.openDownload(key, { signal: opts.signal }, { offset: 0, initialCrc: 0 });
      const whole = Buffer.allocUnsafe(Number(info.size));
      let at = 0;
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        // The size check at the end of the stream reports the mismatch.
        if (at + chunk.length <= whole.length) chunk.copy(whole, at);
        at += chunk.length;
      }
      return { info: toObjectInfo(info), data: decodeValue(whole, info.kind) as T };
    } catch (err) {
      if (FileStorageError.is(err, grpc.status.NOT_FOUND)) return null;
      throw err;
    }
  }

  /** The ObjectInfo of `key` without its data, or null when there is none. */
  async stat(key: string): Promise<ObjectInfo | null> {
    const request = create(StatRequestSchema, { key });
    try {
      const res = await this.unary(this.stub.stat, request, true);
      return toObjectInfo(required(res.object));
    } catch (err) {
      if (FileStorageError.is(err, grpc.status.NOT_FOUND)) return null;
      throw err;
    }
  }

  /** Whether `key` holds a live object. */
  async exists(key: string): Promise<boolean> {
    const request = create(ExistsRequestSchema, { key });
    const res = await this.unary(this.stub.exists, request, true);
    return res.exists;
  }

  /**
   * Deletes `key`; false when it did not exist. With ifGenerationMatch the
   * delete is conditional (FAILED_PRECONDITION on mismatch) and retried on
   * UNAVAILABLE, since repeating it cannot delete a newer write.
   */
  async delete(key: string, opts: { ifGenerationMatch?: bigint | number } = {}): Promise<boolean> {
    const ifGenerationMatch = optionalBigInt(opts.ifGenerationMatch);
    const request = create(DeleteRequestSchema, { key, ifGenerationMatch });
    const res = await this.unary(this.stub.delete, request, ifGenerationMatch !== undefined);
    return res.deleted;
  }

  /** Deletes the listed keys and/or every key under a non-empty prefix; returns how many were deleted. */
  async deleteMany(opts: { keys?: string[]; prefix?: string }): Promise<number> {
    const request = create(DeleteManyRequestSchema, { keys: opts.keys ?? [], prefix: opts.prefix ?? "" });
    const res = await this.unary(this.stub.deleteMany, request, false);
    return Number(res.deletedCount);
  }

  /** One page of keys in byte order. Pass nextPageToken back as pageToken for the next. */
  async listKeys(opts: ListKeysOptions = {}): Promise<ListKeysPage> {
    const request = create(ListKeysRequestSchema, {
      prefix: opts.prefix ?? "",
      limit: opts.limit ?? 0,
      pageToken: opts.pageToken ?? "",
      delimiter: opts.delimiter ?? "",
      includeInfo: opts.includeInfo ?? false,
      allowPartial: opts.allowPartial ?? false,
    });
    const res = await this.unary(this.stub.listKeys, request, true);
    return {
      keys: res.keys,
      prefixes: res.prefixes,
      nextPageToken: res.nextPageToken || undefined,
      objects: res.objects.map(toObjectInfo),
      partial: res.partial,
    };
  }

  /**
   * Every key under `prefix`, in order, fetching pages of `pageSize` as it
   * goes. With a delimiter, rolled-up prefixes are skipped (listKeys has them).
   */
  async *iterateKeys(opts: { prefix?: string; delimiter?: string; pageSize?: number } = {}): AsyncGenerator<string> {
    let pageToken: string | undefined;
    do {
      const page = await this.listKeys({ prefix: opts.prefix, delimiter: opts.delimiter, limit: opts.pageSize, pageToken });
      yield* page.keys;
      pageToken = page.nextPageToken;
    } while (pageToken);
  }

  /** The daemon's state and counters. */
  async getStats(): Promise<StorageStats> {
    const request = create(GetStatsRequestSchema, {});
    const res = await this.unary(this.stub.getStats, request, true);
    return toStorageStats(res);
  }

  /**
   * The live objects under `prefix` (every key when empty) and their bytes
   * (GetUsage, admin). The daemon counts them in pages of `pageSize` objects,
   * one call each, and `onProgress` hears the running total after each; in
   * the embedded mode its index answers in one call. Calls are retried.
   */
  async getUsage(prefix = "", opts: { pageSize?: number; onProgress?: (soFar: Usage) => void; signal?: AbortSignal } = {}): Promise<Usage> {
    const total: Usage = { objectCount: 0, totalBytes: 0, storedBytes: 0, fromIndex: false };
    let pageToken = "";
    do {
      opts.signal?.throwIfAborted();
      const request = create(GetUsageRequestSchema, { prefix, pageToken, maxObjects: checkInteger("pageSize", opts.pageSize ?? 10_000, 1) });
      const res = await this.unary(this.stub.getUsage, request, true);
      total.objectCount += Number(res.objectCount);
      total.totalBytes += Number(res.totalBytes);
      total.storedBytes += Number(res.storedBytes);
      total.fromIndex = res.fromIndex;
      pageToken = res.nextPageToken;
      opts.onProgress?.({ ...total });
    } while (pageToken !== "");
    return total;
  }

  /**
   * Drains the daemon's replication backlog into GCS now and resolves once it
   * is empty, with the last report (admin right). Rejects UNAVAILABLE when GCS
   * cannot be reached, DEADLINE_EXCEEDED after `timeoutSeconds`,
   * FAILED_PRECONDITION when the daemon has no GCS tier. No client deadline
   * of its own beyond `timeoutSeconds` (plus 30 s); never retried.
   */
  async flush(opts: FlushOptions = {}): Promise<FlushProgress> {
    opts.signal?.throwIfAborted();
    const request = create(FlushRequestSchema, { timeoutSeconds: opts.timeoutSeconds });
    const callOptions = opts.timeoutSeconds ? { deadline: Date.now() + (opts.timeoutSeconds + 30) * 1000 } : {};
    return readFlush(this.stub.flush(request, this.metadata.clone(), callOptions), opts);
  }

  /**
   * Runs the daemon's Verify (admin right): re-reads its stored copies under
   * `prefix` (the local tier, the disk cache, and GCS with includeGcs) and
   * checks their size and CRC32C, repairing what it can with `repair`.
   * Yields progress now and then, one finding per bad or orphaned copy, and
   * the summary last. No deadline (it can take long); stop iterating or
   * abort `signal` to cancel it.
   */
  verify(opts: { prefix?: string; includeGcs?: boolean; repair?: boolean; signal?: AbortSignal } = {}): AsyncGenerator<VerifyEvent> {
    const request = create(VerifyRequestSchema, { prefix: opts.prefix ?? "", includeGcs: opts.includeGcs ?? false, repair: opts.repair ?? false });
    return verifyEvents(this.stub.verify(request, this.metadata.clone(), {}), opts.signal);
  }

  /**
   * Streams `source` (a file path, a Readable, or any async iterable of
   * bytes) into `key` with StoreStream at constant memory: a header, chunks
   * of chunkSize sent as fast as the daemon takes them, and a trailer with the
   * size and CRC32C of everything sent (DATA_LOSS if the daemon got anything
   * else). Kind defaults to bytes.
   *
   * One-shot by default (not retried: a source can be read once). With
   * `resumable` or `uploadId` the daemon keeps the bytes durably under the
   * upload id and the client resumes by itself after a dropped connection or
   * a daemon restart (see UploadOptions), with onProgress continuing from
   * what the daemon holds.
   */
  async upload(
    key: string,
    source: UploadSource,
    opts: UploadOptions = {},
  ): Promise<ObjectInfo> {
    return this.storeStream(key, source, opts, dataKindOf(opts.kind ?? "bytes"));
  }

  /**
   * Where the resumable upload `uploadId` stands: the bytes the daemon holds
   * durably, and its object once complete; null when the daemon does not
   * know the id (never begun, or expired). Ids are per caller (per token).
   */
  async queryUpload(uploadId: string, opts: { signal?: AbortSignal } = {}): Promise<UploadStatus | null> {
    const res = await this.queryUploadRaw(uploadId, opts.signal, this.retries);
    if (!res) return null;
    return {
      committedSize: Number(res.committedSize),
      complete: res.complete,
      object: res.object && toObjectInfo(res.object),
      expiresAt: res.expiresAt && timestampDate(res.expiresAt),
    };
  }

  private async queryUploadRaw(uploadId: string, signal: AbortSignal | undefined, retries: number): Promise<QueryUploadResponse | null> {
    const request = create(QueryUploadRequestSchema, { uploadId });
    try {
      return await callUnary(this.stub, this.stub.queryUpload, request, { deadlineMs: this.deadlineMs, retries, metadata: this.metadata, idempotent: true, signal });
    } catch (err) {
      if (FileStorageError.is(err, grpc.status.NOT_FOUND)) return null;
      throw err;
    }
  }

  /**
   * Opens a RetrieveStream: resolves with the ObjectInfo once the daemon
   * answers and a byte stream of the data (from offset, up to limit), which
   * pulls only as fast as it is read; destroying it cancels the call. A whole
   * download is checked against the object's size and CRC32C at the end (the
   * stream errors with DATA_LOSS). Rejects NOT_FOUND, OUT_OF_RANGE,
   * FAILED_PRECONDITION (generation) as FileStorageError.
   */
  async download(key: string, opts: DownloadOptions = {}): Promise<{ info: ObjectInfo; stream: Readable }> {
    const whole = !opts.offset && !opts.limit && opts.verifyChecksum !== false;
    const { info, stream } = await this.openDownload(key, opts, whole ? { offset: 0, initialCrc: 0 } : undefined);
    return { info: toObjectInfo(info), stream };
  }

  /**
   * Downloads `key` into the file at `filePath`, atomically: bytes go to
   * "<filePath>.g<generation>.partial", are checked against the object's
   * size and CRC32C, then renamed over `filePath`. A failed download leaves
   * the partial file; `resume: true` continues it from its size, provided
   * the object still has that generation and the partial file matches it
   * (otherwise it starts over).
   * Resolves with the ObjectInfo; NOT_FOUND rejects.
   */
  async downloadToFile(key: string, filePath: string, opts: DownloadToFileOptions = {}): Promise<ObjectInfo> {
    return downloadToFile({ stat: (k) => this.stat(k), openDownload: (k, o, check) => this.openDownload(k, o, check) }, key, filePath, opts);
  }

  // upload() with the kind already decided (store() passes the one it inferred).
  private storeStream(key: string, source: UploadSource, opts: UploadOptions, kind: DataKind): Promise<ObjectInfo> {
    return uploadObject(
      {
        openStoreStream: () => this.openStoreStream(),
        queryUpload: (id, signal, retries) => this.queryUploadRaw(id, signal, retries),
      },
      key,
      source,
      opts,
      kind,
    );
  }

  /** One StoreStream call with the client's token; its answer as a promise. */
  private openStoreStream(): { call: grpc.ClientWritableStream<StoreStreamRequest>; response: Promise<StoreStreamResponse> } {
    let call!: grpc.ClientWritableStream<StoreStreamRequest>;
    const response = new Promise<StoreStreamResponse>((resolve, reject) => {
      call = this.stub.storeStream(this.metadata.clone(), {}, (err, res) => (err ? reject(err) : resolve(res!)));
    });
    return { call, response };
  }

  /** Closes the channel; calls in flight fail with CANCELLED or UNAVAILABLE. */
  close(): void {
    this.stub.close();
  }

  private openDownload(key: string, opts: DownloadOptions, check: TailCheck | undefined) {
    const request = create(RetrieveStreamRequestSchema, {
      key,
      offset: BigInt(opts.offset ?? 0),
      limit: BigInt(opts.limit ?? 0),
      ifGenerationMatch: optionalBigInt(opts.ifGenerationMatch),
    });
    const call = this.stub.retrieveStream(request, this.metadata.clone(), {});
    return openRetrieveStream(call, { check, signal: opts.signal });
  }

  /** One unary call under the client's deadline, token and retry policy (unary-call.ts). */
  private unary<Req, Res>(method: UnaryMethod<Req, Res>, request: Req, idempotent: boolean, signal?: AbortSignal): Promise<Res> {
    return callUnary(this.stub, method, request, { deadlineMs: this.deadlineMs, retries: this.retries, metadata: this.metadata, idempotent, signal });
  }
}
