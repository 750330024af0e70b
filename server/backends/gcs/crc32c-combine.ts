/**
 * CRC32C of a concatenation from the CRC32Cs of its pieces (zlib's
 * crc32_combine, for the Castagnoli polynomial): how a composed upload is
 * checked against the whole stream before it is committed, from the CRC32Cs
 * GCS verified for its parts, without reading a byte back. No maintained npm
 * package offers it for CRC32C (@node-rs/crc32 computes, does not combine).
 */

/** The reflected Castagnoli polynomial. */
const POLY = 0x82f63b78;

function times(matrix: Uint32Array, vector: number): number {
  let sum = 0;
  for (let i = 0; vector !== 0; i++, vector >>>= 1) if (vector & 1) sum ^= matrix[i];
  return sum >>> 0;
}

function square(into: Uint32Array, matrix: Uint32Array): void {
  for (let n = 0; n < 32; n++) into[n] = times(matrix, matrix[n]);
}

/** CRC32C of A followed by B, from crc(A), crc(B) and B's length in bytes. */
export function crc32cCombine(crcA: number, crcB: number, lengthB: number): number {
  if (lengthB <= 0) return crcA >>> 0;
  const even = new Uint32Array(32);
  const odd = new Uint32Array(32);
  // The operator for one zero bit, then for two and four (squarings).
  odd[0] = POLY;
  for (let n = 1, row = 1; n < 32; n++, row <<= 1) odd[n] = row >>> 0;
  square(even, odd);
  square(odd, even);
  let crc = crcA >>> 0;
  let length = lengthB;
  // Apply the operator for each set bit of the length (in bytes: starting at 8 zero bits).
  for (;;) {
    square(even, odd);
    if (length % 2 === 1) crc = times(even, crc);
    length = Math.floor(length / 2);
    if (length === 0) break;
    square(odd, even);
    if (length % 2 === 1) crc = times(odd, crc);
    length = Math.floor(length / 2);
    if (length === 0) break;
  }
  return (crc ^ crcB) >>> 0;
}
