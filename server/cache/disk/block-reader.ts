/**
 * Reading a cached copy: bytes [start, end) of a copy, block by block, each
 * block checked against its CRC32C before any byte of it is handed on. A
 * block that fails (or a fill that was given up) is a decision for the
 * caller: take the rest of the bytes from elsewhere (GCS, pinned to the
 * copy's generation) or fail DATA_LOSS. Never wrong bytes.
 */
import * as fs from "node:fs";
import { Readable } from "node:stream";
import { crc32c } from "@node-rs/crc32";
import { dataLoss } from "../../storage-error.js";
import { blockCount } from "./block-crcs.js";

/** Read-ahead of a reader: two blocks, so the next read overlaps the send of the last. */
const READ_AHEAD_BYTES = 2 * 1024 * 1024;

/** A copy to read: a published one (every block ready) or a fill in progress. */
export interface BlockSource {
  /** Stored bytes of the whole copy. */
  readonly size: number;
  readonly blockBytes: number;
  /**
   * Resolves once block `index` is written and may be read; undefined when
   * it already may. Rejects with the fill's error when the fill failed
   * (FillAbandoned when it was given up for reasons of the cache itself).
   */
  ready(index: number): Promise<void> | undefined;
  /** CRC32C of block `index` (once ready). */
  crcOf(index: number): number;
  /** Positional read into `buf` of `length` bytes at `position`; resolves with the bytes read. */
  read(buf: Buffer, length: number, position: number): Promise<number>;
  /** Called exactly once, when the reader is done with the source (ended, failed or destroyed). */
  release(): void;
}

/**
 * Reads `length` bytes at `position` of the open file `fd` into `buf`;
 * resolves with the bytes read. The callback API: fs/promises' FileHandle.read
 * measured ~2x the daemon CPU per GiB on 1 GiB downloads (more promise work
 * per read, and many more full garbage collections).
 */
export function readAt(fd: number, buf: Buffer, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => fs.read(fd, buf, 0, length, position, (err, n) => (err ? reject(err) : resolve(n))));
}

/** A fill given up for reasons of the cache (space, its own disk), not of GCS: the bytes are still GCS's to give. */
export class FillAbandoned extends Error {}

export interface BlockReadOptions {
  start: number;
  end: number;
  /**
   * Block `index` failed its check (`cause` "corrupt", `why` says how), or
   * its fill was given up ("abandoned"): the bytes from `offset` to `end`
   * from elsewhere, or undefined to fail with DATA_LOSS naming `why`.
   */
  onBad(index: number, offset: number, why: string, cause: "corrupt" | "abandoned"): Promise<AsyncIterable<Uint8Array> | undefined>;
}

/** A Readable of bytes [start, end) of `source`, every block checked first. */
export function readBlocks(source: BlockSource, opts: BlockReadOptions): Readable {
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    source.release();
  };
  const body = Readable.from(blocks(source, opts, release), { objectMode: false, highWaterMark: READ_AHEAD_BYTES });
  // A body destroyed before its first read never runs the generator's finally.
  body.once("close", release);
  return body;
}

async function* blocks(source: BlockSource, opts: BlockReadOptions, release: () => void): AsyncGenerator<Buffer> {
  const { end, onBad } = opts;
  const { blockBytes, size } = source;
  const count = blockCount(size, blockBytes);
  let pos = opts.start;
  try {
    while (pos < end) {
      const index = Math.floor(pos / blockBytes);
      const blockStart = index * blockBytes;
      const length = Math.min(blockBytes, size - blockStart);
      let why: string | undefined;
      let cause: "corrupt" | "abandoned" = "corrupt";
      try {
        await source.ready(index);
      } catch (err) {
        if (!(err instanceof FillAbandoned)) throw err;
        why = err.message;
        cause = "abandoned";
      }
      let block: Buffer | undefined;
      if (why === undefined) {
        block = Buffer.allocUnsafe(length);
        const n = await source.read(block, length, blockStart).catch((err: unknown) => {
          if (!(err instanceof FillAbandoned)) throw err;
          why = err.message;
          cause = "abandoned";
          return -1;
        });
        if (why !== undefined) block = undefined;
        else if (n !== length) why = `block ${index + 1} of ${count} is short (${n} of ${length} bytes)`;
        else if (crc32c(block) !== source.crcOf(index)) why = `block ${index + 1} of ${count} fails its CRC32C`;
      }
      if (why !== undefined) {
        const rest = await onBad(index, pos, why, cause);
        if (rest === undefined) {
          throw dataLoss(cause === "corrupt" ? `the disk-cache copy is corrupt (${why}) and GCS could not serve the rest` : `the disk-cache fill stopped (${why}) and GCS could not serve the rest`);
        }
        // The source is of no more use; the rest comes from elsewhere.
        release();
        yield* rest as AsyncIterable<Buffer>;
        return;
      }
      const out = block!.subarray(pos - blockStart, Math.min(length, end - blockStart));
      pos += out.length;
      yield out;
    }
  } finally {
    release();
  }
}
