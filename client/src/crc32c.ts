/**
 * CRC32C (Castagnoli), the checksum of upload trailers and download checks.
 *
 * The native "@node-rs/crc32" (~5 GiB/s) is used when it can be loaded from
 * where the client runs; it is not a dependency of the client package, so the
 * fallback is a pure-JS slicing-by-8 table (a few hundred MiB/s). Both give
 * the same numbers; `crc32cJs` is exported so that can be tested.
 */

/** A running CRC32C: `crc = fn(chunk, crc)`, starting from 0 (or omitted). */
export type Crc32cFunction = (data: Uint8Array, previous?: number) => number;

const POLYNOMIAL = 0x82f63b78; // Castagnoli, reflected

// TABLES[k][b] is the CRC of byte b followed by k zero bytes, which lets the
// loop fold eight bytes per step.
const TABLES: Uint32Array[] = buildTables();

function buildTables(): Uint32Array[] {
  const tables = Array.from({ length: 8 }, () => new Uint32Array(256));
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLYNOMIAL : c >>> 1;
    tables[0][n] = c >>> 0;
  }
  for (let n = 0; n < 256; n++) {
    let c = tables[0][n];
    for (let k = 1; k < 8; k++) {
      c = tables[0][c & 0xff] ^ (c >>> 8);
      tables[k][n] = c >>> 0;
    }
  }
  return tables;
}

/** Pure-JS CRC32C; `previous` is the CRC of the bytes before `data`. */
export function crc32cJs(data: Uint8Array, previous = 0): number {
  const [t0, t1, t2, t3, t4, t5, t6, t7] = TABLES;
  let crc = (previous ^ 0xffffffff) >>> 0;
  let i = 0;
  const end8 = data.length - (data.length % 8);
  while (i < end8) {
    const low = crc ^ (data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24));
    crc =
      t7[low & 0xff] ^
      t6[(low >>> 8) & 0xff] ^
      t5[(low >>> 16) & 0xff] ^
      t4[low >>> 24] ^
      t3[data[i + 4]] ^
      t2[data[i + 5]] ^
      t1[data[i + 6]] ^
      t0[data[i + 7]];
    i += 8;
  }
  while (i < data.length) crc = t0[(crc ^ data[i++]) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

let chosen: Crc32cFunction | undefined;

/** The native CRC32C when "@node-rs/crc32" loads, else `crc32cJs`; chosen on first use. */
export function crc32c(data: Uint8Array, previous = 0): number {
  chosen ??= loadNative() ?? crc32cJs;
  return chosen(data, previous);
}

function loadNative(): Crc32cFunction | undefined {
  try {
    // A lazy, optional require: the client package must not depend on it.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const native = require("@node-rs/crc32") as { crc32c?: (data: Uint8Array, initial?: number) => number };
    return typeof native.crc32c === "function" ? native.crc32c : undefined;
  } catch {
    return undefined;
  }
}
