/**
 * The stream stages the codec strings together: inspecting original bytes
 * (kind check, size, CRC32C), verifying them on the way out, slicing a range
 * out of a decoded stream, and turning a stage back into a Readable body.
 * Each holds at most the chunk in hand.
 */
import { Readable } from "node:stream";
import { crc32c } from "@node-rs/crc32";
import { dataLoss } from "../storage-error.js";
import { ByteQueue } from "./byte-queue.js";
import type { KindCheck } from "./kind-check.js";

/** Passes `source` through while checking its kind and computing size and CRC32C;
 * at its end, finishes the kind check and reports what was received. */
export async function* inspect(
  source: AsyncIterable<Uint8Array>,
  check: KindCheck,
  onEnd: (received: { size: number; crc32c: number }) => void,
): AsyncGenerator<Uint8Array> {
  let size = 0;
  let crc = 0;
  for await (const chunk of source) {
    if (chunk.length === 0) continue;
    check.update(chunk);
    size += chunk.length;
    crc = crc32c(chunk, crc);
    yield chunk;
  }
  check.end();
  onEnd({ size, crc32c: crc });
}

/**
 * A Readable of `source`, which reads `inner`. When it closes (ended, failed
 * or destroyed before the first read) `inner` is destroyed too: a generator
 * that never started would not release it, leaving its file open. An error
 * of `inner` that nobody reads (e.g. its abort signal fired after the caller
 * dropped the body) must not become an uncaught 'error' event; while the
 * source reads `inner` it still sees every error through its iterator.
 */
export function toBody(source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, inner?: Readable): Readable {
  const body = Readable.from(source, { objectMode: false });
  if (inner) {
    inner.on("error", () => undefined);
    body.once("close", () => inner.destroy());
  }
  return body;
}

/** The chunks already pulled, then the rest of the iterator (if it has not ended). */
export async function* resume(lead: Buffer[], rest: AsyncIterator<Uint8Array> | undefined): AsyncGenerator<Uint8Array> {
  yield* lead;
  if (rest !== undefined) yield* { [Symbol.asyncIterator]: () => rest };
}

export async function* countBytes(source: AsyncIterable<Uint8Array>, onEnd: (bytes: number) => void) {
  let bytes = 0;
  for await (const chunk of source) {
    bytes += chunk.length;
    yield chunk;
  }
  onEnd(bytes);
}

/**
 * Bytes [skip, skip + length) of `source`; stops reading (and releases it)
 * once they are out, unless `toEnd`: then the range ends the object, so the
 * source is read to its end (its final segment must verify) before the last
 * bytes are released, and anything after them is DATA_LOSS.
 */
export async function* slice(
  source: AsyncIterable<Uint8Array>,
  skip: number,
  length: number,
  toEnd: boolean,
): AsyncGenerator<Uint8Array> {
  let left = length;
  let last: Uint8Array | undefined;
  for await (let chunk of source) {
    if (last !== undefined) {
      if (chunk.length > 0) throw dataLoss("stored data is longer than its recorded size");
      continue;
    }
    if (skip >= chunk.length) {
      skip -= chunk.length;
      continue;
    }
    chunk = chunk.subarray(skip);
    skip = 0;
    if (chunk.length >= left) {
      if (!toEnd) {
        yield chunk.subarray(0, left);
        return;
      }
      if (chunk.length > left) throw dataLoss("stored data is longer than its recorded size");
      last = chunk;
      continue;
    }
    left -= chunk.length;
    yield chunk;
  }
  if (last === undefined) throw dataLoss("stored data ended before the requested range");
  yield last;
}

export async function* verifyChecksum(source: AsyncIterable<Uint8Array>, size: number, expectedCrc: number) {
  let read = 0;
  let crc = 0;
  for await (const chunk of source) {
    read += chunk.length;
    crc = crc32c(chunk, crc);
    yield chunk;
  }
  if (read !== size || crc !== expectedCrc) {
    throw dataLoss(`stored data failed its checksum: expected ${size} bytes with crc32c ${expectedCrc}, read ${read} bytes with crc32c ${crc}`);
  }
}

/** Reads a short stream whole (at most `limit` bytes are expected). */
export async function readAll(body: Readable, limit: number): Promise<Buffer> {
  const queue = new ByteQueue();
  for await (const chunk of body) {
    queue.push(chunk);
    if (queue.length > limit) break;
  }
  return queue.take(Math.min(queue.length, limit));
}
