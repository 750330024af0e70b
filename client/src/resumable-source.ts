/**
 * The bytes of a resumable upload, readable again from any offset the daemon
 * may answer as its committed size, with the CRC32C of everything before it
 * (the trailer's CRC32C covers the whole object, so a resumed stream must
 * continue the running CRC, not restart it).
 *
 * - A file is read again from the offset. The CRC32C before it is known for
 *   every chunk boundary sent (the daemon commits whole chunks only); an
 *   offset never sent from this process (an upload another process began) is
 *   computed by reading the file up to it.
 * - Any other source is read once; the last `windowBytes` sent are kept to
 *   send again. An offset before that window cannot be resumed: from() fails
 *   with a message saying so. An offset past what was read (an upload
 *   another process began from the same bytes) is reached by reading and
 *   checksumming the source up to it.
 */
import * as fs from "node:fs";
import { crc32c } from "./crc32c.js";
import { FileStorageError } from "./file-storage-error.js";
import { status } from "@grpc/grpc-js";

/** Where a resumed stream starts: the CRC32C of the bytes before `offset`, and the bytes from it. */
export interface ResumePoint {
  crc32c: number;
  chunks: AsyncIterable<Uint8Array>;
}

export interface ResumableSource {
  /** The bytes from `offset` on. Rejects when the source cannot reach it. */
  from(offset: number): Promise<ResumePoint>;
  /** A chunk boundary was sent: `crc32c` is the CRC32C of the bytes before `offset`. */
  sent(offset: number, crc32c: number): void;
}

/** Chunk boundaries remembered for a file (4 GiB of 1 MiB chunks; older ones are recomputed from the file). */
const FILE_BOUNDARIES_KEPT = 4096;

/** A file read again from any offset, in pieces of `chunkSize`. */
export function fileSource(path: string, chunkSize: number): ResumableSource {
  const boundaries = new Map<number, number>([[0, 0]]);
  return {
    sent(offset, crc) {
      boundaries.set(offset, crc);
      if (boundaries.size > FILE_BOUNDARIES_KEPT) boundaries.delete(boundaries.keys().next().value!);
    },
    async from(offset) {
      let crc = boundaries.get(offset);
      if (crc === undefined) {
        // Not sent from here: read the file from the nearest known boundary below.
        let base = 0;
        for (const b of boundaries.keys()) if (b <= offset && b > base) base = b;
        crc = boundaries.get(base) ?? 0;
        let at = base;
        if (offset > base) {
          for await (const piece of fs.createReadStream(path, { start: base, end: offset - 1, highWaterMark: chunkSize }) as AsyncIterable<Buffer>) {
            crc = crc32c(piece, crc);
            at += piece.length;
          }
        }
        if (at !== offset) {
          throw new FileStorageError(status.FAILED_PRECONDITION, `the daemon holds ${offset} bytes of this upload but the file has only ${at}: it is not the file the upload began with`);
        }
        boundaries.set(offset, crc);
      }
      return { crc32c: crc, chunks: fs.createReadStream(path, { start: offset, highWaterMark: chunkSize }) };
    },
  };
}

interface Piece {
  start: number;
  /** CRC32C of the bytes before `start`. */
  crcBefore: number;
  bytes: Buffer;
}

/** A source read once, with its last `windowBytes` kept to send again. */
export function replaySource(source: AsyncIterable<Uint8Array | string>, windowBytes: number): ResumableSource {
  const iterator = source[Symbol.asyncIterator]();
  const kept: Piece[] = [];
  let keptBytes = 0;
  let pulled = 0;
  let crcPulled = 0;
  let ended = false;
  let pulling: Promise<boolean> | undefined;

  /** Reads the next piece into the window; false at the end of the source. Callers share one read at a time. */
  function pull(): Promise<boolean> {
    pulling ??= pullOnce().finally(() => (pulling = undefined));
    return pulling;
  }

  async function pullOnce(): Promise<boolean> {
    if (ended) return false;
    const step = await iterator.next();
    if (step.done) {
      ended = true;
      return false;
    }
    const value = step.value;
    const bytes = typeof value === "string" ? Buffer.from(value, "utf8") : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    kept.push({ start: pulled, crcBefore: crcPulled, bytes });
    keptBytes += bytes.length;
    pulled += bytes.length;
    crcPulled = crc32c(bytes, crcPulled);
    // Drop the oldest pieces while the rest still cover the window.
    while (kept.length > 1 && keptBytes - kept[0]!.bytes.length >= windowBytes) keptBytes -= kept.shift()!.bytes.length;
    return true;
  }

  /** The kept piece holding byte `at` (pieces are sorted by start). */
  function pieceAt(at: number): Piece | undefined {
    let lo = 0;
    let hi = kept.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const p = kept[mid]!;
      if (at < p.start) hi = mid - 1;
      else if (at >= p.start + p.bytes.length) lo = mid + 1;
      else return p;
    }
    return undefined;
  }

  async function* fromKept(offset: number): AsyncGenerator<Uint8Array> {
    let at = offset;
    for (;;) {
      // The window may move while this runs: look the offset up each time.
      const piece = pieceAt(at);
      if (piece) {
        const rest = piece.bytes.subarray(at - piece.start);
        at += rest.length;
        yield rest;
        continue;
      }
      if (at < pulled) throw outsideWindow(at);
      if (!(await pull())) return;
    }
  }

  const outsideWindow = (offset: number) =>
    new FileStorageError(
      status.FAILED_PRECONDITION,
      `the upload continues at byte ${offset}, but only the last ${windowBytes} bytes sent (from byte ${kept[0]?.start ?? pulled}) ` +
        `are kept to send again (replayWindowBytes): upload from a file path to resume from anywhere`,
    );

  return {
    sent: () => undefined,
    async from(offset) {
      // An upload another process began: read (and checksum) the source up to where it stands.
      while (pulled < offset && (await pull()));
      if (offset > pulled) {
        throw new FileStorageError(status.FAILED_PRECONDITION, `the daemon holds ${offset} bytes of this upload but the source has only ${pulled}`);
      }
      let crc: number;
      if (offset === pulled) crc = crcPulled;
      else {
        const piece = pieceAt(offset);
        if (!piece) throw outsideWindow(offset);
        crc = crc32c(piece.bytes.subarray(0, offset - piece.start), piece.crcBefore);
      }
      return { crc32c: crc, chunks: fromKept(offset) };
    },
  };
}
