/**
 * Faults of the local tier through the real gRPC server: a group commit that
 * SQLite rolls back mid-batch (injected), and a full disk (a small tmpfs).
 * Nothing acknowledged is lost, nothing refused is kept, and the daemon
 * keeps working afterwards.
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import Database from "better-sqlite3";
import { FileStorageClient } from "../../client/src/index.js";
import { INLINE_MAX_BYTES } from "../../server/backends/fs/fs-backend.js";
import { startDaemon } from "../support/daemon.js";
import { codeOf, failure } from "../support/expect-failure.js";
import { makeTempDir } from "../kit/temp-dir.js";

/** Every file under `dir`, relative. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await fs.readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => path.relative(dir, path.join(e.parentPath, e.name)));
}

/** Blob ids the index names. */
function referencedBlobs(storagePath: string): Set<string> {
  const db = new Database(path.join(storagePath, "index.sqlite"), { readonly: true });
  try {
    return new Set((db.prepare("SELECT blob FROM objects WHERE blob IS NOT NULL").pluck().all() as string[]));
  } finally {
    db.close();
  }
}

test("a group commit SQLite rolls back mid-batch fails every write of the batch and keeps none of their blobs", async () => {
  let armed = true;
  const batches: { size: number; failed: boolean }[] = [];
  const daemon = await startDaemon(
    { ENABLE_CACHE: "false" },
    {
      fsFaults: {
        beforeCommitJob(index, size, exec) {
          if (index === 0) batches.push({ size, failed: false });
          // What SQLite does on some failures (a full disk, an I/O error): the whole transaction is gone.
          if (armed && size >= 3 && index === 1) {
            armed = false;
            batches[batches.length - 1]!.failed = true;
            exec("ROLLBACK");
            throw Object.assign(new Error("database or disk is full (injected)"), { code: "SQLITE_FULL" });
          }
        },
      },
    },
  );
  const client = new FileStorageClient(daemon.address, { retries: 0 });
  try {
    const body = (i: number) => (i % 2 === 0 ? randomBytes(INLINE_MAX_BYTES + 1000 + i) : Buffer.from(`small ${i}`));
    let outcomes: PromiseSettledResult<unknown>[] = [];
    for (let round = 0; round < 20 && armed; round++) {
      const keys = Array.from({ length: 8 }, (_, i) => `gc/${round}/${i}`);
      const bodies = keys.map((_, i) => body(i));
      outcomes = await Promise.allSettled(keys.map((k, i) => client.store(k, bodies[i]!)));
      for (const [i, k] of keys.entries()) {
        const got = await client.retrieve<Buffer | string>(k);
        if (outcomes[i]!.status === "fulfilled") expect(Buffer.from(got as Buffer).equals(Buffer.from(bodies[i]!))).toBe(true);
        else expect(got).toBeNull();
      }
    }
    expect(armed).toBe(false);
    const failedBatch = batches.find((b) => b.failed)!;
    const failures = outcomes.filter((o) => o.status === "rejected");
    // Every job of the rolled-back batch failed; none reported success.
    expect(failures.length).toBeGreaterThanOrEqual(failedBatch.size);
    for (const f of failures) expect(String((f as PromiseRejectedResult).reason)).toMatch(/RESOURCE_EXHAUSTED|UNAVAILABLE/);
    // No blob file is left that the index does not name.
    const referenced = referencedBlobs(daemon.storagePath);
    const onDisk = (await filesUnder(path.join(daemon.storagePath, "blobs"))).map((f) => path.basename(f));
    expect(onDisk.filter((id) => !referenced.has(id))).toEqual([]);
    // And the daemon goes on committing.
    await client.store("gc/after", "fine");
    expect(await client.retrieve("gc/after")).toBe("fine");
  } finally {
    client.close();
    await daemon.stop();
  }
});

describe("a full disk (a 24 MiB tmpfs)", () => {
  let mountPoint: string;
  let cleanup: () => Promise<void>;
  beforeAll(async () => {
    const dir = await makeTempDir("fs-tmpfs-");
    mountPoint = dir.path;
    try {
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=24m,mode=0700", "tmpfs", mountPoint], { stdio: "pipe" });
    } catch (err) {
      throw new Error(`this test mounts a small tmpfs and needs root (CI runs as root): ${(err as Error).message}`);
    }
    cleanup = async () => {
      execFileSync("umount", [mountPoint]);
      await dir.cleanup();
    };
  });
  afterAll(() => cleanup?.());

  test("writes are refused below LOCAL_MIN_FREE_BYTES while deletes free space; then writes succeed again and nothing acknowledged is lost", async () => {
    const daemon = await startDaemon({ LOCAL_STORAGE_PATH: path.join(mountPoint, "store"), LOCAL_MIN_FREE_BYTES: "4MiB", ENABLE_CACHE: "false" });
    const client = new FileStorageClient(daemon.address, { retries: 0 });
    const stored = new Map<string, Buffer>();
    try {
      let refused: Awaited<ReturnType<typeof failure>> | undefined;
      for (let i = 0; i < 64 && !refused; i++) {
        const key = `full/${i}`;
        const value = randomBytes(1024 * 1024);
        try {
          await client.store(key, value);
          stored.set(key, value);
        } catch (err) {
          refused = await failure(Promise.reject(err));
        }
      }
      expect(refused).toBeDefined();
      expect(refused!.message).toMatch(/RESOURCE_EXHAUSTED/);
      expect(refused!.message).toMatch(/LOCAL_MIN_FREE_BYTES/);
      expect(refused!.message).not.toContain(mountPoint);
      expect(stored.size).toBeGreaterThan(10);
      // Small writes (inline in the index) are refused too: the reserve is for deletes.
      expect(await codeOf(client.store("full/small", "x"))).toBe("RESOURCE_EXHAUSTED");
      // Deletes work on the full disk and free its space.
      const victims = [...stored.keys()].slice(0, 8);
      for (const key of victims) {
        expect(await client.delete(key)).toBe(true);
        stored.delete(key);
      }
      await client.store("full/again", "written after the deletes");
      const value = randomBytes(1024 * 1024);
      await client.store("full/again-big", value);
      stored.set("full/again-big", value);
      for (const [key, bytes] of stored) expect((await client.retrieve<Buffer>(key))!.equals(bytes)).toBe(true);
      expect(await client.retrieve("full/again")).toBe("written after the deletes");
      for (const key of victims) expect(await client.exists(key)).toBe(false);
    } finally {
      client.close();
      await daemon.stop();
    }
  });
});
