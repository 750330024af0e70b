/**
 * The disk cache's start-up load (bazel-remote's load.go in spirit): every
 * row of the index enters the LRU in its last-access order; a row whose
 * file is gone is dropped; files no row names (fills a crash interrupted,
 * unlinks that failed) are removed; then entries are evicted, least
 * recently used first, until the bound holds (it may have been lowered).
 * Runs once, under the storage folder's lock, before the daemon serves.
 */
import * as fs from "node:fs/promises";
import type { BlobFiles } from "../../backends/fs/blob-files.js";
import type { EntryIndex } from "./entry-index.js";
import type { ByteLru } from "./lru.js";

export interface LoadResult {
  entries: number;
  /** Rows dropped because their file was gone. */
  missing: number;
  /** Files removed because no row named them (tmp/ leftovers included). */
  orphans: number;
  /** Entries evicted to fit the bound. */
  evicted: number;
}

export async function loadEntries({ index, blobs, lru }: { index: EntryIndex; blobs: BlobFiles; lru: ByteLru }): Promise<LoadResult> {
  const result: LoadResult = { entries: 0, missing: 0, orphans: 0, evicted: 0 };
  const known = new Set<string>();
  for (const row of index.summaries()) {
    const present = await fs.access(blobs.blobPath(row.blob)).then(
      () => true,
      () => false,
    );
    if (!present) {
      index.remove(row.key, row.blob);
      result.missing++;
      continue;
    }
    known.add(row.blob);
    lru.add(row.key, row.storedSize, 0);
  }
  lru.takeTouched();
  // The cache keeps no upload sessions: anything under its uploads/ is a leftover.
  const swept = await blobs.sweepLeftovers({ blob: (id) => known.has(id), upload: () => false });
  result.orphans = swept.tmpFiles + swept.blobs;
  while (lru.bytes > lru.maxBytes) {
    const key = lru.oldest()!;
    const entry = index.get(key);
    lru.remove(key);
    if (entry) {
      index.remove(key, entry.blob);
      await blobs.dropBlob(entry.blob);
    }
    result.evicted++;
  }
  result.entries = lru.entries;
  return result;
}
