/**
 * The disk cache's store (bazel-remote's disk.go in spirit): copies of GCS
 * objects as stored bytes in files under `<LOCAL_STORAGE_PATH>/disk-cache/`
 * (the local tier's blob-file layout: tmp/ for fills in progress,
 * blobs/<xx>/<id> once published), their rows in the local tier's index
 * (entry-index.ts), least recently used evicted first (lru.ts) so the
 * entries and the fills in progress never pass `maxBytes`, and no copy is
 * admitted that would leave the disk below `minFreeBytes`.
 *
 * Files are written without fsync: a copy lost or torn by a crash fails its
 * block CRCs (or is missing) and is dropped and fetched again; the start-up
 * load (load.ts) removes rows whose file is gone and files no row names.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import type { Readable } from "node:stream";
import type { ObjectRecord } from "../../backends/backend.js";
import { openBlobFiles, type BlobFiles } from "../../backends/fs/blob-files.js";
import type { FsBackend } from "../../backends/fs/fs-backend.js";
import { crc32c } from "@node-rs/crc32";
import { BLOCK_BYTES, blockCount, crcAt, type WrittenBlocks } from "./block-crcs.js";
import { FillAbandoned, readAt, readBlocks, type BlockReadOptions } from "./block-reader.js";
import { openEntryIndex, type CacheEntry, type EntryIndex } from "./entry-index.js";
import { Fill, type FillOptions } from "./fill.js";
import { loadEntries } from "./load.js";
import { ByteLru, type Reservation } from "./lru.js";
import type { TeeHost } from "./write-tee.js";

/** A write tee looks at the free space again after each this many bytes. */
const SPACE_CHECK_BYTES = 16 * 1024 * 1024;
/** How often access times reach the index (they only order evictions after a restart). */
const TOUCH_FLUSH_MS = 30_000;

export interface DiskStoreOptions {
  /** The local tier: its folder holds the cache's files, its database the cache's table. */
  local: FsBackend;
  /** DISK_CACHE_MAX_MB in bytes: entries plus fills in progress never pass it. */
  maxBytes: number;
  /** DISK_CACHE_MIN_FREE_MB in bytes: no copy is admitted that would leave less free. */
  minFreeBytes: number;
  /** Told of each entry evicted to make room. */
  onEvicted?: () => void;
}

/** What checking one entry found (Verify, the scrubber). */
export type EntryCheck = { ok: true; bytes: number } | { ok: false; bytes: number; problem: "corrupt" | "orphan"; detail: string };

export interface DiskStore {
  readonly maxBytes: number;
  /** The entry of `key`, or undefined. */
  lookup(key: string): CacheEntry | undefined;
  /** Bytes [start, end) of `entry`, every block checked; undefined when its file is gone (the entry is dropped). */
  open(entry: CacheEntry, range: { start: number; end: number }, onBad: BlockReadOptions["onBad"]): Promise<Readable | undefined>;
  /**
   * Claims room for a copy of `bytes`: evicts least recently used entries
   * until the bound and the free-space floor allow it; undefined when they
   * cannot (the copy is larger than the bound, or the disk too full).
   */
  makeRoom(bytes: number): Promise<Reservation | undefined>;
  release(claim: Reservation): void;
  /** What a fill or a write tee needs of the store. */
  readonly host: TeeHost;
  /** Starts a fill of `key` from `body` (the stored bytes of `record`) under `claim`. */
  fill(key: string, record: ObjectRecord, body: Readable, claim: Reservation, opts?: FillOptions): Promise<Fill>;
  /** Drops the entry of `key` (only if it still names `blob`, when given); true when one was dropped. */
  drop(key: string, blob?: string): Promise<boolean>;
  /** Marks the entry of `key` used. */
  touch(key: string): void;
  /** Up to `limit` entries under `prefix` after `after`, in key order. */
  page(prefix: string, after: string | undefined, limit: number): CacheEntry[];
  /** Reads every block of `entry` and checks it; `pace` is awaited after each block. */
  check(entry: CacheEntry, pace?: (bytes: number) => Promise<void>): Promise<EntryCheck>;
  /** Ids of files no row names, last written more than `graceMs` ago. */
  orphanFiles(graceMs: number): Promise<string[]>;
  /** Removes such a file unless a row names it now. */
  removeOrphanFile(id: string): Promise<boolean>;
  readonly index: EntryIndex;
  stats(): { entries: number; bytes: number };
  close(): Promise<void>;
}

/**
 * Opens the store in `<local.root>/disk-cache`, loads its entries (dropping
 * rows whose file is gone and files no row names) and evicts down to the
 * bound (it may have been lowered since the last run).
 */
export async function openDiskStore(opts: DiskStoreOptions): Promise<DiskStore> {
  const { maxBytes, minFreeBytes } = opts;
  const blobs: BlobFiles = await openBlobFiles({ root: path.join(opts.local.root, "disk-cache"), durable: false, minFreeBytes });
  const index = openEntryIndex(opts.local.openIndexConnection());
  const lru = new ByteLru(maxBytes);
  try {
    await loadEntries({ index, blobs, lru });
  } catch (err) {
    index.close();
    throw err;
  }

  async function drop(key: string, blob?: string): Promise<boolean> {
    const entryBlob = blob ?? index.get(key)?.blob;
    if (entryBlob === undefined) {
      lru.remove(key);
      return false;
    }
    const removed = index.remove(key, entryBlob);
    if (removed) lru.remove(key);
    await blobs.dropBlob(entryBlob);
    return removed;
  }

  async function evictOldest(): Promise<number | undefined> {
    const key = lru.oldest();
    if (key === undefined) return undefined;
    const entry = index.get(key);
    if (entry === undefined) {
      lru.remove(key);
      return 0;
    }
    await drop(key, entry.blob);
    opts.onEvicted?.();
    return entry.storedSize;
  }

  /**
   * Evicts least recently used entries until `bytes` more fit the bound and
   * the free-space floor; false when they cannot.
   */
  async function fit(bytes: number, checkFree = true): Promise<boolean> {
    if (bytes > maxBytes) return false;
    while (lru.committed + bytes > maxBytes) {
      if ((await evictOldest()) === undefined) return false;
    }
    if (!checkFree) return true;
    // Other fills will still write what they claimed; an evicted file's space is free once it is closed.
    let free = (await blobs.freeBytes().catch(() => 0)) - lru.committed + lru.bytes;
    while (free - bytes < minFreeBytes) {
      const freed = await evictOldest();
      if (freed === undefined) return false;
      free += freed;
    }
    return true;
  }

  const host: TeeHost = {
    blockBytes: BLOCK_BYTES,
    tmpPath: (id) => blobs.tmpPath(id),
    newFileId: () => blobs.newFileId(),
    async checkSpace() {
      const free = await blobs.freeBytes().catch(() => 0);
      if (free < minFreeBytes) throw new FillAbandoned("the disk fell below DISK_CACHE_MIN_FREE_MB");
    },
    async publish(key, record, id, written, claim) {
      await fs.rename(blobs.tmpPath(id), blobs.blobPath(id));
      const entry: CacheEntry = {
        key,
        generation: record.generation,
        record,
        storedSize: written.size,
        storedCrc32c: written.crc32c,
        blockBytes: BLOCK_BYTES,
        blockCrcs: written.blockCrcs,
        blob: id,
      };
      let replaced: string | undefined;
      try {
        replaced = index.put(entry, Date.now());
      } catch (err) {
        await blobs.dropBlob(id);
        throw err;
      }
      // The claim becomes the entry in the same turn, so the bound never counts it twice or not at all.
      lru.release(claim);
      lru.add(key, written.size);
      if (replaced !== undefined) await blobs.dropBlob(replaced);
    },
    release: (claim) => lru.release(claim),
    emptyClaim: () => lru.reserve(0),
    async extendRoom(claim, bytes) {
      // The free space is looked at again only every SPACE_CHECK_BYTES, not per chunk.
      const crossing = Math.floor((claim.bytes + bytes) / SPACE_CHECK_BYTES) > Math.floor(claim.bytes / SPACE_CHECK_BYTES);
      if (!(await fit(bytes, claim.bytes === 0 || crossing))) return false;
      lru.grow(claim, bytes);
      return true;
    },
  };

  const flushTouched = () => {
    const touched = lru.takeTouched();
    if (touched.size > 0) {
      try {
        index.touch(touched);
      } catch {
        // Only the eviction order after a restart is lost.
      }
    }
  };
  const timer = setInterval(flushTouched, TOUCH_FLUSH_MS);
  timer.unref();

  return {
    maxBytes,
    index,
    lookup(key) {
      if (!lru.has(key)) return undefined;
      return index.get(key);
    },
    async open(entry, range, onBad) {
      let handle: fs.FileHandle;
      try {
        handle = await fs.open(blobs.blobPath(entry.blob), "r");
      } catch {
        await drop(entry.key, entry.blob);
        return undefined;
      }
      lru.touch(entry.key);
      return readBlocks(
        {
          size: entry.storedSize,
          blockBytes: entry.blockBytes,
          ready: () => undefined,
          crcOf: (i) => crcAt(entry.blockCrcs, i),
          read: (buf, length, position) => readAt(handle.fd, buf, length, position),
          release: () => void handle.close().catch(() => undefined),
        },
        { ...range, onBad },
      );
    },
    host,
    async makeRoom(bytes) {
      if (bytes > maxBytes || !(await fit(bytes))) return undefined;
      return lru.reserve(bytes);
    },
    release: (claim) => lru.release(claim),
    fill: (key, record, body, claim, fillOpts) => Fill.start(host, key, record, body, claim, fillOpts),
    drop,
    touch: (key) => lru.touch(key),
    page: (prefix, after, limit) => index.page(prefix, after, limit),
    async check(entry, pace) {
      let handle: fs.FileHandle;
      try {
        handle = await fs.open(blobs.blobPath(entry.blob), "r");
      } catch {
        return { ok: false, bytes: 0, problem: "orphan", detail: "its file is gone" };
      }
      try {
        const count = blockCount(entry.storedSize, entry.blockBytes);
        if (entry.blockCrcs.length !== count * 4) return { ok: false, bytes: 0, problem: "corrupt", detail: "its block list does not match its size" };
        const buf = Buffer.allocUnsafe(Math.min(entry.blockBytes, Math.max(entry.storedSize, 1)));
        let whole = 0;
        let read = 0;
        for (let i = 0; i < count; i++) {
          const length = Math.min(entry.blockBytes, entry.storedSize - i * entry.blockBytes);
          const bytesRead = await readAt(handle.fd, buf, length, i * entry.blockBytes);
          read += bytesRead;
          const block = buf.subarray(0, bytesRead);
          if (bytesRead !== length) return { ok: false, bytes: read, problem: "corrupt", detail: `block ${i + 1} of ${count} is short (${bytesRead} of ${length} bytes)` };
          if (crc32c(block) !== crcAt(entry.blockCrcs, i)) return { ok: false, bytes: read, problem: "corrupt", detail: `block ${i + 1} of ${count} fails its CRC32C` };
          whole = crc32c(block, whole);
          await pace?.(bytesRead);
        }
        const { size } = await handle.stat();
        if (size !== entry.storedSize) return { ok: false, bytes: read, problem: "corrupt", detail: `its file holds ${size} bytes, not ${entry.storedSize}` };
        if (whole !== entry.storedCrc32c) return { ok: false, bytes: read, problem: "corrupt", detail: "the copy fails its CRC32C" };
        return { ok: true, bytes: read };
      } finally {
        await handle.close().catch(() => undefined);
      }
    },
    orphanFiles: (graceMs) => blobs.unreferenced((id) => index.blobReferenced(id), graceMs),
    async removeOrphanFile(id) {
      if (index.blobReferenced(id)) return false;
      await blobs.dropBlob(id);
      return true;
    },
    stats: () => ({ entries: lru.entries, bytes: lru.bytes }),
    async close() {
      clearInterval(timer);
      flushTouched();
      index.close();
    },
  };
}

export type { WrittenBlocks };
