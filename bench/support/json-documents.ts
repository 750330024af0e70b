/**
 * Large JSON documents generated piece by piece (about 1 MiB each), never
 * whole in memory, in shapes that stress a streaming validator differently:
 * many small records, one huge string, one huge number, deep nesting. Each is
 * deterministic, so a test can generate it again to compare what it reads back.
 */
const MiB = 1024 * 1024;

export type JsonShape = "records" | "string" | "number" | "nested";

/** `bytes` (approximately; at least) of valid JSON of `shape`, in pieces. */
export function* jsonDocument(shape: JsonShape, bytes: number): Generator<Buffer> {
  switch (shape) {
    case "records":
      yield* records(bytes);
      return;
    case "string":
      yield* pieces('\uFEFF "', bytes, () => 'plain text, "quoted", back\\slash, new\nline, é 中 😀; ', (t) => JSON.stringify(t).slice(1, -1), '" \n');
      return;
    case "number":
      yield* pieces("-1", bytes, () => "2345678901", (t) => t, ".5e+10");
      return;
    case "nested":
      yield Buffer.from('{"a":'.repeat(9000));
      yield* records(bytes - 9000 * 6);
      yield Buffer.from("}".repeat(9000));
      return;
  }
}

function* records(bytes: number): Generator<Buffer> {
  let n = 0;
  let sent = 1;
  let parts: string[] = ["["];
  let pending = 1;
  while (sent < bytes) {
    const record = JSON.stringify({ id: n, name: `item-${n} é中😀`, tags: ["alpha", "beta", n % 7], score: n * 0.37, ok: n % 2 === 0, nested: { a: null, b: [1, 2, 3], text: 'lorem "ipsum" \\ dolor\n' } });
    const piece = n === 0 ? record : `,${record}`;
    parts.push(piece);
    pending += piece.length;
    sent += Buffer.byteLength(piece);
    n++;
    if (pending >= MiB) {
      yield Buffer.from(parts.join(""));
      parts = [];
      pending = 0;
    }
  }
  parts.push("]");
  yield Buffer.from(parts.join(""));
}

/** start, then unit() repeated (passed through encode) until about `bytes`, then end; pieces are cut mid-character on purpose. */
function* pieces(start: string, bytes: number, unit: () => string, encode: (t: string) => string, end: string): Generator<Buffer> {
  const block = Buffer.from(encode(unit().repeat(Math.ceil(MiB / unit().length))));
  yield Buffer.from(start);
  let sent = 0;
  // Cut the block at an odd offset so multi-byte characters and escapes straddle pieces.
  const cut = 333_333;
  while (sent < bytes) {
    yield Buffer.from(block.subarray(0, cut));
    yield Buffer.from(block.subarray(cut));
    sent += block.length;
  }
  yield Buffer.from(end);
}
