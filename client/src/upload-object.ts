/**
 * The client's uploads: one StoreStream of a source, or, with an upload id
 * (UploadOptions.resumable / uploadId), StoreStreams under that id until one
 * completes (resumable-upload.ts), reading a file again from the committed
 * offset or replaying a stream from a bounded window.
 */
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as fsp from "node:fs/promises";
import type * as grpc from "@grpc/grpc-js";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  StoreStreamHeaderSchema,
  type DataKind,
  type QueryUploadResponse,
  type StoreStreamHeader,
  type StoreStreamRequest,
  type StoreStreamResponse,
} from "../../gen/filestorage/v1/file_storage_pb.js";
import { checkInteger, type UploadOptions } from "./client-options.js";
import { FileStorageError } from "./file-storage-error.js";
import { toObjectInfo, type ObjectInfo } from "./object-info.js";
import { optionalBigInt, required, toStruct } from "./request-fields.js";
import { fileSource, replaySource } from "./resumable-source.js";
import { uploadResumably } from "./resumable-upload.js";
import { sendStoreStream } from "./store-stream-upload.js";

const MiB = 1024 * 1024;
const DEFAULT_RESUME_ATTEMPTS = 10;
const DEFAULT_REPLAY_WINDOW_BYTES = 64 * MiB;

/** What upload() accepts: a file path, a Node stream, or (async) iterable bytes. */
export type UploadSource = string | NodeJS.ReadableStream | AsyncIterable<Uint8Array> | Iterable<Uint8Array>;

/** The calls an upload makes, bound to one client's channel and token. */
export interface UploadPort {
  openStoreStream(): { call: grpc.ClientWritableStream<StoreStreamRequest>; response: Promise<StoreStreamResponse> };
  /** QueryUpload with `retries` of its own; null for an id the daemon does not know. */
  queryUpload(uploadId: string, signal: AbortSignal | undefined, retries: number): Promise<QueryUploadResponse | null>;
}

/** A random upload id: 22 characters of base64url (128 bits). */
export function newUploadId(): string {
  return randomBytes(16).toString("base64url");
}

/** upload() with the kind already decided (store() passes the one it inferred). */
export async function uploadObject(
port: UploadPort,
  key: string,
  source: UploadSource,
  opts: UploadOptions,
  kind: DataKind,
): Promise<ObjectInfo> {
  const chunkSize = checkInteger("chunkSize", opts.chunkSize ?? MiB, 1);
  const size = opts.size ?? (typeof source === "string" ? (await fsp.stat(source)).size : undefined);
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
  try {
    const info =
      opts.resumable || opts.uploadId !== undefined
        ? await resumableUpload(port, header, source, opts, chunkSize, size)
        : await oneShotUpload(port, header, source, opts, chunkSize, size);
    return toObjectInfo(info);
  } catch (err) {
    throw signal?.aborted ? signal.reason : FileStorageError.from(err);
  }
}

/** One StoreStream: the bytes of `source` once. */
async function oneShotUpload(
port: UploadPort,
  header: StoreStreamHeader,
  source: UploadSource,
  opts: UploadOptions,
  chunkSize: number,
  size: number | undefined,
) {
  // Reading in pieces of chunkSize (not the 64 KiB default) halves the syscalls.
  const input = typeof source === "string" ? fs.createReadStream(source, { highWaterMark: chunkSize }) : source;
  const { call, response } = port.openStoreStream();
  const onAbort = (): void => call.cancel();
  opts.signal?.addEventListener("abort", onAbort, { once: true });
  try {
    const res = await sendStoreStream(call, response, header, toAsync(input as AsyncIterable<Uint8Array | string>), {
      chunkSize,
      totalBytes: size,
      onProgress: opts.onProgress,
    });
    return required(res.object);
  } finally {
    opts.signal?.removeEventListener("abort", onAbort);
  }
}

/** StoreStreams under one upload id until one completes (resumable-upload.ts). */
function resumableUpload(
port: UploadPort,
  header: StoreStreamHeader,
  source: UploadSource,
  opts: UploadOptions,
  chunkSize: number,
  size: number | undefined,
) {
  header.uploadId = opts.uploadId ?? newUploadId();
  const window = checkInteger("replayWindowBytes", opts.replayWindowBytes ?? DEFAULT_REPLAY_WINDOW_BYTES, 1);
  return uploadResumably(
    {
      openStoreStream: () => port.openStoreStream(),
      // The resume loop keeps its own budget: each query is one attempt.
      queryUpload: (id, signal) => port.queryUpload(id, signal, 0),
    },
    {
      header,
      source:
        typeof source === "string"
          ? fileSource(source, chunkSize)
          : replaySource(toAsync(source as AsyncIterable<Uint8Array | string>), window),
      chunkSize,
      totalBytes: size,
      onProgress: opts.onProgress,
      maxAttempts: checkInteger("maxResumeAttempts", opts.maxResumeAttempts ?? DEFAULT_RESUME_ATTEMPTS, 0),
      continueExisting: opts.uploadId !== undefined,
      signal: opts.signal,
    },
  );
}

async function* toAsync(input: AsyncIterable<Uint8Array | string> | Iterable<Uint8Array>): AsyncGenerator<Uint8Array | string> {
  yield* input;
}
