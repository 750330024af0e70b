/**
 * The receiving side of one RetrieveStream call: waits for the leading
 * ObjectInfo, then exposes the chunks as a byte Readable that pulls from the
 * call only as fast as it is read. Destroying the Readable cancels the call.
 * When asked, the bytes are checked against the object's size and CRC32C at
 * the end, so a whole download is never silently wrong (DATA_LOSS).
 */
import { Readable } from "node:stream";
import * as grpc from "@grpc/grpc-js";
import type {
  ObjectInfo as ObjectInfoMessage,
  RetrieveStreamResponse,
} from "../../gen/filestorage/v1/file_storage_pb.js";
import { crc32c } from "./crc32c.js";
import { FileStorageError } from "./file-storage-error.js";

/** Check the downloaded tail against the whole object's size and CRC32C. */
export interface TailCheck {
  /** Where the download starts in the object. */
  offset: number;
  /** CRC32C of the object's first `offset` bytes (0 when offset is 0). */
  initialCrc: number;
}

export interface OpenedDownload {
  info: ObjectInfoMessage;
  stream: Readable;
}

/**
 * Resolves once the call's first message (the ObjectInfo) arrives; rejects
 * with a FileStorageError (e.g. NOT_FOUND, OUT_OF_RANGE, FAILED_PRECONDITION)
 * or with `signal.reason` when aborted.
 */
export async function openRetrieveStream(
  call: grpc.ClientReadableStream<RetrieveStreamResponse>,
  opts: { check?: TailCheck; signal?: AbortSignal },
): Promise<OpenedDownload> {
  const { check, signal } = opts;
  // grpc-js emits the final status as 'error' even after the stream is
  // destroyed; the iterator below has its own listener, this one only keeps
  // a late error from becoming an uncaught exception.
  call.on("error", () => undefined);
  const onAbort = (): void => call.cancel();
  signal?.addEventListener("abort", onAbort, { once: true });
  const release = (): void => signal?.removeEventListener("abort", onAbort);
  const messages = call[Symbol.asyncIterator]() as AsyncIterator<RetrieveStreamResponse>;
  const fail = (err: unknown): unknown => (signal?.aborted ? signal.reason : FileStorageError.from(err));

  let first: IteratorResult<RetrieveStreamResponse>;
  try {
    if (signal?.aborted) throw signal.reason;
    first = await messages.next();
  } catch (err) {
    release();
    call.cancel();
    throw fail(err);
  }
  if (first.done || first.value.payload.case !== "object") {
    release();
    call.cancel();
    throw new FileStorageError(grpc.status.INTERNAL, "RetrieveStream did not start with the object's ObjectInfo");
  }
  const info = first.value.payload.value;

  async function* chunks(): AsyncGenerator<Buffer> {
    let crc = check?.initialCrc ?? 0;
    let received = check?.offset ?? 0;
    let complete = false;
    try {
      for (;;) {
        const next = await messages.next();
        if (next.done) break;
        const payload = next.value.payload;
        if (payload.case !== "chunk") {
          throw new FileStorageError(grpc.status.INTERNAL, "RetrieveStream sent a second ObjectInfo");
        }
        const bytes = payload.value;
        if (check) crc = crc32c(bytes, crc);
        received += bytes.length;
        yield Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      }
      complete = true;
    } catch (err) {
      throw fail(err);
    } finally {
      release();
      // Reader gone early (destroyed, aborted, failed): stop the transfer.
      if (!complete) call.cancel();
    }
    if (check && (BigInt(received) !== info.size || crc !== info.crc32c)) {
      throw new FileStorageError(
        grpc.status.DATA_LOSS,
        `download of "${info.key}" does not match the object: got ${received} bytes with crc32c ${crc}, ` +
          `expected ${info.size} bytes with crc32c ${info.crc32c}`,
      );
    }
  }

  return { info, stream: Readable.from(chunks(), { objectMode: false }) };
}
