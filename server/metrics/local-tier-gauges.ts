/**
 * Gauges of what the local tier holds, read at scrape time from the index's
 * running totals (kept by triggers, so no scan). One read serves every gauge
 * of a scrape (a failed read fails the scrape, as a broken index should).
 * Its disk's room: fs_local_disk_* in metrics.ts.
 */
import { Gauge, type Registry } from "prom-client";

export interface LocalTierHoldings {
  objects: number;
  bytes: number;
  storedBytes: number;
}

export function registerLocalTierGauges(registry: Registry, read: () => LocalTierHoldings): void {
  let last: LocalTierHoldings | undefined;
  // The gauges of one scrape collect together: share one read, then forget it.
  const holdings = () => {
    if (last === undefined) {
      last = read();
      setImmediate(() => (last = undefined));
    }
    return last;
  };
  const gauge = (name: string, help: string, pick: (h: LocalTierHoldings) => number) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(pick(holdings()));
      },
    });
  gauge("fs_local_objects", "Objects the local tier holds (pending copies and expired ones not yet swept included)", (h) => h.objects);
  gauge("fs_local_bytes", "Original bytes of the objects the local tier holds", (h) => h.bytes);
  gauge("fs_local_stored_bytes", "Bytes at rest of the objects the local tier holds (after compression and encryption)", (h) => h.storedBytes);
}
