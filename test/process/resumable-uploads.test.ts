/**
 * Resumable uploads against the daemon as a real process (dist/: `npm run
 * build` first):
 *   - 1 GiB from a file through the client package, across a TCP proxy that
 *     drops the connection at 50 random offsets: the object's sha256 is the
 *     file's, and the daemon's peak RSS stays under 256 MiB. Run time here:
 *     ~40-70 s (the upload alone ~10 s; each drop costs a reconnect, a
 *     QueryUpload and a resend of what the daemon had not committed);
 *     bounded by the test's timeout.
 *   - kill -9 of the daemon mid-upload: the client's upload() waits for the
 *     restarted daemon and continues from the committed size, which survived.
 *   - the CLI: `put` prints its upload id; killed mid-upload, another `put
 *     --resume-id` continues from what the daemon holds.
 * Seeded by RESUME_SEED for a replay of the drop offsets.
 */
import { spawn } from "node:child_process";
import { createHash, randomFillSync } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { FileStorageClient } from "../../client/src/index.js";
import { BIN, spawnDaemon, type DaemonProcess } from "../kit/daemon-process.js";
import { freePort } from "../kit/free-port.js";
import { makeTempDir, type TempDir } from "../kit/temp-dir.js";
import { startProxy } from "../kit/tcp-proxy.js";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const SEED = Number(process.env.RESUME_SEED ?? Date.now() % 1_000_000);

let tmp: TempDir;
beforeAll(async () => {
  tmp = await makeTempDir("fs-resume-process-");
});
afterAll(() => tmp?.cleanup());

/** mulberry32 */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Writes `size` random bytes to a new file; returns its path and sha256. */
function randomFile(name: string, size: number): { file: string; sha: string } {
  const file = path.join(tmp.path, name);
  const fd = fs.openSync(file, "w");
  const hash = createHash("sha256");
  const piece = Buffer.allocUnsafe(16 * MiB);
  try {
    for (let at = 0; at < size; at += piece.length) {
      const part = piece.subarray(0, Math.min(piece.length, size - at));
      randomFillSync(part);
      hash.update(part);
      fs.writeSync(fd, part);
    }
  } finally {
    fs.closeSync(fd);
  }
  return { file, sha: hash.digest("hex") };
}

async function storedSha(client: FileStorageClient, key: string): Promise<string> {
  const { stream } = await client.download(key);
  const hash = createHash("sha256");
  for await (const chunk of stream) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

const storage = (name: string) => path.join(tmp.path, name);

test(
  "1 GiB from a file through a proxy dropping the connection at 50 random offsets: the right sha256, daemon peak RSS under 256 MiB",
  async () => {
    const { file, sha } = randomFile("one-gib.bin", GiB);
    const daemon = await spawnDaemon({ LOCAL_STORAGE_PATH: storage("drops") });
    const proxy = await startProxy(Number(daemon.address.split(":")[1]));
    const client = new FileStorageClient(proxy.address, { retries: 0 });
    const direct = new FileStorageClient(daemon.address);
    try {
      const random = prng(SEED);
      const offsets = Array.from({ length: 50 }, () => Math.floor(MiB + random() * (GiB - 2 * MiB))).sort((a, b) => a - b);
      proxy.dropAt(offsets);
      daemon.resetPeakRss();
      const started = Date.now();
      let resumes = 0;
      let last = 0;
      const info = await client.upload("big/one-gib.bin", file, {
        resumable: true,
        onProgress: (n) => {
          if (n < last) resumes++;
          last = n;
        },
      });
      const seconds = (Date.now() - started) / 1000;
      const peak = daemon.peakRss();
      console.log(
        `1 GiB resumable upload with ${proxy.drops} drops (seed ${SEED}): ${seconds.toFixed(1)} s, ${resumes} resumes, ` +
          `${((proxy.upstreamBytes - GiB) / MiB).toFixed(0)} MiB sent again, daemon peak RSS ${(peak / MiB).toFixed(0)} MiB`,
      );
      expect(proxy.drops).toBe(50);
      expect(resumes).toBeGreaterThanOrEqual(50);
      expect(Number(info.size)).toBe(GiB);
      expect(await storedSha(direct, "big/one-gib.bin")).toBe(sha);
      expect(peak).toBeLessThan(256 * MiB);
    } finally {
      client.close();
      direct.close();
      await proxy.close();
      await daemon.stop();
      fs.rmSync(file, { force: true });
    }
  },
  300_000,
);

test(
  "kill -9 of the daemon mid-upload: its committed size survives, and upload() continues by itself once the daemon is back",
  async () => {
    const size = 256 * MiB;
    const { file, sha } = randomFile("killed.bin", size);
    const port = await freePort();
    const env = { LOCAL_STORAGE_PATH: storage("killed"), LISTEN_ADDRESS: `127.0.0.1:${port}` };
    let daemon: DaemonProcess = await spawnDaemon(env);
    const client = new FileStorageClient(daemon.address, { retries: 0 });
    try {
      const progress: number[] = [];
      let killedAt: number | undefined;
      const uploaded = client.upload("big/killed.bin", file, {
        uploadId: "killed-1",
        onProgress: (n) => {
          progress.push(n);
          if (killedAt === undefined && n >= 128 * MiB) {
            killedAt = progress.length;
            daemon.child.kill("SIGKILL");
          }
        },
      });
      // What the daemon reported committed before the kill.
      let committedBefore = 0;
      while (killedAt === undefined) {
        const q = await client.queryUpload("killed-1").catch(() => null);
        if (q) committedBefore = Math.max(committedBefore, q.committedSize);
        await new Promise((r) => setTimeout(r, 10));
      }
      await daemon.exited;
      daemon = await spawnDaemon(env);
      const info = await uploaded;
      expect(Number(info.size)).toBe(size);
      // The first progress call after the kill is where the restarted daemon said the upload stood.
      const resumedAt = progress.slice(killedAt).find((n, i, rest) => i === 0 || n < rest[i - 1]!) ?? 0;
      const resumed = progress.slice(killedAt).filter((n, i, all) => i > 0 && n < all[i - 1]!);
      console.log(`kill -9 at ${(progress[killedAt! - 1]! / MiB).toFixed(0)} MiB sent; committed before ${(committedBefore / MiB).toFixed(0)} MiB; resumed at ${((resumed[0] ?? resumedAt) / MiB).toFixed(0)} MiB`);
      expect(committedBefore).toBeGreaterThan(0);
      expect(resumed.length).toBeGreaterThanOrEqual(1);
      expect(resumed[0]!).toBeGreaterThanOrEqual(committedBefore);
      expect(await storedSha(client, "big/killed.bin")).toBe(sha);
      expect((await client.queryUpload("killed-1"))?.complete).toBe(true);
    } finally {
      client.close();
      await daemon.stop();
      fs.rmSync(file, { force: true });
    }
  },
  120_000,
);

test(
  "the CLI: put prints its upload id; killed mid-upload, put --resume-id continues from what the daemon holds",
  async () => {
    const size = 256 * MiB;
    const { file, sha } = randomFile("cli.bin", size);
    const daemon = await spawnDaemon({ LOCAL_STORAGE_PATH: storage("cli") });
    const client = new FileStorageClient(daemon.address, { retries: 0 });
    const cli = (args: string[]) => spawn(process.execPath, [BIN, ...args, "--address", daemon.address], { stdio: ["ignore", "pipe", "pipe"] });
    try {
      const first = cli(["put", "cli/model.bin", file]);
      let err = "";
      first.stderr.on("data", (d: Buffer) => (err += d.toString()));
      let id: string | undefined;
      while (id === undefined) {
        id = /^filestorage: upload id ([A-Za-z0-9_-]+) /.exec(err)?.[1];
        await new Promise((r) => setTimeout(r, 10));
      }
      // Killed (not interrupted politely) once the daemon holds some of it.
      for (;;) {
        const q = await client.queryUpload(id);
        if (q && q.committedSize >= 32 * MiB) break;
        await new Promise((r) => setTimeout(r, 10));
      }
      first.kill("SIGKILL");
      await new Promise((r) => first.once("close", r));
      expect(await client.exists("cli/model.bin")).toBe(false);
      let held = (await client.queryUpload(id))!;
      // The daemon notices the broken stream and checkpoints it.
      await new Promise((r) => setTimeout(r, 500));
      held = (await client.queryUpload(id))!;
      expect(held.complete).toBe(false);

      const second = cli(["put", "cli/model.bin", file, "--resume-id", id]);
      let out = "";
      let err2 = "";
      second.stdout.on("data", (d: Buffer) => (out += d.toString()));
      second.stderr.on("data", (d: Buffer) => (err2 += d.toString()));
      const code = await new Promise<number | null>((r) => second.once("close", r));
      expect([code, err2]).toEqual([0, `filestorage: upload id ${id}: continuing from byte ${held.committedSize}\n`]);
      expect(JSON.parse(out)).toMatchObject({ key: "cli/model.bin", size });
      expect(await storedSha(client, "cli/model.bin")).toBe(sha);
    } finally {
      client.close();
      await daemon.stop();
      fs.rmSync(file, { force: true });
    }
  },
  120_000,
);
