/**
 * Listing the local tier: pages in UTF-8 byte order by SQL range scans on the
 * key index (never LIKE, whose wildcards and case folding do not fit).
 */
import type { ListOptions, ListPage, ObjectRecord } from "../backend.js";
import { compareKeys } from "../backend.js";
import { invalidArgument } from "../../storage-error.js";
import type { ObjectRow, ScanFor } from "./index-db.js";
import { successor } from "./key-range.js";

/**
 * One page of a listing, by SQL range scans on the key index (never LIKE, whose
 * wildcards and case folding do not fit). With a delimiter, keys under a
 * rolled-up prefix P are skipped with one jump to the first key after P.
 * `scanFor`'s statements take @from, @upper and @batch and return rows with a
 * `key` (the objects table's by default; the disk cache lists its own table).
 */
export function listPage<Row extends { key: string } = ObjectRow>(scanFor: ScanFor, opts: ListOptions, toRecord: (row: Row) => ObjectRecord): ListPage {
  const prefix = opts.prefix ?? "";
  const { limit, delimiter, startAfter } = opts;
  if (!Number.isSafeInteger(limit) || limit < 1) throw invalidArgument("list limit must be a positive integer");
  if (delimiter === "") throw invalidArgument("list delimiter must not be empty");
  const upper = prefix === "" ? undefined : successor(prefix);
  const objects: ObjectRecord[] = [];
  const prefixes: string[] = [];
  const full = () => objects.length + prefixes.length >= limit;
  // The scan position: keys after `from`, or from `from` on when inclusive.
  let from = prefix;
  let inclusive = true;
  if (startAfter !== undefined && compareKeys(startAfter, prefix) >= 0) {
    from = startAfter;
    inclusive = false;
  }
  const scan = (batch: number) =>
    scanFor(inclusive, upper !== undefined).all({ from, upper: upper ?? null, batch }) as Row[];
  let last: string | undefined;
  let end = false;
  while (!end && !full()) {
    const batch = Math.min(limit - objects.length - prefixes.length + 1, 1000);
    const rows = scan(batch);
    end = rows.length < batch;
    for (const row of rows) {
      const cut = delimiter === undefined ? -1 : row.key.indexOf(delimiter, prefix.length);
      if (cut < 0) {
        objects.push(toRecord(row));
        last = from = row.key;
        inclusive = false;
        if (full()) break;
        continue;
      }
      const rolled = row.key.slice(0, cut + delimiter!.length);
      // A prefix at or before startAfter was on an earlier page; its keys are skipped all the same.
      if (startAfter === undefined || compareKeys(rolled, startAfter) > 0) {
        prefixes.push(rolled);
        last = rolled;
      }
      const next = successor(rolled);
      if (next === undefined) {
        end = true;
      } else {
        from = next;
        inclusive = true;
        end = false; // the rows after the jump are not read yet
      }
      break;
    }
  }
  if (end || last === undefined) return { objects, prefixes };
  // A full page: name `next` only when something follows.
  return scan(1).length > 0 ? { objects, prefixes, next: last } : { objects, prefixes };
}
