/**
 * The local tier's one way of writing a file from a stream of chunks: small
 * chunks are coalesced into pieces of at least PIECE_BYTES, up to
 * WRITES_IN_FLIGHT positional writes run in libuv's pool while the next bytes
 * arrive (so the network and the disk work at the same time instead of in
 * turns), the free-space reserve is checked every SPACE_CHECK_BYTES, and a
 * running CRC32C is kept of everything accepted. A blob upload (blob-files.ts)
 * writes once and syncs at the end; a resumable upload (upload-store.ts) syncs
 * at checkpoints while writes continue.
 */
import type * as fs from "node:fs/promises";
import { crc32c } from "@node-rs/crc32";
import { translate } from "./fs-errors.js";

/** Writes reach the disk in pieces of at least this much (small chunks are coalesced). */
const PIECE_BYTES = 1024 * 1024;
/** Pieces of an upload written at once while more bytes arrive. */
const WRITES_IN_FLIGHT = 4;
/** A streamed write checks the free space again after each this many bytes. */
const SPACE_CHECK_BYTES = 16 * 1024 * 1024;

/** Piece buffers are reused across writers: fresh 1 MiB buffers are expensive here (DESIGN.md). */
const bufferPool: Buffer[] = [];
const takePiece = () => bufferPool.pop() ?? Buffer.allocUnsafe(PIECE_BYTES);
const recycle = (piece: Buffer) => {
  if (bufferPool.length < 8) bufferPool.push(piece);
};

/** What a sync made durable: every byte accepted before it was called. */
export interface Synced {
  size: number;
  crc32c: number;
}

export interface FileWriter {
  /** Bytes accepted so far (written, being written or waiting in the current piece). */
  readonly size: number;
  /**
   * Accepts `chunk` at the end of the file; resolves once it is written or
   * under way, waiting while WRITES_IN_FLIGHT writes are out. The chunk must
   * not be changed afterwards (large chunks are written from where they are).
   */
  write(chunk: Buffer): Promise<void>;
  /**
   * Makes every byte accepted before the call durable (writes finished, then
   * fsync when the writer is durable) and returns their size and CRC32C. May
   * run while later writes go on. Rejects when any write failed: the file
   * then holds an unknown tail and only an earlier sync's result stands.
   */
  sync(): Promise<Synced>;
  /** Waits for the writes under way (successful or not); does not close the handle. */
  settle(): Promise<void>;
}

export interface FileWriterOptions {
  /** Where the first accepted byte goes, and the CRC32C of the bytes before it. */
  start?: Synced;
  /** fsync on sync() (off only for tests and scratch data). */
  durable: boolean;
  /** Throws RESOURCE_EXHAUSTED below the free-space reserve (LOCAL_MIN_FREE_BYTES). */
  ensureSpace: () => Promise<void>;
}

/** A writer appending to the open `handle` (the caller opens and closes it). */
export function createFileWriter(handle: fs.FileHandle, opts: FileWriterOptions): FileWriter {
  let piece: Buffer = Buffer.alloc(0);
  let fill = 0;
  let size = opts.start?.size ?? 0;
  let crc = opts.start?.crc32c ?? 0;
  let position = size;
  let checkedAt = position;
  let failure: { err: unknown } | undefined;
  const inflight = new Set<Promise<void>>();
  // write() and the first half of sync() take turns, so a sync's snapshot
  // (size, CRC32C) covers exactly the bytes issued before it.
  let turn: Promise<unknown> = Promise.resolve();
  const exclusive = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = turn.then(fn);
    turn = run.catch(() => undefined);
    return run;
  };

  const writeAll = async (bytes: Uint8Array, at: number): Promise<void> => {
    for (let done = 0; done < bytes.length; ) {
      const { bytesWritten } = await handle.write(bytes, done, bytes.length - done, at + done).catch((err) => {
        throw translate(err, "writing");
      });
      done += bytesWritten;
    }
  };

  /** Starts writing `bytes` at the current position (after the space check), waiting while too many writes are out. */
  const issue = async (bytes: Uint8Array, release?: () => void): Promise<void> => {
    if (position - checkedAt >= SPACE_CHECK_BYTES) {
      checkedAt = position;
      await opts.ensureSpace();
    }
    while (inflight.size >= WRITES_IN_FLIGHT) await Promise.race(inflight);
    if (failure) throw failure.err;
    const write: Promise<void> = writeAll(bytes, position)
      .catch((err: unknown) => {
        failure ??= { err };
        throw err;
      })
      .finally(() => {
        release?.();
        inflight.delete(write);
      });
    // Its failure is seen through `failure`; the promise itself must not count as unhandled.
    write.catch(() => undefined);
    inflight.add(write);
    position += bytes.length;
  };

  /** Sends the partly filled piece to disk (a sync needs its bytes). */
  const flushPiece = async (): Promise<void> => {
    if (fill === 0) return;
    const last = piece;
    const length = fill;
    piece = Buffer.alloc(0);
    fill = 0;
    await issue(last.subarray(0, length), () => recycle(last));
  };

  return {
    get size() {
      return size;
    },

    write: (chunk) => exclusive(async () => {
      if (failure) throw failure.err;
      size += chunk.length;
      crc = crc32c(chunk, crc);
      let at = 0;
      if (fill > 0) {
        at = chunk.copy(piece, fill, 0, Math.min(chunk.length, PIECE_BYTES - fill));
        fill += at;
        if (fill < PIECE_BYTES) return;
        const full = piece;
        piece = Buffer.alloc(0);
        fill = 0;
        await issue(full, () => recycle(full));
      }
      const rest = chunk.subarray(at);
      // Large chunks go straight to disk (the source does not reuse them); a small tail waits for more.
      if (rest.length >= PIECE_BYTES) await issue(rest);
      else if (rest.length > 0) {
        piece = takePiece();
        fill = rest.copy(piece, 0);
      }
    }),

    async sync() {
      const { synced, writes } = await exclusive(async () => {
        await flushPiece();
        return { synced: { size, crc32c: crc }, writes: [...inflight] };
      });
      await Promise.allSettled(writes);
      if (failure) throw failure.err;
      if (opts.durable) await handle.sync().catch((err) => Promise.reject(translate(err, "syncing")));
      return synced;
    },

    settle: () =>
      exclusive(async () => {
        if (fill > 0) {
          recycle(piece);
          piece = Buffer.alloc(0);
          fill = 0;
        }
        await Promise.allSettled([...inflight]);
      }),
  };
}
