/**
 * One fetch of a GCS object into the disk cache, shared by every reader of
 * it (the first one started it; later ones attach). The bytes are written
 * to a temp file in whole blocks as fast as GCS gives them; readers read
 * the blocks already written from the same file, each checked against the
 * CRC32C computed as it arrived, so a slow reader never slows the fetch and
 * memory stays one block per fill and two per reader. The last block is
 * released to readers only once the whole copy passed its checks (size,
 * and the object's CRC32C where the stored bytes are the original ones).
 *
 * A fill ends published (an entry of the cache), or not: given up when its
 * last reader left (unless it was started to repair a copy), cancelled by a
 * write of the key meanwhile (it still finishes for its readers), or failed.
 * A failure of GCS reaches its readers as that error; a failure of the
 * cache itself (its disk, its free-space floor) as FillAbandoned, which a
 * reader answers by reading the rest from GCS.
 */
import * as fs from "node:fs/promises";
import type { Readable } from "node:stream";
import type { ObjectRecord } from "../../backends/backend.js";
import { bindSignal } from "../../signals.js";
import { dataLoss } from "../../storage-error.js";
import { BlockWriter, blockCount, type WrittenBlocks } from "./block-crcs.js";
import { FillAbandoned, readAt, readBlocks, type BlockReadOptions, type BlockSource } from "./block-reader.js";
import type { Reservation } from "./lru.js";

/** A fill checks the free space again after each this many bytes. */
const SPACE_CHECK_BYTES = 64 * 1024 * 1024;

/** What a fill needs of the store it fills. */
export interface FillHost {
  blockBytes: number;
  /** Where the fill's temp file goes. */
  tmpPath(id: string): string;
  newFileId(): string;
  /** Throws FillAbandoned when the disk is below the cache's free-space floor. */
  checkSpace(): Promise<void>;
  /** Makes the finished copy an entry (renames its file, commits its row). */
  publish(key: string, record: ObjectRecord, id: string, written: WrittenBlocks, claim: Reservation): Promise<void>;
  /** Gives the fill's space claim back. */
  release(claim: Reservation): void;
}

export interface FillOptions {
  /** Keep going with no reader attached (a repair re-fetch). */
  keep?: boolean;
  /** Told when the fill ended: published or not. */
  onSettled?: (published: boolean) => void;
}

/** True when the stored bytes are the original ones, so the record's CRC32C is theirs too. */
export function storedIsOriginal(record: ObjectRecord): boolean {
  return record.encoding.compression === undefined && record.encoding.encryption === undefined && record.size === record.storedSize;
}

export class Fill {
  /** Set by a write or delete of the key meanwhile: the fill still serves its readers but is not published. */
  cancelled = false;
  /** Resolves true once published, false otherwise (never rejects). */
  readonly settled: Promise<boolean>;

  private state: "running" | "done" | "failed" = "running";
  private error: unknown;
  private blocksWritten = 0;
  /** The copy's file handle is closed: no reader reads it any more. */
  private handleClosed = false;
  private readonly count: number;
  private readers = 0;
  private waiters: (() => void)[] = [];
  private readonly writer: BlockWriter;
  private readonly abort = new AbortController();

  private constructor(
    private readonly host: FillHost,
    readonly key: string,
    readonly record: ObjectRecord,
    private readonly id: string,
    private readonly handle: fs.FileHandle,
    private readonly claim: Reservation,
    body: Readable,
    private readonly opts: FillOptions,
  ) {
    this.count = blockCount(record.storedSize, host.blockBytes);
    this.writer = new BlockWriter(handle, host.blockBytes, (n) => {
      this.blocksWritten = n;
      this.wake();
    });
    this.settled = this.pump(body).then(
      (published) => published,
      () => false,
    );
  }

  /** Starts filling `key` from `body` (the stored bytes of `record`) under `claim`; takes ownership of `body`. */
  static async start(host: FillHost, key: string, record: ObjectRecord, body: Readable, claim: Reservation, opts: FillOptions = {}): Promise<Fill> {
    const id = host.newFileId();
    let handle: fs.FileHandle;
    try {
      // Read and write: the fill writes, its readers read through the same descriptor.
      handle = await fs.open(host.tmpPath(id), "wx+", 0o600);
    } catch (err) {
      body.destroy();
      host.release(claim);
      throw err;
    }
    return new Fill(host, key, record, id, handle, claim, body, opts);
  }

  get generation(): bigint {
    return this.record.generation;
  }

  /** True until the fill ended: only then may a reader attach. */
  get running(): boolean {
    return this.state === "running";
  }

  /** Bytes [start, end) of the copy as it arrives, every block checked; `signal` ends this reader only. */
  reader(range: { start: number; end: number }, onBad: BlockReadOptions["onBad"], signal?: AbortSignal): Readable {
    this.readers++;
    const source: BlockSource = {
      size: this.record.storedSize,
      blockBytes: this.host.blockBytes,
      ready: (index) => this.ready(index),
      crcOf: (index) => this.writer.crcOf(index),
      // A reader that attached as the fill ended (its handle closed) takes the bytes from elsewhere.
      read: (buf, length, position) => (this.handleClosed ? Promise.reject(this.ended()) : readAt(this.handle.fd, buf, length, position)),
      release: () => this.detach(),
    };
    return bindSignal(readBlocks(source, { ...range, onBad }), signal);
  }

  private closeHandle(): void {
    if (this.handleClosed) return;
    this.handleClosed = true;
    void this.handle.close().catch(() => undefined);
  }

  private ended(): FillAbandoned {
    return new FillAbandoned("the fill ended before this reader read its bytes");
  }

  /** Gives the fill up now (the store is closing); its readers take the rest from elsewhere. */
  stop(): void {
    this.cancelled = true;
    if (this.state === "running") this.abort.abort(new FillAbandoned("the disk cache is closing"));
  }

  private ready(index: number): Promise<void> | undefined {
    if (this.handleClosed) return Promise.reject(this.ended());
    // The last block waits for the whole copy's checks and its publishing, so a read that filled the cache ends with the copy kept.
    const available = index < this.blocksWritten && (index < this.count - 1 || this.state === "done");
    if (available) return undefined;
    if (this.state === "failed") return Promise.reject(this.error);
    return new Promise<void>((resolve) => this.waiters.push(resolve)).then(() => this.ready(index));
  }

  private wake(): void {
    const waiting = this.waiters;
    this.waiters = [];
    for (const resolve of waiting) resolve();
  }

  private detach(): void {
    this.readers--;
    if (this.readers > 0) return;
    if (this.state === "running" && !this.opts.keep) this.abort.abort(new FillAbandoned("every reader left"));
    if (this.state !== "running") this.closeHandle();
  }

  private async pump(body: Readable): Promise<boolean> {
    let published = false;
    try {
      let checkedAt = 0;
      const onAbort = () => body.destroy();
      this.abort.signal.addEventListener("abort", onAbort, { once: true });
      try {
        for await (const chunk of body as AsyncIterable<Buffer>) {
          if (this.abort.signal.aborted) break;
          await this.writer.write(chunk).catch((err: unknown) => {
            throw new FillAbandoned(`the disk cache could not write the copy (${(err as NodeJS.ErrnoException).code ?? "error"})`);
          });
          if (this.writer.bytes - checkedAt >= SPACE_CHECK_BYTES) {
            checkedAt = this.writer.bytes;
            await this.host.checkSpace();
          }
        }
      } catch (err) {
        if (!this.abort.signal.aborted) throw err;
      } finally {
        this.abort.signal.removeEventListener("abort", onAbort);
      }
      if (this.abort.signal.aborted) throw this.abort.signal.reason;
      const written = await this.writer.end().catch((err: unknown) => {
        throw new FillAbandoned(`the disk cache could not write the copy (${(err as NodeJS.ErrnoException).code ?? "error"})`);
      });
      if (written.size !== this.record.storedSize) {
        throw dataLoss(`GCS sent ${written.size} bytes of an object recorded as ${this.record.storedSize}`);
      }
      if (storedIsOriginal(this.record) && written.crc32c !== this.record.crc32c >>> 0) {
        throw dataLoss("GCS's copy fails the object's CRC32C");
      }
      if (!this.cancelled) {
        try {
          await this.host.publish(this.key, this.record, this.id, written, this.claim);
          published = true;
        } catch {
          // Not kept; the readers still have every byte in the temp file.
        }
      }
      this.state = "done";
      return published;
    } catch (err) {
      this.state = "failed";
      this.error = err;
      throw err;
    } finally {
      this.host.release(this.claim);
      this.wake();
      if (!published) void fs.rm(this.host.tmpPath(this.id), { force: true }).catch(() => undefined);
      if (this.readers === 0) this.closeHandle();
      this.opts.onSettled?.(published);
    }
  }
}
