/**
 * The disk cache of GCS objects: a Backend over the raw GCS tier (stored
 * bytes, so encrypted objects stay encrypted on disk) that keeps copies of
 * what is read through it, and, with `onWrite`, of what is written through
 * it, in the local storage folder (disk-store.ts).
 *
 * - get with nothing cached: one GCS get, its bytes written to the cache
 *   as they are read (fill.ts); readers arriving meanwhile share that fetch.
 *   A ranged get of an object not cached reads GCS and fills nothing.
 * - get with a copy (or a fill) cached: one metadata request to GCS (none
 *   when the caller passes the record of a head it just made, as the
 *   codec's ranged reads do); the copy is served only when its generation
 *   is still GCS's, whole or any range of it, from disk. A stale copy is
 *   dropped and the object fetched again; a deleted one is dropped.
 * - Every block is checked against its CRC32C before it is served. A bad
 *   block drops the copy, the rest of the bytes come from GCS (pinned to
 *   the copy's generation), and the copy is fetched again in the background
 *   (a repair).
 * - head asks GCS and drops a copy GCS no longer holds.
 * - put and delete go to GCS; the key's copy is dropped (and fills of it
 *   are not kept), so a later read during an outage never serves a version
 *   older than one this daemon wrote. With `onWrite` the written bytes are
 *   kept as the new copy once GCS committed them.
 * - `offline` is the view the chain reads while GCS is unavailable: cached
 *   copies as they are (no GCS to ask), their records marked `cachedCopy`
 *   with tier "local"; it also lists them, for partial listings.
 * Copies of expired objects are never kept. Layers below are never told.
 */
import { Readable } from "node:stream";
import { checkRange, type Backend, type GetOptions, type ListOptions, type ObjectRecord } from "../../backends/backend.js";
import type { FsBackend } from "../../backends/fs/fs-backend.js";
import { listPage } from "../../backends/fs/listing.js";
import { bindSignal, sleep, throwIfAborted, untilAborted } from "../../signals.js";
import { Code, StorageError, dataLoss, generationMismatch, unavailable } from "../../storage-error.js";
import { recordFromJson } from "../cache-store.js";
import type { BlockReadOptions } from "./block-reader.js";
import { openDiskStore, type DiskStore } from "./disk-store.js";
import type { CacheEntry } from "./entry-index.js";
import type { Fill } from "./fill.js";
import { WriteTee } from "./write-tee.js";

/** How long close() waits for fills it stopped to remove their files. */
const CLOSE_WAIT_MS = 2000;
/**
 * Objects up to this many stored bytes are answered from memory as GCS sends
 * them and copied to disk afterwards: their read waits for no file, rename or
 * index write (which made a first read of a 16 KiB object 2.3x slower than no
 * disk cache, bench/gcs.bench.ts).
 */
const SMALL_COPY_BYTES = 256 * 1024;
/**
 * Copies of small objects being written after their answer, at most: each
 * holds its bytes until written, so past this a small object takes the
 * ordinary fill (its reader waits for the copy), and memory stays bounded by
 * the calls in flight however fast reads arrive.
 */
const MAX_BACKGROUND_COPIES = 32;

export interface DiskCacheEvents {
  /** A get answered from disk (a copy, or a fill another reader started). */
  onHit?: () => void;
  /** A get that had to read GCS. */
  onMiss?: () => void;
  onEvicted?: () => void;
  /** A copy failed its check on a read. */
  onCorrupt?: (key: string) => void;
  /** A bad copy was replaced by a good one from GCS. */
  onRepaired?: (key: string) => void;
}

export interface DiskCacheOptions {
  /** The local tier whose folder and database hold the cache. */
  local: FsBackend;
  /** DISK_CACHE_MAX_MB in bytes. */
  maxBytes: number;
  /** DISK_CACHE_MIN_FREE_MB in bytes. */
  minFreeBytes: number;
  /** DISK_CACHE_ON_WRITE: also keep what is written through the daemon. */
  onWrite?: boolean;
  events?: DiskCacheEvents;
}

export interface DiskCacheStats {
  entries: number;
  bytes: number;
  hits: number;
  misses: number;
  evictions: number;
}

export type DiskCacheBackend = Backend & {
  /** Cached copies as they are, for reads and listings while GCS is unavailable. */
  readonly offline: Backend;
  /** The store, for Verify and the scrubber. */
  readonly store: DiskStore;
  /** Drops the copy of `key` and keeps no fill of it (a change made below this layer, e.g. by the replicator). */
  forget(key: string): Promise<void>;
  /** Fetches `key` from GCS into the cache again (a repair); true once a new copy is in place. */
  refetch(key: string): Promise<boolean>;
  cacheStats(): DiskCacheStats;
};

/** Opens the store (loading what an earlier run cached) and wraps `inner` (the raw GCS tier) with it. */
export async function createDiskCacheBackend(inner: Backend, opts: DiskCacheOptions): Promise<DiskCacheBackend> {
  const events = opts.events ?? {};
  let evictions = 0;
  const store = await openDiskStore({
    local: opts.local,
    maxBytes: opts.maxBytes,
    minFreeBytes: opts.minFreeBytes,
    onEvicted: () => {
      evictions++;
      events.onEvicted?.();
    },
  });
  const fills = new Map<string, Fill>();
  let hits = 0;
  let misses = 0;
  let closed = false;
  const hit = () => {
    hits++;
    events.onHit?.();
  };
  const miss = () => {
    misses++;
    events.onMiss?.();
  };

  /** The range [start, end) of a copy of `size` stored bytes; OUT_OF_RANGE past its end. */
  function bounds(key: string, size: number, range: GetOptions["range"]): { start: number; end: number } {
    const start = range?.offset ?? 0;
    if (start > size) throw new StorageError(Code.OutOfRange, `offset ${start} is past the end of key "${key}" (${size} bytes)`);
    return { start, end: range?.length === undefined ? size : Math.min(size, start + range.length) };
  }

  const keepable = (record: ObjectRecord) => !record.deleted && (record.expiresAt === undefined || record.expiresAt > Date.now());

  /** What a reader does with a bad block while GCS is up: drop the copy, take the rest from GCS, fetch it again. */
  const onBadOnline =
    (key: string, generation: bigint, end: number, signal: AbortSignal | undefined, blob?: string): BlockReadOptions["onBad"] =>
    async (_index, offset, _why, cause) => {
      if (cause === "corrupt") {
        events.onCorrupt?.(key);
        if (blob !== undefined) await store.drop(key, blob);
        const fill = fills.get(key);
        if (fill && fill.generation === generation) fill.cancelled = true;
        void refetch(key).catch(() => false);
      }
      try {
        const rest = await inner.get(key, { range: { offset, length: end - offset }, ifGenerationMatch: generation, signal });
        return rest?.body;
      } catch {
        return undefined;
      }
    };

  /** A fill of `key` still taking readers. */
  const liveFill = (key: string): Fill | undefined => {
    const fill = fills.get(key);
    return fill?.running ? fill : undefined;
  };

  /** Registers `fill` as the one of its key until it settles. */
  function track(fill: Fill): void {
    fills.set(fill.key, fill);
    void fill.settled.then(() => {
      if (fills.get(fill.key) === fill) fills.delete(fill.key);
    });
  }

  /** Small objects' copies being written after their answer (MAX_BACKGROUND_COPIES). */
  let backgroundCopies = 0;

  /** Fetches of a key not cached that have not answered yet: readers arriving meanwhile wait for them. */
  const starting = new Map<string, Promise<Fill | undefined>>();

  /**
   * One GCS get of the whole object; when its copy may be kept, a fill
   * takes its bytes (readers read them from the fill). Otherwise its body
   * as it is.
   */
  async function startFetch(key: string, ifGenerationMatch: bigint | undefined, signal: AbortSignal): Promise<{ record: ObjectRecord; fill?: Fill; body?: Readable } | undefined> {
    const got = await inner.get(key, { ifGenerationMatch, signal });
    if (got === undefined) return undefined;
    const { record } = got;
    if (closed || !keepable(record) || liveFill(key) !== undefined) return got;
    if (record.storedSize <= SMALL_COPY_BYTES && backgroundCopies < MAX_BACKGROUND_COPIES) {
      const bytes = await readSmall(key, got.body, record.storedSize);
      backgroundCopies++;
      void keepCopy(key, record, bytes)
        .catch(() => undefined)
        .finally(() => backgroundCopies--);
      return { record, body: Readable.from([bytes], { objectMode: false }) };
    }
    const claim = await store.makeRoom(record.storedSize);
    if (claim === undefined) return got;
    let fill: Fill;
    try {
      fill = await store.fill(key, record, got.body, claim);
    } catch {
      // The body went with the failed start; read it again, uncached.
      return inner.get(key, { ifGenerationMatch, signal });
    }
    track(fill);
    return { record, fill };
  }

  /** The whole body of a small object; DATA_LOSS when GCS sends more or fewer than its `size` stored bytes. */
  async function readSmall(key: string, body: Readable, size: number): Promise<Buffer> {
    const chunks: Buffer[] = [];
    let length = 0;
    for await (const chunk of body as AsyncIterable<Buffer>) {
      length += chunk.length;
      if (length > size) break;
      chunks.push(chunk);
    }
    if (length !== size) {
      body.destroy();
      throw dataLoss(`GCS sent ${length > size ? "more than" : length} bytes of "${key}", recorded as ${size}`);
    }
    return Buffer.concat(chunks, length);
  }

  /** Copies a small object already read to disk (a fill with nobody waiting on it). */
  async function keepCopy(key: string, record: ObjectRecord, bytes: Buffer): Promise<void> {
    if (closed || liveFill(key) !== undefined) return;
    const claim = await store.makeRoom(bytes.length);
    if (claim === undefined) return;
    const fill = await store.fill(key, record, Readable.from([bytes], { objectMode: false }), claim, { keep: true });
    track(fill);
    await fill.settled;
  }

  /** A get of an object not cached: it starts a fetch that other readers may share. */
  async function fetch(key: string, getOpts: GetOptions): Promise<{ record: ObjectRecord; body: Readable } | undefined> {
    // The fetch outlives this reader when others attach: its own signal, tied to this reader's only while it starts.
    const ac = new AbortController();
    const onAbort = () => ac.abort(getOpts.signal?.reason);
    getOpts.signal?.addEventListener("abort", onAbort, { once: true });
    const started = startFetch(key, getOpts.ifGenerationMatch, ac.signal);
    const shared = started.then(
      (s) => s?.fill,
      () => undefined,
    );
    starting.set(key, shared);
    let result: Awaited<typeof started>;
    try {
      result = await started;
    } finally {
      getOpts.signal?.removeEventListener("abort", onAbort);
      if (starting.get(key) === shared) starting.delete(key);
    }
    if (result === undefined) return undefined;
    const { record, fill } = result;
    if (fill === undefined) return { record, body: bindSignal(result.body!, getOpts.signal) };
    return { record, body: fill.reader({ start: 0, end: record.storedSize }, onBadOnline(key, record.generation, record.storedSize, getOpts.signal), getOpts.signal) };
  }

  async function refetch(key: string): Promise<boolean> {
    if (closed || liveFill(key) !== undefined) return false;
    const got = await inner.get(key);
    if (got === undefined || !keepable(got.record)) {
      got?.body.destroy();
      await store.drop(key);
      return false;
    }
    const claim = await store.makeRoom(got.record.storedSize);
    if (claim === undefined) {
      got.body.destroy();
      return false;
    }
    const fill = await store.fill(key, got.record, got.body, claim, { keep: true });
    track(fill);
    const published = await fill.settled;
    if (published) events.onRepaired?.(key);
    return published;
  }

  async function forget(key: string): Promise<void> {
    const fill = fills.get(key);
    if (fill) fill.cancelled = true;
    await store.drop(key);
  }

  async function get(key: string, getOpts: GetOptions = {}) {
    const { range, ifGenerationMatch, signal, confirmed } = getOpts;
    throwIfAborted(signal);
    if (range) checkRange(range);
    const pending = starting.get(key);
    if (pending !== undefined) {
      // A fetch of this key started before this read and answers after it: sharing its bytes is reading GCS now.
      const shared = await untilAborted(pending, signal);
      if (shared?.running && !shared.cancelled && (ifGenerationMatch === undefined || ifGenerationMatch === shared.generation)) {
        const { start, end } = bounds(key, shared.record.storedSize, range);
        hit();
        return { record: shared.record, body: shared.reader({ start, end }, onBadOnline(key, shared.generation, end, signal), signal) };
      }
    }
    const entry = store.lookup(key);
    const fill = liveFill(key);
    if (entry === undefined && fill === undefined) {
      miss();
      return range ? inner.get(key, getOpts) : fetch(key, getOpts);
    }
    // Something is here: serve it only while it is still GCS's.
    const current =
      confirmed !== undefined && ifGenerationMatch !== undefined && confirmed.generation === ifGenerationMatch
        ? confirmed
        : await inner.head(key, { signal });
    if (current === undefined) {
      if (entry) await store.drop(key, entry.blob);
      return undefined;
    }
    if (ifGenerationMatch !== undefined && current.generation !== ifGenerationMatch) throw generationMismatch(key, ifGenerationMatch, current.generation);
    const { start, end } = bounds(key, current.storedSize, range);
    if (entry !== undefined) {
      if (entry.generation === current.generation && entry.storedSize === current.storedSize) {
        const body = await store.open(entry, { start, end }, onBadOnline(key, entry.generation, end, signal, entry.blob));
        if (body) {
          hit();
          return { record: current, body: bindSignal(body, signal) };
        }
      } else {
        await store.drop(key, entry.blob);
      }
    }
    if (fill !== undefined && fill.generation === current.generation && !fill.cancelled) {
      hit();
      return { record: current, body: fill.reader({ start, end }, onBadOnline(key, fill.generation, end, signal), signal) };
    }
    miss();
    return range ? inner.get(key, getOpts) : fetch(key, { ...getOpts, confirmed: undefined });
  }

  /** The record of a cached copy as served while GCS is unavailable. */
  const offlineRecord = (entry: CacheEntry): ObjectRecord => ({ ...entry.record, tier: "local", pendingReplication: false, cachedCopy: true });

  const offline: Backend = {
    name: "disk-cache(offline)",
    async get(key, getOpts = {}) {
      throwIfAborted(getOpts.signal);
      if (getOpts.range) checkRange(getOpts.range);
      const entry = store.lookup(key);
      if (entry === undefined) return undefined;
      if (getOpts.ifGenerationMatch !== undefined && getOpts.ifGenerationMatch !== entry.generation) {
        throw generationMismatch(key, getOpts.ifGenerationMatch, entry.generation);
      }
      const range = bounds(key, entry.storedSize, getOpts.range);
      const body = await store.open(entry, range, async (_i, _offset, _why, cause) => {
        // No GCS to take the rest from: the read fails DATA_LOSS, and the bad copy goes.
        if (cause === "corrupt") {
          events.onCorrupt?.(key);
          await store.drop(key, entry.blob);
        }
        return undefined;
      });
      if (body === undefined) return undefined;
      hit();
      return { record: offlineRecord(entry), body: bindSignal(body, getOpts.signal) };
    },
    async head(key, headOpts) {
      throwIfAborted(headOpts?.signal);
      const entry = store.lookup(key);
      return entry && offlineRecord(entry);
    },
    async list(listOpts: ListOptions) {
      throwIfAborted(listOpts.signal);
      return listPage<{ key: string; generation: bigint; record: string }>(store.index.scanFor, listOpts, (row) => ({
        ...recordFromJson(row.record),
        tier: "local",
        pendingReplication: false,
        cachedCopy: true,
      }));
    },
    put: () => Promise.reject(unavailable("the disk cache cannot take writes")),
    delete: () => Promise.reject(unavailable("the disk cache cannot take deletes")),
    probe: () => Promise.reject(unavailable("the disk cache is not a tier")),
    close: async () => undefined,
  };

  return {
    name: `disk-cache(${inner.name})`,
    offline,
    store,
    forget,
    refetch,
    get,

    async head(key, headOpts) {
      const current = await inner.head(key, headOpts);
      const entry = store.lookup(key);
      if (entry !== undefined && (current === undefined || current.deleted || current.generation !== entry.generation)) {
        await store.drop(key, entry.blob);
      }
      return current;
    },

    async put(key, source, meta, putOpts) {
      const tee = opts.onWrite && !closed ? new WriteTee(store.host) : undefined;
      let record: ObjectRecord;
      try {
        record = await inner.put(key, tee ? tee.wrap(source) : source, meta, putOpts);
      } catch (err) {
        await tee?.discard();
        // The write may have committed: no copy of this key may stay.
        await forget(key);
        throw err;
      }
      await forget(key);
      if (tee) {
        if (keepable(record)) await tee.keep(key, record);
        else await tee.discard();
      }
      return record;
    },

    async delete(key, delOpts) {
      try {
        return await inner.delete(key, delOpts);
      } finally {
        await forget(key);
      }
    },

    list: (listOpts) => inner.list(listOpts),
    probe: (signal) => inner.probe(signal),

    cacheStats: () => ({ ...store.stats(), hits, misses, evictions }),

    async close() {
      closed = true;
      // Readers of fills still running take the rest from GCS; nothing is kept after the store closes.
      const running = [...fills.values()];
      for (const fill of running) fill.stop();
      const waited = new AbortController();
      await Promise.race([Promise.all(running.map((f) => f.settled)), sleep(CLOSE_WAIT_MS, waited.signal)]);
      waited.abort();
      await store.close();
      await inner.close();
    },
  };
}
