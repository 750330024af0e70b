/**
 * Uploads to GCS. A source held whole (at most the resumable threshold) goes
 * up in one multipart request carrying its final metadata, retried while the
 * precondition makes that safe. A larger one is streamed (resumable) into a
 * temporary object under .filestorage/uploads/, checked (verify), then
 * composed into the key with the metadata only the end of the stream can give
 * (original size and CRC32C), in one request guarded by the precondition:
 * until the compose succeeds the key keeps its previous version, and the
 * temporary object is deleted either way (a crash leaves it to the sweep).
 */
import { randomUUID } from "node:crypto";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { File, FileMetadata } from "@google-cloud/storage";
import { crc32c } from "@node-rs/crc32";
import type { PutOptions } from "../backend.js";
import { Code, StorageError } from "../../storage-error.js";
import { abortError } from "../../signals.js";
import type { GcsContext } from "./gcs-context.js";
import { call, isRetryable, translate } from "./gcs-errors.js";
import { UPLOADS_PREFIX, X } from "./object-metadata.js";
import type { ReplaySource } from "./replay-source.js";
import { withRetry } from "./retry.js";

const MiB = 1024 * 1024;

/** What an upload writes besides the bytes. */
export interface UploadTarget {
  key: string;
  contentType: string;
  /** The custom metadata; for a streamed upload called at the end, once size and CRC32C are known. */
  metadata: () => Record<string, string>;
  /** ifGenerationMatch of the write (0 = nothing there). */
  guard: bigint;
}

/** Uploads a source held whole in `replay` in one request; retried while the source can be replayed. */
export function uploadWhole(ctx: GcsContext, replay: ReplaySource, target: UploadTarget, signal: AbortSignal | undefined, verify: PutOptions["verify"]): Promise<FileMetadata> {
  const file = ctx.bucket.file(target.key);
  return withRetry(
    (attemptSignal) => uploadOnce(ctx, file, replay.iterate(), target.metadata(), target.contentType, target.guard, false, attemptSignal, verify),
    // Uploads have an idle timeout instead of a deadline per attempt.
    { maxRetries: ctx.maxRetries, timeoutMs: 0, signal, retryable: isRetryable },
  );
}

/** Streams `replay` into an upload part, then composes it into the key (see the file comment). */
export async function uploadStreamed(ctx: GcsContext, replay: ReplaySource, target: UploadTarget, signal: AbortSignal | undefined, verify: PutOptions["verify"]): Promise<FileMetadata> {
  const part = ctx.bucket.file(`${UPLOADS_PREFIX}${randomUUID()}`);
  try {
    const uploaded = await uploadOnce(ctx, part, replay.iterate(), { [X.kind]: "BYTES" }, "application/octet-stream", 0n, true, signal ?? new AbortController().signal, verify);
    return await ctx.retry(
      () =>
        call("compose", async () => {
          const [body] = await ctx.bucket.file(target.key).request({
            method: "POST",
            uri: "/compose",
            json: {
              destination: { contentType: target.contentType || undefined, metadata: target.metadata() },
              sourceObjects: [{ name: part.name, generation: uploaded.generation }],
            },
            qs: { ifGenerationMatch: target.guard.toString() },
          });
          return body as FileMetadata;
        }),
      signal,
    );
  } finally {
    await call("delete", () => part.delete()).catch(() => undefined);
  }
}

/** One upload attempt; a failing source, verify or signal destroys the write stream, so nothing is committed. */
async function uploadOnce(
  ctx: GcsContext,
  file: File,
  chunks: AsyncIterable<Uint8Array>,
  custom: Record<string, string>,
  contentType: string,
  guard: bigint,
  resumable: boolean,
  signal: AbortSignal,
  verify: PutOptions["verify"],
): Promise<FileMetadata> {
  const ws = file.createWriteStream({
    resumable,
    validation: "crc32c",
    metadata: { contentType, metadata: custom },
    preconditionOpts: { ifGenerationMatch: guard.toString() },
  });
  const idle = new IdleTimer(ctx.timeoutMs);
  // Failures of the source and of verify are the caller's: they pass unchanged.
  let callerError: { err: unknown } | undefined;
  async function* feed(): AsyncGenerator<Uint8Array> {
    let size = 0;
    let crc = 0;
    const it = chunks[Symbol.asyncIterator]();
    for (;;) {
      let next: IteratorResult<Uint8Array>;
      try {
        next = await it.next();
      } catch (err) {
        callerError = { err };
        throw err;
      }
      if (next.done) break;
      const chunk = next.value;
      size += chunk.length;
      crc = crc32c(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength), crc);
      // Timed only while GCS holds us up, not while we wait for a slow client.
      idle.arm();
      yield chunk;
      idle.disarm();
    }
    // Before the end of the body: a throw here abandons the upload.
    try {
      verify?.({ size, crc32c: crc >>> 0 });
    } catch (err) {
      callerError = { err };
      throw err;
    }
    idle.arm();
  }
  const both = AbortSignal.any([signal, idle.signal]);
  try {
    await pipeline(Readable.from(feed(), { objectMode: false, highWaterMark: MiB }), ws, { signal: both });
    return file.metadata;
  } catch (err) {
    if (callerError) throw callerError.err;
    if (idle.signal.aborted) throw idle.signal.reason;
    if (signal.aborted) throw abortError(signal, err);
    throw translate("upload", err);
  } finally {
    idle.disarm();
  }
}

/** Aborts its signal when armed for longer than `ms` without being disarmed. */
class IdleTimer {
  private readonly ac = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  readonly signal = this.ac.signal;
  constructor(private readonly ms: number) {}
  arm(): void {
    if (!(this.ms > 0 && Number.isFinite(this.ms)) || this.timer) return;
    this.timer = setTimeout(() => {
      this.ac.abort(new StorageError(Code.Unavailable, `GCS made no progress for ${this.ms} ms`));
    }, this.ms);
  }
  disarm(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}
