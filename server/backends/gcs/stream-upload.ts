/**
 * A streamed upload in one resumable session, sent as the stream arrives in
 * requests of `chunkBytes` (a multiple of 256 KiB, GCS's rule): one request
 * in flight while the next chunk fills, so memory stays at about two chunks
 * whatever the size. The last request carries the total size and the CRC32C
 * of everything, which GCS verifies; it is sent only after `verify` passed,
 * and the object appears only when it succeeds, so a failed or refused
 * stream commits nothing. A request that fails ends the upload (the stream
 * cannot be read again); the caller judges an ambiguous last request.
 */
import type { FileMetadata } from "@google-cloud/storage";
import { crc32c } from "@node-rs/crc32";
import type { PutOptions } from "../backend.js";
import { Code, StorageError } from "../../storage-error.js";
import { throwIfAborted } from "../../signals.js";
import type { GcsContext } from "./gcs-context.js";
import { crc32cBase64, type ObjectResource } from "./gcs-http.js";

/** GCS's granule for the requests of a resumable upload before its last. */
export const SESSION_GRANULE = 256 * 1024;

/** Uploads `source` to `name` (with `resource`, guarded by `guard`) in one session; the object's metadata. */
export async function uploadInOneSession(
  ctx: GcsContext,
  source: AsyncIterable<Uint8Array>,
  target: { name: string; resource: ObjectResource; guard?: bigint },
  chunkBytes: number,
  signal: AbortSignal | undefined,
  verify: PutOptions["verify"],
): Promise<FileMetadata> {
  const chunk = Math.max(SESSION_GRANULE, chunkBytes - (chunkBytes % SESSION_GRANULE));
  // Starting a session changes nothing: retried like a read.
  const session = await ctx.retry((attempt) => ctx.http.startSession(target.name, target.resource, { ifGenerationMatch: target.guard }, attempt), signal);
  let offset = 0;
  let total = 0;
  let crc = 0;
  const held: Buffer[] = [];
  let heldBytes = 0;
  let sending: Promise<void> | undefined;
  const send = async (body: Buffer[], bytes: number) => {
    const answer = await ctx.http.putChunk(session, body, offset, undefined, signal);
    if ("object" in answer) throw new StorageError(Code.Internal, "GCS upload: the session ended before its last request");
    if (answer.persisted !== offset + bytes) {
      throw new StorageError(Code.Unavailable, `GCS upload: GCS kept ${answer.persisted} of the ${offset + bytes} bytes sent; the upload cannot go on`);
    }
    offset += bytes;
  };
  for await (const piece of source) {
    const buf = Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength);
    total += buf.length;
    crc = crc32c(buf, crc);
    held.push(buf);
    heldBytes += buf.length;
    // More than a chunk held: the first chunk is not the last request.
    while (heldBytes > chunk) {
      const body = take(held, chunk);
      heldBytes -= chunk;
      if (sending) await sending;
      sending = send(body, chunk);
      sending.catch(() => undefined);
    }
  }
  throwIfAborted(signal);
  if (sending) await sending;
  // The whole stream was received: a throw here (declared size, trailer) commits nothing.
  verify?.({ size: total, crc32c: crc >>> 0 });
  const last = await ctx.http.putChunk(session, held, offset, { total, crc32c: crc32cBase64(crc) }, signal);
  if (!("object" in last)) throw new StorageError(Code.Internal, "GCS upload: the last request did not finish the upload");
  return last.object;
}

/** Removes exactly `bytes` from the front of `held` (splitting a buffer at the boundary). */
function take(held: Buffer[], bytes: number): Buffer[] {
  const out: Buffer[] = [];
  let need = bytes;
  while (need > 0) {
    const first = held[0];
    if (first.length <= need) {
      out.push(first);
      held.shift();
      need -= first.length;
    } else {
      out.push(first.subarray(0, need));
      held[0] = first.subarray(need);
      need = 0;
    }
  }
  return out;
}
