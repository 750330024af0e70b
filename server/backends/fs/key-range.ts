/** Bounds of key ranges in UTF-8 byte order, for range scans of the index. */

/**
 * The smallest string greater than every string starting with `s` (UTF-8 byte
 * order equals code point order): its last code point plus one, skipping the
 * surrogate gap; undefined when `s` is all U+10FFFF.
 */
export function successor(s: string): string | undefined {
  const points = Array.from(s);
  while (points.length > 0) {
    const cp = points.pop()!.codePointAt(0)!;
    if (cp < 0x10ffff) {
      const next = cp + 1 === 0xd800 ? 0xe000 : cp + 1;
      return points.join("") + String.fromCodePoint(next);
    }
  }
  return undefined;
}
