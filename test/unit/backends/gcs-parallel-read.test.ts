/**
 * The in-order delivery of a read in parallel parts (parallel-read.ts), over
 * bytes held in memory: order, the bound on parts in flight, the end-to-end
 * CRC32C check, and that a reader who stops early stops the fetches. The same
 * path against the emulator: test/rpc/gcs-requests.test.ts and
 * test/unit/backends/gcs-backend.test.ts.
 */
import { randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { crc32c } from "@node-rs/crc32";
import { crc32cBase64 } from "../../../server/backends/gcs/gcs-http.js";
import { parallelBody } from "../../../server/backends/gcs/parallel-read.js";
import { Code } from "../../../server/storage-error.js";
import { expectStorageError, readBody } from "../../support/backend-io.js";

const KiB = 1024;

/** A plan over `data` whose fetches resolve after a tick; records how many ran at once. */
function plan(data: Buffer, opts: { start?: number; end?: number; partBytes: number; parts: number; crc?: string }) {
  const stats = { inFlight: 0, most: 0, fetched: [] as [number, number][], aborted: 0 };
  const start = opts.start ?? 0;
  const end = opts.end ?? data.length;
  // The first answer runs to the end of the object, in 4 KiB chunks (it is cut after its part).
  const first = Readable.from(
    (function* () {
      for (let at = start; at < data.length; at += 4 * KiB) yield data.subarray(at, Math.min(data.length, at + 4 * KiB));
    })(),
    { objectMode: false },
  );
  const body = parallelBody({
    first,
    start,
    end,
    partBytes: opts.partBytes,
    parts: opts.parts,
    crc32c: opts.crc,
    fetch: async (s, e, signal) => {
      stats.fetched.push([s, e]);
      stats.most = Math.max(stats.most, ++stats.inFlight);
      try {
        await new Promise<void>((resolve, reject) => {
          const t = setTimeout(resolve, 5);
          signal.addEventListener("abort", () => {
            clearTimeout(t);
            stats.aborted++;
            reject(new Error("aborted"));
          });
        });
        return [Buffer.from(data.subarray(s, e))];
      } finally {
        stats.inFlight--;
      }
    },
  });
  return { body, stats, first };
}

test("delivers the bytes in order, with at most parts - 1 fetches in flight beside the first answer", async () => {
  const data = randomBytes(100 * KiB + 123);
  const { body, stats, first } = plan(data, { partBytes: 10 * KiB, parts: 4, crc: crc32cBase64(crc32c(data)) });
  const back = await readBody(body);
  expect(back.equals(data)).toBe(true);
  expect(stats.fetched).toEqual(Array.from({ length: 10 }, (_, i) => [(i + 1) * 10 * KiB, Math.min(data.length, (i + 2) * 10 * KiB)]));
  expect(stats.most).toBe(3);
  expect(first.destroyed).toBe(true);
});

test("a range: only [start, end) is delivered, and no CRC32C is checked", async () => {
  const data = randomBytes(64 * KiB);
  const { body } = plan(data, { start: 1000, end: 50_000, partBytes: 8 * KiB, parts: 3 });
  expect((await readBody(body)).equals(data.subarray(1000, 50_000))).toBe(true);
});

test("reassembled bytes that do not match the object's CRC32C are DATA_LOSS at the end", async () => {
  const data = randomBytes(40 * KiB);
  const { body } = plan(data, { partBytes: 8 * KiB, parts: 3, crc: crc32cBase64(crc32c(data) ^ 1) });
  await expectStorageError(readBody(body), Code.DataLoss);
});

test("a reader that stops early aborts the fetches in flight and fetches nothing more", async () => {
  const data = randomBytes(200 * KiB);
  const { body, stats } = plan(data, { partBytes: 8 * KiB, parts: 4 });
  const it = body[Symbol.asyncIterator]();
  await it.next();
  body.destroy();
  await new Promise((r) => setTimeout(r, 30));
  expect(stats.aborted).toBeGreaterThan(0);
  const seen = stats.fetched.length;
  await new Promise((r) => setTimeout(r, 30));
  expect(stats.fetched.length).toBe(seen);
  expect(seen).toBeLessThan(data.length / (8 * KiB) - 1);
  expect(stats.most).toBeLessThanOrEqual(3);
});

test("a body destroyed before it was read closes the open answer and fetches nothing", async () => {
  const data = randomBytes(64 * KiB);
  const { body, stats, first } = plan(data, { partBytes: 8 * KiB, parts: 4 });
  body.destroy();
  await new Promise((r) => setTimeout(r, 20));
  expect(first.destroyed).toBe(true);
  expect(stats.fetched).toEqual([]);
});
