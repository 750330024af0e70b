/**
 * Large reads in parallel parts (gcsfuse reads model files the same way):
 * the bytes [start, end) of one generation come as parts of `partBytes`, up to
 * `parts` of them in flight, delivered in order. The first part streams from
 * the read that was already open (its answer told the size); each later part
 * is a ranged read pinned to the generation, read whole into memory (so a
 * failure is retried from the part's start) while the parts before it are
 * delivered. Memory: at most (parts - 1) x partBytes ahead of the reader, and
 * nothing is fetched further ahead than that, whatever the object's size.
 * When [start, end) is the whole object its CRC32C is checked over the
 * reassembled bytes: a mismatch is DATA_LOSS at the end of the body.
 */
import { Readable } from "node:stream";
import { crc32c } from "@node-rs/crc32";
import { Code, StorageError } from "../../storage-error.js";
import { crc32cBase64 } from "./gcs-http.js";
import { translate } from "./gcs-errors.js";

const MiB = 1024 * 1024;

export interface ParallelReadPlan {
  /** The open read, positioned at `start` (it may run past the first part: the rest is left unread). */
  first: Readable;
  start: number;
  end: number;
  partBytes: number;
  /** Parts in flight, the one being delivered included (at least 2). */
  parts: number;
  /** The whole object's CRC32C (base64), when [start, end) is the whole object. */
  crc32c?: string;
  /** Reads [s, e) of the same generation whole (retried as the caller sees fit). */
  fetch(s: number, e: number, signal: AbortSignal): Promise<Buffer[]>;
}

/** The in-order body of a parallel read; destroying it aborts the parts in flight. */
export function parallelBody(plan: ParallelReadPlan): Readable {
  const body = Readable.from(deliver(plan), { objectMode: false, highWaterMark: MiB });
  // A body destroyed before it was read never runs the generator's cleanup: the open answer is closed here too.
  body.once("close", () => plan.first.destroy());
  return body;
}

async function* deliver(plan: ParallelReadPlan): AsyncGenerator<Buffer> {
  const { start, end, partBytes } = plan;
  const ac = new AbortController();
  const queue: Promise<Buffer[]>[] = [];
  let next = Math.min(end, start + partBytes);
  const launch = () => {
    while (queue.length < plan.parts - 1 && next < end) {
      const s = next;
      const e = Math.min(end, s + partBytes);
      next = e;
      const part = plan.fetch(s, e, ac.signal);
      // Awaited in order below; an abandoned one must not be an unhandled rejection.
      part.catch(() => undefined);
      queue.push(part);
    }
  };
  let crc = 0;
  const check = plan.crc32c !== undefined;
  try {
    launch();
    let need = Math.min(end, start + partBytes) - start;
    try {
      for await (const chunk of plan.first as AsyncIterable<Buffer>) {
        const piece = chunk.length > need ? chunk.subarray(0, need) : chunk;
        need -= piece.length;
        if (check) crc = crc32c(piece, crc);
        yield piece;
        if (need === 0) break;
      }
    } catch (err) {
      throw translate("read", err);
    } finally {
      // The first answer may go on past its part: it is not read further.
      plan.first.destroy();
    }
    if (need > 0) throw new StorageError(Code.Unavailable, "GCS read: the answer ended before the end of its part");
    while (queue.length > 0) {
      const buffers = await queue.shift()!;
      launch();
      for (const b of buffers) {
        if (check) crc = crc32c(b, crc);
        yield b;
      }
    }
    if (check && crc32cBase64(crc) !== plan.crc32c) {
      throw new StorageError(Code.DataLoss, "GCS read: the CRC32C of the data does not match the object's");
    }
  } finally {
    ac.abort();
  }
}
