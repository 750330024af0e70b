/**
 * The sending side of one StoreStream call: header, chunks of at most
 * `chunkSize` bytes written only as fast as the call drains, then a trailer
 * with the size and CRC32C of everything sent. Memory stays constant whatever
 * the size; the source is abandoned (and so closed) as soon as the daemon
 * answers early, e.g. with a quota or precondition error.
 */
import type * as grpc from "@grpc/grpc-js";
import { create } from "@bufbuild/protobuf";
import {
  StoreStreamRequestSchema,
  StoreStreamTrailerSchema,
  type StoreStreamHeader,
  type StoreStreamRequest,
  type StoreStreamResponse,
} from "../../gen/filestorage/v1/file_storage_pb.js";
import { crc32c } from "./crc32c.js";

/** Called after each chunk is handed to the call; `totalBytes` when known. */
export type ProgressCallback = (sentBytes: number, totalBytes?: number) => void;

export interface SendOptions {
  chunkSize: number;
  totalBytes?: number;
  onProgress?: ProgressCallback;
  /**
   * Where `source` starts in the object (a resumed upload: the committed
   * size) and the CRC32C of the bytes before it; progress, the trailer's size
   * and its CRC32C (of the whole object) count from there. Default 0, 0.
   */
  start?: { offset: number; crc32c: number };
  /** Called after each chunk is handed to the call, with the object offset after it and the CRC32C up to there. */
  onChunk?: (endOffset: number, crc32c: number) => void;
}

/**
 * Writes `header`, the bytes of `source` and the trailer to `call`, then
 * resolves with the call's `response`. Rejects with the call's error when the
 * daemon fails it, or with the source's error (after cancelling the call).
 */
export async function sendStoreStream(
  call: grpc.ClientWritableStream<StoreStreamRequest>,
  response: Promise<StoreStreamResponse>,
  header: StoreStreamHeader,
  source: AsyncIterable<Uint8Array | string>,
  opts: SendOptions,
): Promise<StoreStreamResponse> {
  let answered = false;
  const done = response.then(
    () => void (answered = true),
    () => void (answered = true),
  );
  const send = async (payload: StoreStreamRequest["payload"]): Promise<void> => {
    if (!call.write(create(StoreStreamRequestSchema, { payload }))) await drained(call, done);
  };

  // Waiting for the source must end when the call is answered (an error or a
  // cancel): one handler on `done` wakes whichever step is waiting. Racing each
  // step against `done` instead would leave a reaction per step on it, each
  // holding its chunk, for the whole upload.
  const stop = Symbol("answered");
  let wake: (() => void) | undefined;
  void done.then(() => wake?.());
  const iterator = source[Symbol.asyncIterator]();
  let exhausted = false;

  try {
    await send({ case: "header", value: header });
    let crc = opts.start?.crc32c ?? 0;
    let sent = opts.start?.offset ?? 0;
    pieces: while (!answered) {
      const step = await new Promise<IteratorResult<Uint8Array | string> | typeof stop>((resolve, reject) => {
        wake = () => resolve(stop);
        iterator.next().then(resolve, reject);
      });
      wake = undefined;
      if (step === stop) break;
      if (step.done) {
        exhausted = true;
        break;
      }
      const piece = step.value;
      const bytes = typeof piece === "string" ? Buffer.from(piece, "utf8") : piece;
      for (let at = 0; at < bytes.length; at += opts.chunkSize) {
        // The daemon already answered (an error, since no trailer was sent): stop reading the source.
        if (answered) break pieces;
        const chunk = bytes.subarray(at, at + opts.chunkSize);
        crc = crc32c(chunk, crc);
        sent += chunk.length;
        await send({ case: "chunk", value: chunk });
        opts.onChunk?.(sent, crc);
        opts.onProgress?.(sent, opts.totalBytes);
      }
    }
    if (!answered) {
      await send({ case: "trailer", value: create(StoreStreamTrailerSchema, { crc32c: crc, size: BigInt(sent) }) });
      call.end();
    }
  } catch (err) {
    exhausted = true; // a source that threw is finished
    call.cancel();
    await done;
    throw err;
  } finally {
    // Let an abandoned source release what it holds, without waiting on a stuck one.
    if (!exhausted) void Promise.resolve(iterator.return?.()).catch(() => undefined);
  }
  return response;
}

/** Resolves on 'drain', or when the call is answered (no drain will come then). */
function drained(call: grpc.ClientWritableStream<StoreStreamRequest>, done: Promise<void>): Promise<void> {
  return new Promise((resolve) => {
    const finish = (): void => {
      call.off("drain", finish);
      resolve();
    };
    call.on("drain", finish);
    void done.then(finish);
  });
}
