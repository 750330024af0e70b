/**
 * RetrieveStream: the ObjectInfo first, then the bytes (of the range asked
 * for) in messages of about CHUNK_SIZE, written as fast as the client reads
 * them (backpressure through 'drain'; a cancel ends the wait).
 */
import type * as grpc from "@grpc/grpc-js";
import { create } from "@bufbuild/protobuf";
import { RetrieveStreamResponseSchema, type RetrieveStreamRequest, type RetrieveStreamResponse } from "../../gen/filestorage/v1/file_storage_pb.js";
import { checkKey } from "../keys.js";
import { abortError, untilAborted } from "../signals.js";
import { Code, StorageError, invalidArgument } from "../storage-error.js";
import type { HandlerContext } from "./handler-context.js";
import { toObjectInfo } from "./object-info.js";

/** Offsets and limits above this are not exact as Numbers; no object is that large. */
const MAX_SAFE_OFFSET = BigInt(Number.MAX_SAFE_INTEGER);

/** Sends one RetrieveStream call's answer. */
export async function sendRetrieveStream(
  ctx: HandlerContext,
  req: RetrieveStreamRequest,
  call: grpc.ServerWritableStream<RetrieveStreamRequest, RetrieveStreamResponse>,
  signal: AbortSignal,
): Promise<void> {
  checkKey(req.key);
  ctx.allow(call, "read", { key: req.key });
  if (req.offset < 0n) throw invalidArgument(`offset must not be negative; got ${req.offset}`);
  if (req.limit < 0n) throw invalidArgument(`limit must not be negative (0 = to the end); got ${req.limit}`);
  if (req.offset > MAX_SAFE_OFFSET) {
    // Past every object (MAX_OBJECT_BYTES is at most 5 TiB), and not
    // representable as a Number: answer from the size, converting nothing.
    const head = await ctx.engine.head(req.key, { signal });
    if (!head) throw new StorageError(Code.NotFound, `key "${req.key}" not found`);
    throw new StorageError(Code.OutOfRange, `offset ${req.offset} is past the end of the object (${head.size} bytes)`);
  }
  // A limit beyond any object's size means "to the end", like 0.
  const length = req.limit === 0n || req.limit > MAX_SAFE_OFFSET ? undefined : Number(req.limit);
  const found = await ctx.engine.get(req.key, {
    range: req.offset > 0n || length !== undefined ? { offset: Number(req.offset), length } : undefined,
    ifGenerationMatch: req.ifGenerationMatch,
    signal,
  });
  if (!found) throw new StorageError(Code.NotFound, `key "${req.key}" not found`);
  const { record, body } = found;
  try {
    await send(call, create(RetrieveStreamResponseSchema, { payload: { case: "object", value: toObjectInfo(record) } }), signal);
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    const flush = async () => {
      if (pendingBytes === 0) return;
      const chunk = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes);
      pending = [];
      pendingBytes = 0;
      ctx.observer.bytesSent(chunk.byteLength);
      await send(call, create(RetrieveStreamResponseSchema, { payload: { case: "chunk", value: chunk } }), signal);
    };
    for await (const piece of body as AsyncIterable<Buffer>) {
      // Split big pieces and gather small ones into messages of about chunkSize.
      for (let at = 0; at < piece.byteLength; ) {
        const take = Math.min(ctx.chunkSize - pendingBytes, piece.byteLength - at);
        pending.push(piece.subarray(at, at + take));
        pendingBytes += take;
        at += take;
        if (pendingBytes >= ctx.chunkSize) await flush();
      }
    }
    await flush();
  } finally {
    body.destroy();
  }
}

/** Writes one message, waiting for 'drain' when the client is slow; a cancel ends the wait. */
async function send<T>(call: grpc.ServerWritableStream<unknown, T>, msg: T, signal: AbortSignal): Promise<void> {
  if (signal.aborted) throw abortError(signal);
  if (call.write(msg)) return;
  await untilAborted(new Promise<void>((resolve) => call.once("drain", resolve)), signal);
}
