/** The one-line summaries the admin commands print on stdout (usage, flush, verify). */
import type { FlushProgress, Usage, VerifyFindingEvent, VerifySummaryEvent } from "../../client/src/index.js";
import { humanSize } from "./list-format.js";

const MiB = 1024 * 1024;

/** The one line `usage` prints: the count and both sizes, human and exact. */
export function usageSummary(prefix: string, u: Usage): string {
  const where = prefix === "" ? "every key" : prefix;
  return (
    `${where}: ${u.objectCount} object${u.objectCount === 1 ? "" : "s"}, ` +
    `${humanSize(u.totalBytes)} (${u.totalBytes} bytes), stored ${humanSize(u.storedBytes)} (${u.storedBytes} bytes)`
  );
}

/** The one line `flush` prints when it is done (the bar shows the rest on a terminal). */
export function flushSummary(p: FlushProgress): string {
  const writes = `${p.replicated} write${p.replicated === 1 ? "" : "s"}`;
  return `flush done: ${writes} replicated to GCS, ${p.failed} failed attempt${p.failed === 1 ? "" : "s"} retried, ${p.pending} pending`;
}

/** `corrupt disk-cache "models/a.bin" generation 17: block 3 of 8 fails its CRC32C (repaired: re-fetched from GCS)` */
export function findingLine(f: VerifyFindingEvent): string {
  const what = f.key === "" ? `${f.problem} ${f.tier}` : `${f.problem} ${f.tier} ${JSON.stringify(f.key)} generation ${f.generation}`;
  const outcome = f.repaired ? ` (repaired: ${f.repair})` : f.repair ? ` (${f.repair})` : "";
  return `${what}: ${f.detail}${outcome}\n`;
}

/** The last line of `verify`. */
export function verifySummary(s: VerifySummaryEvent): string {
  return (
    `checked ${s.checkedCopies} copies (${(s.checkedBytes / MiB).toFixed(1)} MiB) in ${s.seconds.toFixed(1)} s: ` +
    `${s.corrupt} corrupt, ${s.orphans} orphaned, ${s.unchecked} unchecked, ${s.repaired} repaired\n`
  );
}
