/**
 * The disk cache's on-disk format (bazel-remote's casblob in spirit): a
 * cached copy is the stored bytes exactly as GCS holds them, in one file,
 * and its index row keeps a CRC32C per block of BLOCK_BYTES. A read checks
 * every block it touches before a byte of it leaves, so a range of a large
 * object is verified without reading the rest, and a bad block is found
 * before it is sent (the reader can then take the rest from GCS).
 *
 * Why per-block rather than one CRC per object: a ranged read of a 5 GiB
 * model would otherwise have to read 5 GiB to trust 1 MiB, and a whole read
 * would find a bad byte only after sending it. 4 bytes per MiB in the index
 * (4 KiB for a 1 GiB object) is the price.
 */
import type { FileHandle } from "node:fs/promises";
import { crc32c } from "@node-rs/crc32";

/** Bytes per checked block (the last block of a copy may be shorter). */
export const BLOCK_BYTES = 1024 * 1024;

/** How many blocks of `blockBytes` a copy of `size` bytes has (0 for an empty one). */
export function blockCount(size: number, blockBytes: number): number {
  return Math.ceil(size / blockBytes);
}

/** The CRC32C of block `index` from a packed list (4 bytes big-endian each). */
export function crcAt(packed: Buffer, index: number): number {
  return packed.readUInt32BE(index * 4);
}

/** What a BlockWriter wrote: the size, the CRC32C of all of it and of each block. */
export interface WrittenBlocks {
  size: number;
  crc32c: number;
  /** Packed: 4 bytes big-endian per block. */
  blockCrcs: Buffer;
}

/**
 * Writes a stream of chunks into `handle` from offset 0 in whole blocks,
 * computing each block's CRC32C as it goes; `onBlock(count)` is told after
 * each block reached the file (readers of a fill in progress wait for it).
 * One block is held in memory; writes are positional, so other handles
 * may read the blocks already written.
 */
export class BlockWriter {
  private readonly block: Buffer;
  private fill = 0;
  private size = 0;
  private whole = 0;
  private readonly crcs: number[] = [];

  constructor(
    private readonly handle: FileHandle,
    private readonly blockBytes: number,
    private readonly onBlock?: (written: number) => void,
  ) {
    this.block = Buffer.allocUnsafe(blockBytes);
  }

  /** Bytes taken so far. */
  get bytes(): number {
    return this.size;
  }

  /** Takes `chunk`; resolves once every block it completed is written. */
  async write(chunk: Uint8Array): Promise<void> {
    this.size += chunk.length;
    this.whole = crc32c(chunk, this.whole);
    for (let at = 0; at < chunk.length; ) {
      const take = Math.min(this.blockBytes - this.fill, chunk.length - at);
      this.block.set(chunk.subarray(at, at + take), this.fill);
      this.fill += take;
      at += take;
      if (this.fill === this.blockBytes) await this.flush();
    }
  }

  /** Writes the last (short) block and returns what was written. */
  async end(): Promise<WrittenBlocks> {
    if (this.fill > 0) await this.flush();
    const blockCrcs = Buffer.allocUnsafe(this.crcs.length * 4);
    this.crcs.forEach((crc, i) => blockCrcs.writeUInt32BE(crc, i * 4));
    return { size: this.size, crc32c: this.whole, blockCrcs };
  }

  private async flush(): Promise<void> {
    const bytes = this.block.subarray(0, this.fill);
    const position = this.crcs.length * this.blockBytes;
    for (let done = 0; done < bytes.length; ) {
      const { bytesWritten } = await this.handle.write(bytes, done, bytes.length - done, position + done);
      done += bytesWritten;
    }
    this.crcs.push(crc32c(bytes));
    this.fill = 0;
    this.onBlock?.(this.crcs.length);
  }

  /** CRC32C of block `index`, once written. */
  crcOf(index: number): number {
    return this.crcs[index]!;
  }
}
