/**
 * The streaming JSON check accepts exactly what JSON.parse of the
 * UTF-8-decoded bytes accepts: every file of JSONTestSuite's test_parsing
 * (y_, n_ and i_), plus edge cases of our own, each fed whole, byte by byte
 * and in 7-byte pieces; errors name their position. Through the real server:
 * test/rpc/json-validation.test.ts.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { createKindCheck } from "../../../server/codec/kind-check.js";
import { Code, StorageError } from "../../../server/storage-error.js";

const suite = JSON.parse(fs.readFileSync(path.join(__dirname, "fixtures/json-test-suite.json"), "utf8")) as { cases: Record<string, string> };

const ours: Record<string, Buffer> = {
  "a leading BOM": Buffer.from("\uFEFF{\"a\":1}"),
  "two BOMs": Buffer.from("\uFEFF\uFEFF{}"),
  "a BOM inside": Buffer.from('{"a":\uFEFF1}'),
  "a BOM alone": Buffer.from("\uFEFF"),
  "lone high surrogate escape": Buffer.from('["\\ud800"]'),
  "lone low surrogate escape": Buffer.from('"\\udc00x"'),
  "escaped surrogate pair": Buffer.from('"\\ud83d\\ude00"'),
  "a surrogate as raw UTF-8 bytes": Buffer.from([0x22, 0xed, 0xa0, 0x80, 0x22]),
  "an overlong encoding": Buffer.from([0x22, 0xc0, 0xaf, 0x22]),
  "a truncated multi-byte character": Buffer.from([0x22, 0xe4, 0xb8, 0x22]),
  "two values": Buffer.from("{} {}"),
  "trailing garbage": Buffer.from("[1]x"),
  "a trailing NUL": Buffer.from("[1]\u0000"),
  "a trailing comment": Buffer.from("[1]//x"),
  "a scalar with whitespace": Buffer.from(" 12 \n\r\t"),
  "empty": Buffer.alloc(0),
  "whitespace only": Buffer.from(" \n"),
  "NBSP as whitespace": Buffer.from("[1,\u00a02]"),
  "U+2028 as whitespace": Buffer.from("[1,\u20282]"),
  "U+2028 inside a string": Buffer.from('"\u2028"'),
  "a tab inside a string": Buffer.from('"\t"'),
  "DEL inside a string": Buffer.from('"\x7f"'),
  "0x1F inside a string": Buffer.from('"\x1f"'),
  "escaped slash": Buffer.from('"\\/"'),
  "\\x escape": Buffer.from('"\\x41"'),
  "uppercase hex escape": Buffer.from('"\\uABCD"'),
  "a short \\u escape": Buffer.from('"\\u12"'),
  "-0": Buffer.from("-0"),
  "a huge exponent": Buffer.from("1e999999"),
  "+1": Buffer.from("+1"),
  ".5": Buffer.from(".5"),
  "1.": Buffer.from("1."),
  "01": Buffer.from("01"),
  "truex": Buffer.from("truex"),
  "null1": Buffer.from("null1"),
  '1"a"': Buffer.from('1"a"'),
  "a trailing comma in an object": Buffer.from('{"a":[1,]}'),
  "a number as a key": Buffer.from("{1:2}"),
  "a duplicate key": Buffer.from('{"a":1,"a":2}'),
  "__proto__ as a key": Buffer.from('{"__proto__":{"x":1}}'),
  "10000 nested arrays": Buffer.from("[".repeat(10000) + "]".repeat(10000)),
  "100 unclosed arrays": Buffer.from("[".repeat(100)),
  "a string of 300 000 characters": Buffer.from(`"${"é".repeat(300_000)}"`),
  "a number of 300 000 digits": Buffer.from("1".repeat(300_000)),
};

const cases: [string, Buffer][] = [
  ...Object.entries(suite.cases).map(([name, b64]) => [`JSONTestSuite ${name}`, Buffer.from(b64, "base64")] as [string, Buffer]),
  // The two files the fixture leaves out for size, made here.
  ["JSONTestSuite n_structure_100000_opening_arrays.json", Buffer.from("[".repeat(100_000))],
  ["JSONTestSuite n_structure_open_array_object.json", Buffer.from('[{"":'.repeat(50_000) + "\n")],
  ...Object.entries(ours).map(([name, b]) => [name, b] as [string, Buffer]),
];

/** What JSON.parse of the fatally decoded text (BOM dropped, as TextDecoder does) says. */
function reference(bytes: Buffer): boolean {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return false;
  }
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

function check(pieces: Uint8Array[], maxDepth = 100_000): { ok: true } | { ok: false; error: StorageError } {
  const c = createKindCheck("JSON", maxDepth);
  try {
    for (const p of pieces) c.update(p);
    c.end();
    return { ok: true };
  } catch (err) {
    if (!(err instanceof StorageError)) throw err;
    return { ok: false, error: err };
  }
}

const split = (b: Buffer, n: number) => Array.from({ length: Math.ceil(b.length / n) }, (_, i) => b.subarray(i * n, (i + 1) * n));

test("the fixture holds JSONTestSuite's parsing cases", () => {
  expect(Object.keys(suite.cases).length).toBe(316);
});

describe.each(cases)("%s", (_name, bytes) => {
  const want = reference(bytes);
  test(`is ${want ? "accepted" : "refused"} as JSON.parse decides, whole, byte by byte and in 7-byte pieces`, () => {
    const feeds = [[bytes], split(bytes, 7), ...(bytes.length <= 20_000 ? [split(bytes, 1)] : [])];
    for (const pieces of feeds) {
      const got = check(pieces);
      expect(got.ok).toBe(want);
      if (!got.ok) {
        expect(got.error.code).toBe(Code.InvalidArgument);
        expect(got.error.message).toMatch(/^data is not valid JSON: |MAX_JSON_DEPTH/);
      }
    }
  });
});

test("an error names its position: line and column, or the bytes of bad UTF-8", () => {
  const at = (text: string | Buffer) => {
    const got = check([Buffer.from(text)]);
    if (got.ok) throw new Error("expected a refusal");
    return got.error.message;
  };
  expect(at('{"a":1,\n "b": x}')).toBe("data is not valid JSON: expected a value at line 2, column 7 (character 14)");
  expect(at("[1] [2]")).toContain("at line 1, column 5");
  expect(at('{"a":1')).toContain("at line 1, column 7");
  expect(at(Buffer.concat([Buffer.from('"abc'), Buffer.from([0xff]), Buffer.from('"')]))).toMatch(/not valid UTF-8 \(in bytes 0 to 6\)/);
});

test("nesting past MAX_JSON_DEPTH is refused at its byte; brackets in strings do not count", () => {
  expect(check([Buffer.from("[".repeat(10) + "]".repeat(10))], 10).ok).toBe(true);
  const deep = check([Buffer.from("[".repeat(11) + "]".repeat(11))], 10);
  expect(deep.ok).toBe(false);
  if (!deep.ok) expect(deep.error.message).toBe("data of kind JSON nests arrays and objects more than 10 levels deep (MAX_JSON_DEPTH), at byte 10");
  // An escaped quote and a backslash at the very end of a piece do not end the string.
  const tricky = Buffer.from(`["\\"[[[[[[[[[[[\\\\",${"[".repeat(9)}${"]".repeat(9)}]`);
  expect(reference(tricky)).toBe(true);
  for (let cut = 1; cut < tricky.length; cut++) {
    expect(check([tricky.subarray(0, cut), tricky.subarray(cut)], 10).ok).toBe(true);
  }
});
