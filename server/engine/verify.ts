/**
 * Verify: re-reads stored copies and checks them, as a stream of events
 * (progress now and then, one finding per bad copy, a summary last) for the
 * Verify RPC and the scrubber alike.
 *
 * What is checked, in this order, under a key prefix:
 * - the local tier: every row's stored bytes against the size and CRC32C it
 *   records (a row whose blob file is gone is corrupt); with the empty
 *   prefix, blob files no row names (orphans);
 * - the disk cache: every entry's blocks against their CRC32Cs, and its
 *   whole size and CRC32C (an entry whose file is gone is an orphan); with
 *   the empty prefix, files no entry names;
 * - GCS, when asked (a full read of every object under the prefix): each
 *   object read back through the codec (original size and CRC32C; an
 *   encrypted one also authenticated; one whose key this daemon lacks is
 *   "unchecked").
 * With `repair`: a bad pending local copy whose write GCS holds intact is
 * retired; a bad disk-cache copy is dropped and fetched again from GCS; a
 * bad GCS copy of a pending write whose local copy is intact is re-copied;
 * orphans are removed. Objects written while a pass runs may or may not be
 * seen; a copy replaced while it is checked is not judged.
 */
import { crc32c } from "@node-rs/crc32";
import type { Backend } from "../backends/backend.js";
import type { FsBackend } from "../backends/fs/fs-backend.js";
import type { DiskCacheBackend } from "../cache/disk/disk-cache-backend.js";
import { throwIfAborted } from "../signals.js";
import { Code, StorageError, failedPrecondition } from "../storage-error.js";
import type { IntegrityTier, Repairs } from "./repair.js";

export type { IntegrityTier } from "./repair.js";

export type IntegrityProblem = "corrupt" | "orphan" | "unchecked";

export interface VerifyFinding {
  tier: IntegrityTier;
  /** "" for orphaned bytes. */
  key: string;
  /** 0n for orphaned bytes. */
  generation: bigint;
  problem: IntegrityProblem;
  /** What failed; never a path. */
  detail: string;
  repaired: boolean;
  /** How it was repaired (or what was tried); "" when nothing was done. */
  repair: string;
}

export interface VerifyProgress {
  tier: IntegrityTier;
  checkedCopies: number;
  checkedBytes: number;
  totalCopies: number;
  totalBytes: number;
}

export interface VerifySummary {
  checkedCopies: number;
  checkedBytes: number;
  corrupt: number;
  orphans: number;
  unchecked: number;
  repaired: number;
  seconds: number;
}

export type VerifyEvent =
  | { type: "progress"; progress: VerifyProgress }
  | { type: "finding"; finding: VerifyFinding }
  | { type: "summary"; summary: VerifySummary };

export interface VerifyOptions {
  prefix: string;
  includeGcs: boolean;
  repair: boolean;
  signal?: AbortSignal;
  /** Awaited after each chunk read with its size (the scrubber's rate). */
  pace?: (bytes: number) => Promise<void>;
  /** At most one progress event per this many ms (default 250). */
  progressEveryMs?: number;
}

export interface VerifySources {
  local: FsBackend;
  diskCache?: DiskCacheBackend;
  /** GCS raw, for listing it; with Repairs for reading it back and repairing. */
  gcs?: { raw: Backend; available: () => boolean };
  repairs?: Repairs;
  /** Orphaned files younger than this are not judged (a put between publishing its file and committing its row). */
  orphanGraceMs: number;
}

const PAGE = 500;

/** Runs one verification; the generator ends after its summary. Cancelled by `opts.signal`. */
export async function* verifyCopies(src: VerifySources, opts: VerifyOptions): AsyncGenerator<VerifyEvent> {
  const started = performance.now();
  const { prefix, signal } = opts;
  if (opts.includeGcs && !src.gcs) {
    throw failedPrecondition("this daemon has no GCS tier (GCS_BUCKET_NAME is unset): include_gcs has nothing to check");
  }
  const every = opts.progressEveryMs ?? 250;
  const summary: VerifySummary = { checkedCopies: 0, checkedBytes: 0, corrupt: 0, orphans: 0, unchecked: 0, repaired: 0, seconds: 0 };
  const localCount = src.local.count(prefix);
  const cacheCount = src.diskCache?.store.index.count(prefix) ?? { entries: 0, storedBytes: 0 };
  let totalCopies = localCount.objects + cacheCount.entries;
  let totalBytes = localCount.storedBytes + cacheCount.storedBytes;
  let lastProgress = 0;
  let tier: IntegrityTier = "local";
  const progress = (force = false): VerifyEvent | undefined => {
    const now = performance.now();
    if (!force && now - lastProgress < every) return undefined;
    lastProgress = now;
    return {
      type: "progress",
      progress: { tier, checkedCopies: summary.checkedCopies, checkedBytes: summary.checkedBytes, totalCopies: Math.max(totalCopies, summary.checkedCopies), totalBytes: Math.max(totalBytes, summary.checkedBytes) },
    };
  };
  const found = (finding: VerifyFinding): VerifyEvent => {
    if (finding.problem === "corrupt") summary.corrupt++;
    else if (finding.problem === "orphan") summary.orphans++;
    else summary.unchecked++;
    if (finding.repaired) summary.repaired++;
    return { type: "finding", finding };
  };
  const counted = async (bytes: number) => {
    summary.checkedBytes += bytes;
    await opts.pace?.(bytes);
  };
  const repairs = opts.repair ? src.repairs : undefined;
  const gcsUp = () => src.gcs?.available() ?? false;

  yield progress(true)!;

  // The local tier.
  for (let after: string | undefined; ; ) {
    const page = await src.local.list({ prefix, startAfter: after, limit: PAGE, signal });
    for (const record of page.objects) {
      throwIfAborted(signal);
      const copy = await src.local.readStored(record.key);
      if (copy === undefined) continue;
      summary.checkedCopies++;
      const bad = copy.missing ? "its blob file is gone" : await checkStream(copy.body, copy.expected, counted);
      if (bad !== undefined) {
        let repaired = false;
        let repair = "";
        if (repairs && copy.record.pendingReplication && gcsUp()) {
          repaired = await repairs.retirePendingCopy(record.key).catch(() => false);
          repair = repaired ? "dropped: GCS holds the same write intact and serves it" : "";
        }
        yield found({ tier: "local", key: record.key, generation: copy.record.generation, problem: "corrupt", detail: bad, repaired, repair });
      }
      const p = progress();
      if (p) yield p;
    }
    if (page.next === undefined) break;
    after = page.next;
  }
  if (prefix === "") {
    for (const id of await src.local.orphanBlobs(src.orphanGraceMs)) {
      const repaired = opts.repair ? await src.local.removeOrphanBlob(id).catch(() => false) : false;
      yield found({ tier: "local", key: "", generation: 0n, problem: "orphan", detail: `blob file ${id} is named by no object`, repaired, repair: repaired ? "removed" : "" });
    }
  }

  // The disk cache.
  const cache = src.diskCache;
  if (cache) {
    tier = "disk_cache";
    yield progress(true)!;
    for (let after: string | undefined; ; ) {
      const entries = cache.store.page(prefix, after, PAGE);
      if (entries.length === 0) break;
      for (const entry of entries) {
        throwIfAborted(signal);
        summary.checkedCopies++;
        const check = await cache.store.check(entry, counted);
        if (!check.ok) {
          let repaired = false;
          let repair = "";
          if (opts.repair) {
            await cache.store.drop(entry.key, entry.blob);
            if (check.problem === "orphan") {
              repaired = true;
              repair = "entry removed";
            } else if (gcsUp()) {
              repaired = await cache.refetch(entry.key).catch(() => false);
              repair = repaired ? "re-fetched from GCS" : "dropped";
            } else {
              repair = "dropped (GCS is unavailable to fetch it again)";
            }
          }
          yield found({ tier: "disk_cache", key: entry.key, generation: entry.generation, problem: check.problem, detail: check.detail, repaired, repair });
        }
        const p = progress();
        if (p) yield p;
      }
      after = entries[entries.length - 1]!.key;
    }
    if (prefix === "") {
      for (const id of await cache.store.orphanFiles(src.orphanGraceMs)) {
        const repaired = opts.repair ? await cache.store.removeOrphanFile(id).catch(() => false) : false;
        yield found({ tier: "disk_cache", key: "", generation: 0n, problem: "orphan", detail: `cache file ${id} is named by no entry`, repaired, repair: repaired ? "removed" : "" });
      }
    }
  }

  // GCS, read back whole through the codec.
  if (opts.includeGcs && src.gcs && src.repairs) {
    tier = "gcs";
    yield progress(true)!;
    if (!gcsUp()) throw new StorageError(Code.Unavailable, "GCS is unavailable: its copies cannot be verified now (the local tier and the disk cache were)");
    for (let after: string | undefined; ; ) {
      const page = await src.gcs.raw.list({ prefix, startAfter: after, limit: PAGE, signal });
      for (const record of page.objects) {
        totalCopies++;
        totalBytes += record.storedSize;
      }
      for (const record of page.objects) {
        throwIfAborted(signal);
        summary.checkedCopies++;
        let intact: boolean;
        try {
          intact = await src.repairs.gcsCopyIntact(record.key, record.generation, { signal, pace: counted });
        } catch (err) {
          if (!StorageError.is(err, Code.FailedPrecondition)) throw err;
          yield found({ tier: "gcs", key: record.key, generation: record.generation, problem: "unchecked", detail: err.message, repaired: false, repair: "" });
          continue;
        }
        if (!intact) {
          const now = await src.gcs.raw.head(record.key, { signal });
          // Replaced or deleted while it was read: not the copy that was checked.
          if (now === undefined || now.generation !== record.generation) continue;
          const repaired = repairs ? await repairs.recopyToGcs(record.key).catch(() => false) : false;
          yield found({
            tier: "gcs",
            key: record.key,
            generation: record.generation,
            problem: "corrupt",
            detail: "it fails its checksum when read back",
            repaired,
            repair: repaired ? "re-copied from the local tier's intact copy of the same write" : "",
          });
        }
        const p = progress();
        if (p) yield p;
      }
      if (page.next === undefined) break;
      after = page.next;
    }
  }

  yield progress(true)!;
  summary.seconds = (performance.now() - started) / 1000;
  yield { type: "summary", summary };
}

/** Reads `body` whole; undefined when it has `expected`'s size and CRC32C, else what was wrong. */
async function checkStream(body: AsyncIterable<Uint8Array>, expected: { size: number; crc32c: number }, counted: (bytes: number) => Promise<void>): Promise<string | undefined> {
  let size = 0;
  let crc = 0;
  try {
    for await (const chunk of body) {
      size += chunk.length;
      crc = crc32c(chunk, crc);
      await counted(chunk.length);
    }
  } catch (err) {
    if (StorageError.is(err)) throw err;
    throw new StorageError(Code.Unavailable, "local storage failed while verifying", { cause: err });
  }
  if (size !== expected.size) return `it holds ${size} bytes, its record says ${expected.size}`;
  if (crc !== expected.crc32c >>> 0) return "its bytes fail their CRC32C";
  return undefined;
}
