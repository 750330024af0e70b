/**
 * A resumable upload from the client's side (DESIGN.md "Contract additions"):
 * StoreStreams carrying one upload_id until one completes. When a stream
 * fails in a way a new one can mend (the connection dropped, the daemon
 * restarted or went away for a while, another stream took over), the client
 * asks QueryUpload how much the daemon holds durably and continues from
 * there: the header again with write_offset = committed size, then the bytes
 * from that offset (resumable-source.ts), the running CRC32C carried on, so
 * the trailer still covers the whole object. Progress continues from the
 * committed size.
 *
 * The retry budget counts failed attempts in a row that made no progress
 * (the committed size did not grow), streams and queries alike, with
 * exponential backoff between them: an upload through a flaky link keeps
 * going as long as each attempt gets some bytes in, and one against a daemon
 * that stays down gives up after about half a minute with the defaults.
 */
import { setTimeout as delay } from "node:timers/promises";
import type * as grpc from "@grpc/grpc-js";
import { status } from "@grpc/grpc-js";
import { create } from "@bufbuild/protobuf";
import {
  StoreStreamHeaderSchema,
  type ObjectInfo as WireObjectInfo,
  type QueryUploadResponse,
  type StoreStreamHeader,
  type StoreStreamRequest,
  type StoreStreamResponse,
} from "../../gen/filestorage/v1/file_storage_pb.js";
import { FileStorageError } from "./file-storage-error.js";
import type { ResumableSource } from "./resumable-source.js";
import { sendStoreStream, type ProgressCallback } from "./store-stream-upload.js";

/** What a resumable upload needs of the client: one StoreStream call, and QueryUpload. */
export interface UploadTransport {
  openStoreStream(): { call: grpc.ClientWritableStream<StoreStreamRequest>; response: Promise<StoreStreamResponse> };
  /** The upload's state; null when the daemon does not know the id (NOT_FOUND). */
  queryUpload(uploadId: string, signal?: AbortSignal): Promise<QueryUploadResponse | null>;
}

export interface ResumableUploadOptions {
  /** The first stream's header; upload_id set, write_offset ignored. */
  header: StoreStreamHeader;
  source: ResumableSource;
  chunkSize: number;
  totalBytes?: number;
  onProgress?: ProgressCallback;
  /** Failed attempts in a row without progress before giving up. */
  maxAttempts: number;
  /** Ask the daemon first where the upload stands (an id that another process, or an earlier run, may have begun). */
  continueExisting: boolean;
  signal?: AbortSignal;
}

/** Status codes after which a new stream may succeed: transport failures, a takeover, an offset the daemon moved past. */
const RESUMABLE = new Set([status.UNAVAILABLE, status.DEADLINE_EXCEEDED, status.CANCELLED, status.ABORTED, status.INTERNAL, status.UNKNOWN, status.OUT_OF_RANGE]);

/** Resolves with the stored object once a stream of the upload completes (or the daemon says it did). */
export async function uploadResumably(t: UploadTransport, o: ResumableUploadOptions): Promise<WireObjectInfo> {
  const id = o.header.uploadId;
  let offset = 0;
  let progressAt = 0;
  let failures = 0;
  /** Counts a failed attempt: throws once the budget is spent, else waits out its backoff. */
  const failed = async (err: FileStorageError) => {
    if (++failures > o.maxAttempts) throw gaveUp(err, id, o.maxAttempts);
    await backoff(failures, o.signal);
  };
  let ask = o.continueExisting;
  for (;;) {
    o.signal?.throwIfAborted();
    let forgotten = false;
    if (ask) {
      // Where does the daemon stand? (It may be restarting: asking again is an attempt too.)
      let state: QueryUploadResponse | null;
      try {
        state = await t.queryUpload(id, o.signal);
      } catch (err) {
        if (o.signal?.aborted) throw o.signal.reason;
        const e = FileStorageError.from(err);
        if (!RESUMABLE.has(e.code) || e.code === status.OUT_OF_RANGE) throw e;
        await failed(e);
        continue;
      }
      if (state?.complete) return required(state.object, id);
      // Unknown: the daemon never got the first stream's header, or forgot the upload (expired): from the start.
      offset = state ? Number(state.committedSize) : 0;
      forgotten = state === null && progressAt > 0;
      if (offset > progressAt) {
        // Progress: the budget is for failures in a row without any.
        progressAt = offset;
        failures = 0;
      }
    }
    ask = true;
    const point = await o.source.from(offset).catch((err: unknown) => {
      if (!forgotten) throw err;
      throw new FileStorageError(
        status.NOT_FOUND,
        `upload "${id}" is no longer known to the daemon (it expired, or its storage folder was replaced), and this source cannot be sent again from its start`,
        { cause: err },
      );
    });
    o.onProgress?.(offset, o.totalBytes);
    try {
      const { call, response } = t.openStoreStream();
      const onAbort = (): void => call.cancel();
      o.signal?.addEventListener("abort", onAbort, { once: true });
      try {
        const res = await sendStoreStream(call, response, create(StoreStreamHeaderSchema, { ...o.header, writeOffset: BigInt(offset) }), point.chunks, {
          chunkSize: o.chunkSize,
          totalBytes: o.totalBytes,
          onProgress: o.onProgress,
          start: { offset, crc32c: point.crc32c },
          onChunk: (end, crc) => o.source.sent(end, crc),
        });
        return required(res.object, id);
      } finally {
        o.signal?.removeEventListener("abort", onAbort);
      }
    } catch (err) {
      if (o.signal?.aborted) throw o.signal.reason;
      // The source's own failure (not a call's status) is the caller's: never retried.
      if (!isCallError(err)) throw err;
      const e = FileStorageError.from(err);
      if (!RESUMABLE.has(e.code)) throw e;
      await failed(e);
    }
  }
}

function isCallError(err: unknown): boolean {
  return err instanceof Error && typeof (err as { code?: unknown }).code === "number";
}

function required(object: WireObjectInfo | undefined, id: string): WireObjectInfo {
  if (!object) throw new FileStorageError(status.INTERNAL, `the daemon answered upload "${id}" without its object`);
  return object;
}

function gaveUp(last: FileStorageError, id: string, attempts: number): FileStorageError {
  return new FileStorageError(
    last.code,
    `${last.details} (upload "${id}" gave up after ${attempts} attempts in a row without progress; resume it later with the same upload id)`,
    { cause: last, metadata: last.metadata },
  );
}

/** 100 ms doubling to 5 s, with jitter; ends early (without error) when `signal` aborts. */
function backoff(attempt: number, signal: AbortSignal | undefined): Promise<void> {
  const ceiling = Math.min(5000, 100 * 2 ** (attempt - 1));
  // Rejects only with the abort, which ends the wait early.
  return delay(ceiling / 2 + Math.random() * (ceiling / 2), undefined, { signal }).catch(() => undefined);
}
