/**
 * The table `filestorage ls --long` prints: a header row, then one row per
 * key or rolled-up prefix, in aligned columns two spaces apart:
 *
 *     SIZE        GENERATION  TIER   PENDING  UPDATED               KEY
 *  1.5 MiB  1733051234567890  gcs    no       2024-12-01T11:47:14Z  models/m.bin
 *      6 B                 3  local  yes      2024-12-01T11:47:15Z  notes/1
 *        -                 -  -      -        -                     reports/
 *
 * SIZE is human (B, KiB, MiB, GiB, TiB; one decimal below 10) or exact bytes
 * with --bytes; PENDING is "yes" while the only copy waits on the local tier
 * for replication to GCS; UPDATED is UTC to the second. Widths are fixed, so
 * every page of a long listing lines up; a wider value pushes its row only.
 */
import type { ObjectInfo } from "../../client/src/index.js";

export interface LongFormat {
  /** Exact byte counts instead of human sizes. */
  bytes: boolean;
}

const UNITS = ["KiB", "MiB", "GiB", "TiB"];

/** "6 B", "1.5 MiB", "12 KiB", "1.0 GiB". */
export function humanSize(n: number): string {
  if (n < 1024) return `${n} B`;
  let value = n;
  let unit = -1;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  let text = value < 10 ? value.toFixed(1) : String(Math.round(value));
  // 1023.6 KiB rounds to 1024: say 1.0 MiB instead.
  if (text === "1024" && unit < UNITS.length - 1) {
    unit++;
    text = "1.0";
  }
  return `${text} ${UNITS[unit]}`;
}

/** One row's cells, left to right. */
function row(cells: [string, string, string, string, string, string], f: LongFormat): string {
  const [size, generation, tier, pending, updated, key] = cells;
  return [size.padStart(f.bytes ? 13 : 8), generation.padStart(16), tier.padEnd(5), pending.padEnd(7), updated.padEnd(20), key].join("  ");
}

export function longHeader(f: LongFormat): string {
  return row(["SIZE", "GENERATION", "TIER", "PENDING", "UPDATED", "KEY"], f);
}

export function longObjectRow(info: ObjectInfo, f: LongFormat): string {
  const updated = info.updatedAt ? info.updatedAt.toISOString().replace(/\.\d{3}Z$/, "Z") : "-";
  const size = f.bytes ? String(info.size) : humanSize(info.size);
  return row([size, String(info.generation), info.backend, info.pendingReplication ? "yes" : "no", updated, info.key], f);
}

export function longPrefixRow(prefix: string, f: LongFormat): string {
  return row(["-", "-", "-", "-", "-", prefix], f);
}
