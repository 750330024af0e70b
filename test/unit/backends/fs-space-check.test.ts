/**
 * The local tier's reserve check (LOCAL_MIN_FREE_BYTES) runs before every
 * write; it must not cost a statfs per write when the disk is far from full,
 * and must look every time when it is near the reserve.
 */
import * as fsp from "node:fs/promises";
import { openBlobFiles } from "../../../server/backends/fs/blob-files";
import { makeTempDir } from "../../kit/temp-dir";

const GiB = 1024 ** 3;

async function freeOf(dir: string): Promise<number> {
  const s = await fsp.statfs(dir);
  return s.bavail * s.bsize;
}

/** The real free space, counting the looks. */
function counted(): { looks: number; measureFree: (root: string) => Promise<number> } {
  const c = { looks: 0, measureFree: async (root: string) => (c.looks++, freeOf(root)) };
  return c;
}

test("far above the reserve, writes arriving together and soon after share one look at the free space", async () => {
  const dir = await makeTempDir("fs-space-");
  try {
    const free = await freeOf(dir.path);
    // The machine's temp disk must have room for the slack this test relies on.
    expect(free).toBeGreaterThan(2 * GiB);
    const c = counted();
    const blobs = await openBlobFiles({ root: dir.path, durable: false, minFreeBytes: 64 * 1024 * 1024, measureFree: c.measureFree });
    await Promise.all(Array.from({ length: 50 }, () => blobs.ensureSpace()));
    for (let i = 0; i < 50; i++) await blobs.ensureSpace();
    // One look, or two when the 100 ms it stands for ran out on a slow machine.
    expect(c.looks).toBeGreaterThanOrEqual(1);
    expect(c.looks).toBeLessThanOrEqual(2);
  } finally {
    await dir.cleanup();
  }
});

test("near the reserve every write looks again, and below it writes are refused", async () => {
  const dir = await makeTempDir("fs-space-");
  try {
    const free = await freeOf(dir.path);
    // A reserve 256 MiB under what is free: inside the slack, so no look stands for the next write.
    const c = counted();
    const blobs = await openBlobFiles({ root: dir.path, durable: false, minFreeBytes: free - 256 * 1024 * 1024, measureFree: c.measureFree });
    for (let i = 0; i < 10; i++) await blobs.ensureSpace();
    expect(c.looks).toBe(10);
    const full = await openBlobFiles({ root: dir.path, durable: false, minFreeBytes: free + GiB });
    await expect(full.ensureSpace()).rejects.toMatchObject({ code: 8, message: expect.stringContaining("LOCAL_MIN_FREE_BYTES") });
  } finally {
    await dir.cleanup();
  }
});
