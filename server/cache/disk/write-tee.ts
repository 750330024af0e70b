/**
 * DISK_CACHE_ON_WRITE: a copy of the stored bytes of a write, made as they
 * pass on their way to GCS, kept only once GCS committed them (with GCS's
 * generation). Each block reaches the file before the bytes go on, so
 * memory stays one block; the copy claims cache room as it grows and is
 * given up (the write itself goes on) as soon as the bound or the
 * free-space floor would not allow it.
 */
import * as fs from "node:fs/promises";
import type { ObjectRecord } from "../../backends/backend.js";
import { BlockWriter, type WrittenBlocks } from "./block-crcs.js";
import type { FillHost } from "./fill.js";
import type { Reservation } from "./lru.js";

export interface TeeHost extends FillHost {
  /** Grows `claim` by `bytes`, evicting to make room; false when the copy cannot be kept. */
  extendRoom(claim: Reservation, bytes: number): Promise<boolean>;
  /** A claim of nothing yet. */
  emptyClaim(): Reservation;
}

export class WriteTee {
  private handle?: fs.FileHandle;
  private writer?: BlockWriter;
  private readonly id: string;
  private readonly claim: Reservation;
  private abandoned = false;
  private written?: WrittenBlocks;

  constructor(private readonly host: TeeHost) {
    this.id = host.newFileId();
    this.claim = host.emptyClaim();
  }

  /** `source`, passed through unchanged, copied into the cache file as it goes. */
  async *wrap(source: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
    for await (const chunk of source) {
      if (!this.abandoned) await this.copy(chunk);
      yield chunk;
    }
    if (!this.abandoned && this.writer) {
      try {
        this.written = await this.writer.end();
      } catch {
        await this.abandon();
      }
    } else if (!this.abandoned) {
      // An empty object: nothing was written, so nothing was opened.
      await this.open().catch(() => this.abandon());
      this.written = this.writer ? await this.writer.end() : undefined;
    }
  }

  /** Keeps the copy as the entry of `key` when it holds exactly the bytes GCS committed as `record`. */
  async keep(key: string, record: ObjectRecord): Promise<boolean> {
    const written = this.written;
    if (this.abandoned || written === undefined || written.size !== record.storedSize) {
      await this.discard();
      return false;
    }
    await this.close();
    try {
      await this.host.publish(key, record, this.id, written, this.claim);
      return true;
    } catch {
      await this.discard();
      return false;
    } finally {
      this.host.release(this.claim);
    }
  }

  /** Removes the copy (the write failed, or the copy was not kept). */
  async discard(): Promise<void> {
    this.abandoned = true;
    this.host.release(this.claim);
    await this.close();
    await fs.rm(this.host.tmpPath(this.id), { force: true }).catch(() => undefined);
  }

  private async open(): Promise<void> {
    this.handle = await fs.open(this.host.tmpPath(this.id), "wx", 0o600);
    this.writer = new BlockWriter(this.handle, this.host.blockBytes);
  }

  private async copy(chunk: Uint8Array): Promise<void> {
    try {
      if (!(await this.host.extendRoom(this.claim, chunk.length))) return await this.abandon();
      if (this.writer === undefined) await this.open();
      await this.writer!.write(chunk);
    } catch {
      await this.abandon();
    }
  }

  private async abandon(): Promise<void> {
    if (this.abandoned) return;
    await this.discard();
  }

  private async close(): Promise<void> {
    const handle = this.handle;
    this.handle = undefined;
    await handle?.close().catch(() => undefined);
  }
}
