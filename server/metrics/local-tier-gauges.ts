/**
 * Gauges of what the local tier holds and the room its disk has left, read at
 * scrape time: objects and bytes from the index's running totals (kept by
 * triggers, so no scan), free bytes of the storage folder's file system and
 * the reserve below which it refuses writes (LOCAL_MIN_FREE_BYTES), so an
 * alert can compare the two. One read serves every gauge of a scrape.
 */
import { Gauge, type Registry } from "prom-client";

export interface LocalTierHoldings {
  objects: number;
  bytes: number;
  storedBytes: number;
  freeBytes: number;
  minFreeBytes: number;
}

export function registerLocalTierGauges(registry: Registry, read: () => Promise<LocalTierHoldings>): void {
  let pending: Promise<LocalTierHoldings> | undefined;
  // The gauges of one scrape collect together: share one read, then forget it.
  const holdings = () =>
    (pending ??= read().finally(() => {
      setImmediate(() => (pending = undefined));
    }));
  const gauge = (name: string, help: string, pick: (h: LocalTierHoldings) => number) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      async collect() {
        this.set(pick(await holdings()));
      },
    });
  gauge("fs_local_objects", "Objects the local tier holds (pending copies and expired ones not yet swept included)", (h) => h.objects);
  gauge("fs_local_bytes", "Original bytes of the objects the local tier holds", (h) => h.bytes);
  gauge("fs_local_stored_bytes", "Bytes at rest of the objects the local tier holds (after compression and encryption)", (h) => h.storedBytes);
  gauge("fs_local_free_bytes", "Free bytes of the file system under LOCAL_STORAGE_PATH", (h) => h.freeBytes);
  gauge("fs_local_min_free_bytes", "LOCAL_MIN_FREE_BYTES: below this much free space the local tier refuses writes", (h) => h.minFreeBytes);
}
