/**
 * FileStorageClient: the typed TypeScript client of the FileStorage daemon.
 *
 * Familiar calls (store / retrieve / delete / exists / listKeys / getStats)
 * plus streaming upload and download for files of any size. Values keep their
 * kind: a string comes back a string, a JSON value comes back parsed, bytes
 * come back a Buffer. Misses are values (`null`, `false`); every failure
 * rejects with a FileStorageError carrying the gRPC status code.
 */
import * as fs from "node:fs";
import * as fsp from "node:fs/promises";
import * as path from "node:path";
import { Transform, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import * as grpc from "@grpc/grpc-js";
import { create, type JsonObject } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  DataKind,
  DeleteManyRequestSchema,
  DeleteRequestSchema,
  ExistsRequestSchema,
  FileStorageService,
  GetStatsRequestSchema,
  ListKeysRequestSchema,
  RetrieveRequestSchema,
  RetrieveStreamRequestSchema,
  StatRequestSchema,
  StoreRequestSchema,
  StoreStreamHeaderSchema,
  type StoreStreamRequest,
  type StoreStreamResponse,
} from "../../gen/filestorage/v1/file_storage_pb.js";
import { clientConstructor, type ServiceClient } from "./grpc-binding.js";
import { crc32c } from "./crc32c.js";
import { FileStorageError } from "./file-storage-error.js";
import { toObjectInfo, toStorageStats, type ObjectInfo, type StorageStats } from "./object-info.js";
import { openRetrieveStream, type TailCheck } from "./retrieve-stream-download.js";
import { sendStoreStream, type ProgressCallback } from "./store-stream-upload.js";
import { decodeValue, encodeValue, dataKindOf, type DataKindName } from "./value-encoding.js";

const MiB = 1024 * 1024;

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
}

export interface ListKeysPage {
  keys: string[];
  prefixes: string[];
  /** Absent on the last page. */
  nextPageToken?: string;
  /** Parallel to `keys` when includeInfo was set, else empty. */
  objects: ObjectInfo[];
}

type UnaryMethod<Req, Res> = (
  request: Req,
  md: grpc.Metadata,
  opts: grpc.CallOptions,
  cb: (err: grpc.ServiceError | null, res?: Res) => void,
) => grpc.ClientUnaryCall;

const Stub = clientConstructor(FileStorageService);

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
    this.stub = new Stub(address, credentials, {
      // A unary Retrieve of maxUnaryBytes plus its ObjectInfo and framing must fit.
      "grpc.max_receive_message_length": Math.max(16 * MiB, this.maxUnaryBytes + MiB),
      "grpc.max_send_message_length": Math.max(16 * MiB, this.maxUnaryBytes + MiB),
      // Large HTTP/2 windows let uploads run at memory speed instead of 64 KiB steps.
      "grpc-node.flow_control_window": 16 * MiB,
      ...(tls?.serverNameOverride ? { "grpc.ssl_target_name_override": tls.serverNameOverride } : {}),
      ...opts.channelOptions,
    });
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
    });
    const res = await this.unary(this.stub.listKeys, request, true);
    return {
      keys: res.keys,
      prefixes: res.prefixes,
      nextPageToken: res.nextPageToken || undefined,
      objects: res.objects.map(toObjectInfo),
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
   * Streams `source` (a file path, a Readable, or any async iterable of
   * bytes) into `key` with StoreStream at constant memory: a header, chunks
   * of chunkSize sent as fast as the daemon takes them, and a trailer with the
   * size and CRC32C of everything sent (DATA_LOSS if the daemon got anything
   * else). Kind defaults to bytes. Not retried: a source can be read once.
   */
  async upload(
    key: string,
    source: string | NodeJS.ReadableStream | AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
    opts: UploadOptions = {},
  ): Promise<ObjectInfo> {
    return this.storeStream(key, source, opts, dataKindOf(opts.kind ?? "bytes"));
  }

  // upload() with the kind already decided (store() passes the one it inferred).
  private async storeStream(
    key: string,
    source: string | NodeJS.ReadableStream | AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
    opts: UploadOptions,
    kind: DataKind,
  ): Promise<ObjectInfo> {
    const chunkSize = checkInteger("chunkSize", opts.chunkSize ?? MiB, 1);
    let size = opts.size;
    let input: AsyncIterable<Uint8Array | string> | Iterable<Uint8Array>;
    if (typeof source === "string") {
      size ??= (await fsp.stat(source)).size;
      // Reading in pieces of chunkSize (not the 64 KiB default) halves the syscalls.
      input = fs.createReadStream(source, { highWaterMark: chunkSize });
    } else {
      input = source as AsyncIterable<Uint8Array | string>;
    }
    const header = create(StoreStreamHeaderSchema, {
      key,
      kind,
      contentType: opts.contentType ?? "",
      metadata: toStruct(opts.metadata),
      size: size === undefined ? undefined : BigInt(size),
      ifGenerationMatch: optionalBigInt(opts.ifGenerationMatch),
      expiresAt: opts.expiresAt && timestampFromDate(opts.expiresAt),
    });

    const signal = opts.signal;
    signal?.throwIfAborted();
    let call!: grpc.ClientWritableStream<StoreStreamRequest>;
    const response = new Promise<StoreStreamResponse>((resolve, reject) => {
      call = this.stub.storeStream(this.metadata.clone(), {}, (err, res) => (err ? reject(err) : resolve(res!)));
    });
    const onAbort = (): void => call.cancel();
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      const res = await sendStoreStream(call, response, header, toAsync(input), {
        chunkSize,
        totalBytes: size,
        onProgress: opts.onProgress,
      });
      return toObjectInfo(required(res.object));
    } catch (err) {
      throw signal?.aborted ? signal.reason : FileStorageError.from(err);
    } finally {
      signal?.removeEventListener("abort", onAbort);
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
   * the object still has that generation (otherwise it starts over).
   * Resolves with the ObjectInfo; NOT_FOUND rejects.
   */
  async downloadToFile(key: string, filePath: string, opts: DownloadToFileOptions = {}): Promise<ObjectInfo> {
    let check: TailCheck = { offset: 0, initialCrc: 0 };
    let generation: bigint | undefined;
    if (opts.resume) {
      const current = await this.stat(key);
      if (!current) throw new FileStorageError(grpc.status.NOT_FOUND, `no object under key "${key}"`);
      const partial = partialPath(filePath, current.generation);
      const have = await fsp.stat(partial).catch(() => undefined);
      if (have && have.size <= current.size) {
        check = { offset: have.size, initialCrc: await crcOfFile(partial) };
        generation = current.generation;
      }
      if (have && have.size === current.size) {
        // Already whole (an earlier call stopped before the rename): check, then rename.
        if (check.initialCrc !== current.crc32c) {
          await fsp.rm(partial, { force: true });
          throw new FileStorageError(grpc.status.DATA_LOSS, `partial download of "${key}" does not match the object`);
        }
        opts.onProgress?.(current.size, current.size);
        await finishPartial(partial, filePath);
        return current;
      }
    }

    const signal = opts.signal;
    const opened = await this.openDownload(key, { offset: check.offset, ifGenerationMatch: generation, signal }, check);
    const info = toObjectInfo(opened.info);
    const partial = partialPath(filePath, info.generation);
    let received = check.offset;
    const progress = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        received += chunk.length;
        opts.onProgress?.(received, info.size);
        done(null, chunk);
      },
    });
    // Pieces of 1 MiB or more keep the disk write rate near its best.
    const out = fs.createWriteStream(partial, { flags: check.offset > 0 ? "a" : "w", highWaterMark: MiB });
    try {
      await pipeline(opened.stream, progress, out, signal ? { signal } : {});
    } catch (err) {
      throw signal?.aborted ? signal.reason : FileStorageError.is(err) ? err : FileStorageError.from(err);
    }
    await finishPartial(partial, filePath);
    return info;
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

  /**
   * One unary call with the client's deadline and token; idempotent calls are
   * retried on UNAVAILABLE with exponential backoff and jitter. Rejects with
   * a FileStorageError, or with `signal.reason` when aborted.
   */
  private async unary<Req, Res>(
    method: UnaryMethod<Req, Res>,
    request: Req,
    idempotent: boolean,
    signal?: AbortSignal,
  ): Promise<Res> {
    for (let attempt = 0; ; attempt++) {
      signal?.throwIfAborted();
      try {
        return await new Promise<Res>((resolve, reject) => {
          const options = { deadline: Date.now() + this.deadlineMs };
          const call = method.call(this.stub, request, this.metadata.clone(), options, (err, res) => {
            signal?.removeEventListener("abort", onAbort);
            if (err) reject(err);
            else resolve(res as Res);
          });
          const onAbort = (): void => call.cancel();
          signal?.addEventListener("abort", onAbort, { once: true });
        });
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        const failure = FileStorageError.from(err);
        if (!idempotent || failure.code !== grpc.status.UNAVAILABLE || attempt >= this.retries) throw failure;
        await sleep(backoffMs(attempt));
      }
    }
  }
}

function backoffMs(attempt: number): number {
  const ceiling = Math.min(2000, 100 * 2 ** attempt);
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function checkInteger(name: string, value: number, min: number): number {
  if (!Number.isSafeInteger(value) || value < min) {
    throw new RangeError(`FileStorageClient option ${name} must be an integer >= ${min}, got ${value}`);
  }
  return value;
}

function optionalBigInt(value: bigint | number | undefined): bigint | undefined {
  return value === undefined ? undefined : BigInt(value);
}

// Struct values must be JSON; a JSON round trip drops undefined members the
// way JSON.stringify callers expect, and rejects what JSON cannot hold.
function toStruct(metadata: Record<string, unknown> | undefined): JsonObject | undefined {
  if (metadata === undefined) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(JSON.stringify(metadata)) as unknown;
  } catch (err) {
    throw new FileStorageError(grpc.status.INVALID_ARGUMENT, `metadata must be JSON: ${(err as Error).message}`);
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    throw new FileStorageError(grpc.status.INVALID_ARGUMENT, "metadata must be a plain object");
  }
  return json as JsonObject;
}

function required<T>(value: T | undefined): T {
  if (value === undefined) throw new FileStorageError(grpc.status.INTERNAL, "the daemon answered without an ObjectInfo");
  return value;
}

async function* toAsync(input: AsyncIterable<Uint8Array | string> | Iterable<Uint8Array>): AsyncGenerator<Uint8Array | string> {
  yield* input;
}

// The partial file takes the final name, and partial files of other
// generations (left by failed downloads) go.
async function finishPartial(partial: string, filePath: string): Promise<void> {
  await fsp.rename(partial, filePath);
  await removeStalePartials(filePath);
}

function partialPath(filePath: string, generation: bigint): string {
  return `${filePath}.g${generation}.partial`;
}

async function removeStalePartials(filePath: string): Promise<void> {
  const dir = path.dirname(filePath);
  const prefix = `${path.basename(filePath)}.g`;
  const names = await fsp.readdir(dir).catch(() => [] as string[]);
  await Promise.all(
    names
      .filter((name) => name.startsWith(prefix) && /^\d+\.partial$/.test(name.slice(prefix.length)))
      .map((name) => fsp.rm(path.join(dir, name), { force: true })),
  );
}

async function crcOfFile(file: string): Promise<number> {
  let crc = 0;
  for await (const chunk of fs.createReadStream(file, { highWaterMark: MiB }) as AsyncIterable<Buffer>) {
    crc = crc32c(chunk, crc);
  }
  return crc;
}
