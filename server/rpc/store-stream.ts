/**
 * StoreStream: the header first (exactly once), then chunks, then an optional
 * trailer (nothing after it); the object is written as the chunks arrive, at
 * constant memory. The declared size (header, trailer) and the trailer's
 * CRC32C are checked before the commit: a mismatch keeps nothing. A header
 * with an upload_id makes the stream one of a resumable upload
 * (server/uploads/upload-sessions.ts): its bytes are kept durably under the
 * id and the object is written when a stream of it half-closes.
 */
import type * as grpc from "@grpc/grpc-js";
import { create } from "@bufbuild/protobuf";
import { trace } from "@opentelemetry/api";
import {
  StoreStreamResponseSchema,
  type StoreStreamRequest,
  type StoreStreamResponse,
  type StoreStreamTrailer,
} from "../../gen/filestorage/v1/file_storage_pb.js";
import { checkKey } from "../keys.js";
import { throwIfAborted, untilAborted } from "../signals.js";
import { dataLoss, invalidArgument } from "../storage-error.js";
import { decoded } from "./call-observer.js";
import type { HandlerContext } from "./handler-context.js";
import { checkContentType, checkMetadata, expiryMs, kindName, toObjectInfo } from "./object-info.js";
import { checkUploadId } from "../uploads/upload-sessions.js";

/** Receives one StoreStream call and writes its object. */
export async function receiveStoreStream(
  ctx: HandlerContext,
  call: grpc.ServerReadableStream<StoreStreamRequest, StoreStreamResponse>,
  signal: AbortSignal,
): Promise<StoreStreamResponse> {
  const messages = call[Symbol.asyncIterator]() as AsyncIterator<StoreStreamRequest>;
  let received = 0;
  const next = async (): Promise<IteratorResult<StoreStreamRequest>> => {
    const n = await untilAborted(messages.next(), signal);
    if (!n.done) decoded(n.value, `StoreStream message ${++received}`);
    return n;
  };
  const first = await next();
  if (first.done) throw invalidArgument("StoreStream received no messages: the first must be a header");
  if (first.value.payload.case !== "header") {
    throw invalidArgument(`the first StoreStream message must be a header, not ${first.value.payload.case ?? "an empty message"}`);
  }
  const header = first.value.payload.value;
  checkKey(header.key);
  // The call's span (ENABLE_TRACING) learns the key from the header; without tracing there is none.
  trace.getActiveSpan()?.setAttribute("filestorage.key", header.key);
  ctx.allow(call, "write", { key: header.key });
  if (header.size !== undefined && header.size < 0n) throw invalidArgument(`header size must not be negative; got ${header.size}`);
  if (header.uploadId === "" && header.writeOffset !== 0n) {
    throw invalidArgument(`write_offset ${header.writeOffset} needs an upload_id: only a resumable upload continues at an offset`);
  }
  if (header.uploadId !== "") checkUploadId(header.uploadId);
  if (header.writeOffset < 0n) throw invalidArgument(`write_offset must not be negative; got ${header.writeOffset}`);

  let trailer: StoreStreamTrailer | undefined;
  async function* chunks(): AsyncGenerator<Uint8Array> {
    for (;;) {
      const n = await next();
      if (n.done) {
        // A client's cancel (RST_STREAM) reaches grpc-js as an end of the messages first and
        // as 'cancelled' a few ticks later: let those ticks run, so a broken stream is never
        // taken for a half-close (which would store, or complete, a truncated object).
        await new Promise((resolve) => setImmediate(resolve));
        throwIfAborted(signal);
        return;
      }
      const payload = n.value.payload;
      switch (payload.case) {
        case "chunk":
          if (trailer) throw invalidArgument("a chunk arrived after the trailer; the trailer must be the last message");
          ctx.observer.bytesReceived(payload.value.byteLength);
          if (payload.value.byteLength > 0) yield payload.value;
          break;
        case "header":
          throw invalidArgument("the header was sent twice; it must be the first message only");
        case "trailer":
          if (trailer) throw invalidArgument("the trailer was sent twice");
          trailer = payload.value;
          break;
        default:
          throw invalidArgument("an empty StoreStream message (no header, chunk or trailer) arrived");
      }
    }
  }
  const verify = ({ size, crc32c }: { size: number; crc32c: number }) => {
    for (const [what, declared] of [["header", header.size], ["trailer", trailer?.size]] as const) {
      if (declared !== undefined && BigInt(size) !== declared) {
        throw invalidArgument(`received ${size} bytes but the ${what} declared size ${declared}; nothing was stored`);
      }
    }
    if (trailer?.crc32c !== undefined && trailer.crc32c >>> 0 !== crc32c >>> 0) {
      throw dataLoss(`crc32c mismatch: the trailer says ${trailer.crc32c >>> 0} but the received data has ${crc32c >>> 0}; nothing was stored`);
    }
  };
  const meta = {
    kind: kindName(header.kind),
    contentType: checkContentType(header.contentType),
    metadata: checkMetadata(header.metadata),
    expiresAt: expiryMs(header.expiresAt),
  };
  const declaredSize = header.size === undefined ? undefined : Number(header.size);
  if (header.uploadId !== "") {
    const record = await ctx.uploads.receive({
      caller: ctx.caller(call),
      uploadId: header.uploadId,
      writeOffset: header.writeOffset,
      header: { key: header.key, ...meta, declaredSize, ifGenerationMatch: header.ifGenerationMatch },
      chunks: chunks(),
      trailer: () => trailer,
      signal,
    });
    return create(StoreStreamResponseSchema, { object: toObjectInfo(record) });
  }
  const record = await ctx.engine.put(
    header.key,
    chunks(),
    meta,
    {
      ifGenerationMatch: header.ifGenerationMatch,
      signal,
      verify,
      declaredSize,
    },
  );
  return create(StoreStreamResponseSchema, { object: toObjectInfo(record) });
}
