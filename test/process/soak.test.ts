/**
 * The soak (bench/soak.bench.ts), bounded for the test command: 16 clients for
 * 8 s of mixed store / retrieve / stat / list / delete against a spawned
 * daemon, then 100 cancelled uploads and 100 cancelled downloads. Zero errors,
 * descriptors flat and back at their quiet level after each phase, no temp
 * file left by the cancelled uploads. Memory is left to the bench (it needs
 * a longer run and forced collections to be judged fairly).
 */
import * as path from "node:path";
import { runSoak, soakVerdicts } from "../../bench/support/soak-load.js";
import { spawnDaemon } from "../kit/daemon-process.js";
import { makeTempDir } from "../kit/temp-dir.js";

test("soak: 16 clients for 8 s, then 100 cancelled uploads and downloads: zero errors, descriptors back, no temp file", async () => {
  const dir = await makeTempDir("fs-soak-");
  const storagePath = path.join(dir.path, "store");
  const daemon = await spawnDaemon({ LOCAL_STORAGE_PATH: storagePath });
  try {
    const result = await runSoak({
      address: daemon.address,
      pid: daemon.pid,
      storagePath,
      quietMs: 1000,
      seconds: 8,
      clients: 16,
      cancelledUploads: 100,
      cancelledDownloads: 100,
    });
    const verdicts = soakVerdicts(result, { warmupMs: 4000, windowMs: 2000 });
    console.log(verdicts.map((v) => `${v.ok ? "ok    " : "FAILED"} ${v.name}: ${v.detail}`).join("\n"));
    const judged = verdicts.filter((v) => !/memory|RSS/.test(v.name));
    expect(judged.filter((v) => !v.ok)).toEqual([]);
    expect(result.errors).toBe(0);
    expect(result.uploads.after.fds).toBeLessThanOrEqual(result.uploads.before.fds + 2);
    expect(result.downloads.after.fds).toBeLessThanOrEqual(result.downloads.before.fds + 2);
    expect(result.uploads.tmpFilesAfter).toBe(0);
  } finally {
    await daemon.kill();
    await dir.cleanup();
  }
}, 120_000);
