/**
 * The local tier's writtenBefore(): what lifecycle rules age out, by range
 * scans of the key index under a prefix, in key order, paged with `after`.
 * Writes carry their origin's time (PutMeta.origin, as replicated copies do),
 * so ages are set exactly.
 */
import type { PutMeta } from "../../../server/backends/backend.js";
import { createFsBackend, type FsBackend } from "../../../server/backends/fs/fs-backend.js";
import { chunked } from "../../support/backend-io.js";
import { makeTempDir, type TempDir } from "../../kit/temp-dir.js";

let tmp: TempDir;
let fsb: FsBackend;
const T = 1_700_000_000_000_000; // µs

const meta = (writtenAt: number): PutMeta => ({
  kind: "BYTES",
  contentType: "application/octet-stream",
  metadata: {},
  origin: { writtenAt, writer: "test" },
});

beforeAll(async () => {
  tmp = await makeTempDir("fs-written-before-");
  fsb = await createFsBackend({ root: tmp.path, minFreeBytes: 0 });
  const put = (key: string, at: number) => fsb.put(key, chunked(Buffer.from(key)), meta(at));
  await put("temp/a", T);
  await put("temp/b", T + 10);
  await put("temp/c", T + 1000);
  await put("temp", T); // not under "temp/"
  await put("tempest", T);
  await put("temp/\u{10FFFF}", T);
  await put("\u{10FFFF}\u{10FFFF}", T);
  await put("keep/x", T);
});
afterAll(async () => {
  await fsb?.close();
  await tmp?.cleanup();
});

test("keys under the prefix written before the time, in key order", () => {
  expect(fsb.writtenBefore("temp/", T + 11, undefined, 100)).toEqual(["temp/a", "temp/b", "temp/\u{10FFFF}"]);
  expect(fsb.writtenBefore("temp/", T + 10, undefined, 100)).toEqual(["temp/a", "temp/\u{10FFFF}"]);
  expect(fsb.writtenBefore("temp/", T, undefined, 100)).toEqual([]);
});

test("pages with `after` and a limit", () => {
  expect(fsb.writtenBefore("temp/", T + 2000, undefined, 2)).toEqual(["temp/a", "temp/b"]);
  expect(fsb.writtenBefore("temp/", T + 2000, "temp/b", 2)).toEqual(["temp/c", "temp/\u{10FFFF}"]);
  expect(fsb.writtenBefore("temp/", T + 2000, "temp/\u{10FFFF}", 2)).toEqual([]);
});

test("the empty prefix is every key; a prefix with no successor is bounded all the same", () => {
  expect(fsb.writtenBefore("", T + 1, undefined, 100)).toEqual(["keep/x", "temp", "temp/a", "temp/\u{10FFFF}", "tempest", "\u{10FFFF}\u{10FFFF}"]);
  expect(fsb.writtenBefore("\u{10FFFF}", T + 1, undefined, 100)).toEqual(["\u{10FFFF}\u{10FFFF}"]);
});
