/** crc32cCombine: the CRC32C of a concatenation from its pieces' (how composed uploads are checked before they commit). */
import { randomBytes } from "node:crypto";
import { crc32c } from "@node-rs/crc32";
import { crc32cCombine } from "../../../server/backends/gcs/crc32c-combine.js";

test("equals the CRC32C of the concatenation, for pieces of any size (empty ones too)", () => {
  for (const [a, b] of [[0, 0], [0, 5], [5, 0], [1, 1], [1000, 3], [3, 70_000], [65_536, 65_536], [123_457, 1]]) {
    const x = randomBytes(a);
    const y = randomBytes(b);
    expect({ a, b, crc: crc32cCombine(crc32c(x), crc32c(y), y.length) }).toEqual({ a, b, crc: crc32c(Buffer.concat([x, y])) >>> 0 });
  }
});

test("folds over many parts in order, and the order matters", () => {
  const parts = Array.from({ length: 40 }, (_, i) => randomBytes(1000 + i * 37));
  const folded = parts.reduce((crc, p) => crc32cCombine(crc, crc32c(p), p.length), 0);
  expect(folded).toBe(crc32c(Buffer.concat(parts)) >>> 0);
  const swapped = [parts[1], parts[0], ...parts.slice(2)].reduce((crc, p) => crc32cCombine(crc, crc32c(p), p.length), 0);
  expect(swapped).not.toBe(folded);
});
