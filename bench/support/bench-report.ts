/**
 * Numbers and tables for benchmark output: medians, percentiles, a clock, and
 * a plain-text table whose columns line up (and paste into Markdown).
 */

/** The median of `values` (the mean of the middle two for an even count); NaN when empty. */
export function median(values: number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** The p-th percentile (0..100, nearest rank) of `values`; NaN when empty. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

/** Seconds since `started` (a process.hrtime.bigint() value). */
export function secondsSince(started: bigint): number {
  return Number(process.hrtime.bigint() - started) / 1e9;
}

/** Milliseconds since `started` (a process.hrtime.bigint() value). */
export function msSince(started: bigint): number {
  return Number(process.hrtime.bigint() - started) / 1e6;
}

/** "1.23x", or "-" when either side is missing. */
export function ratio(product: number, baseline: number): string {
  if (!Number.isFinite(product) || !Number.isFinite(baseline) || baseline === 0) return "-";
  return `${(product / baseline).toFixed(2)}x`;
}

/** A number with `digits` decimals, or "-" when it is not finite. */
export function fixed(value: number, digits = 1): string {
  return Number.isFinite(value) ? value.toFixed(digits) : "-";
}

/** Bytes as MiB with no decimals, or "-". */
export function mib(bytes: number | undefined): string {
  return bytes !== undefined && Number.isFinite(bytes) ? `${Math.round(bytes / (1024 * 1024))}` : "-";
}

/** Prints a Markdown table (header, separator, rows) with padded columns. */
export function printTable(headers: string[], rows: string[][]): void {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`;
  console.log(line(headers));
  console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`);
  for (const row of rows) console.log(line(row));
}
