/**
 * The daemon as a process over its storage folder: one process per folder
 * (lock, released by the kernel on kill -9), the leftover sweep only after the
 * lock and a successful bind, uploads cancelled by shutdown leaving no temp
 * file, and SIGTERM exiting even when stdout's reader has gone.
 */
import { randomBytes } from "node:crypto";
import * as fs from "node:fs/promises";
import * as net from "node:net";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { FileStorageClient } from "../../client/src/index.js";
import { BIN, spawnDaemon, type DaemonProcess } from "../kit/daemon-process.js";
import { startDaemon } from "../support/daemon.js";
import { makeTempDir, type TempDir } from "../kit/temp-dir.js";

const MiB = 1024 * 1024;
let dir: TempDir;
let storage: string;
const cleanups: (() => Promise<unknown> | void)[] = [];

beforeEach(async () => {
  dir = await makeTempDir("fs-life-proc-");
  storage = path.join(dir.path, "store");
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await dir.cleanup();
});

async function daemon(env: Record<string, string> = {}, opts: Parameters<typeof spawnDaemon>[1] = {}): Promise<DaemonProcess> {
  const d = await spawnDaemon({ LOCAL_STORAGE_PATH: storage, ...env }, opts);
  cleanups.push(() => d.kill("SIGKILL"));
  return d;
}

function client(d: { address: string }): FileStorageClient {
  const c = new FileStorageClient(d.address);
  cleanups.push(() => c.close());
  return c;
}

/** Incompressible bytes (gzip would shrink repeated bytes into an inline object: no temp file). */
const BLOCK = randomBytes(MiB);
const bytes = (n: number) => Buffer.concat(Array.from({ length: Math.ceil(n / MiB) }, () => BLOCK)).subarray(0, n);

/**
 * An upload source that sends `before` bytes, then waits until released (or
 * forever), then sends `after` bytes. `sent` resolves once `before` was handed over.
 */
function heldUpload(before: number, after: number) {
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let sentBefore!: () => void;
  const sent = new Promise<void>((r) => (sentBefore = r));
  async function* source(): AsyncGenerator<Uint8Array> {
    for (let n = 0; n < before; n += MiB) yield BLOCK.subarray(0, Math.min(MiB, before - n));
    sentBefore();
    await released;
    for (let n = 0; n < after; n += MiB) yield BLOCK.subarray(0, Math.min(MiB, after - n));
  }
  return { source: source(), sent, release };
}

async function waitFor(cond: () => Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const until = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** `promise`'s value, or "hung" after `ms`. */
async function within<T>(promise: Promise<T>, ms: number): Promise<T | "hung"> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<"hung">((r) => (timer = setTimeout(() => r("hung"), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

const tmpFiles = () => fs.readdir(path.join(storage, "tmp")).catch(() => [] as string[]);

describe("one process per storage folder", () => {
  test("a second daemon on the folder exits with one line naming it and the holder's pid; the first one's upload completes", async () => {
    const first = await daemon();
    const c = client(first);
    await c.exists("warm-up");
    const upload = heldUpload(8 * MiB, 8 * MiB);
    const uploaded = c.upload("big", upload.source);
    await upload.sent;
    await waitFor(async () => (await tmpFiles()).length === 1, "the upload's temp file");

    const second = spawnSync(process.execPath, [BIN, "serve"], {
      env: { PATH: process.env.PATH, LOCAL_STORAGE_PATH: storage, LISTEN_ADDRESS: "127.0.0.1:0", METRICS_PORT: "0" },
      encoding: "utf8",
      timeout: 20_000,
    });
    expect(second.status).toBe(1);
    expect(second.stderr.trim().split("\n")).toEqual([
      `filestorage: cannot start: LOCAL_STORAGE_PATH ${storage} is in use by another FileStorage process (pid ${first.pid})`,
    ]);
    // The refused daemon swept nothing: the first one's upload is whole.
    expect(await tmpFiles()).toHaveLength(1);
    upload.release();
    expect(Number((await uploaded).size)).toBe(16 * MiB);
    const back = (await c.retrieve("big")) as Buffer;
    expect(back.equals(bytes(16 * MiB))).toBe(true);
  }, 60_000);

  test("kill -9 releases the lock: a restart right after serves", async () => {
    const first = await daemon();
    await client(first).store("k", "v");
    expect((await first.kill("SIGKILL")).signal).toBe("SIGKILL");
    const second = await daemon();
    expect(await client(second).retrieve("k")).toBe("v");
  }, 60_000);

  test("two in-process daemons on one folder conflict too", async () => {
    const first = await startDaemon({ LOCAL_STORAGE_PATH: storage });
    cleanups.push(() => first.stop());
    await expect(startDaemon({ LOCAL_STORAGE_PATH: storage })).rejects.toThrow(
      `LOCAL_STORAGE_PATH ${storage} is already open in this process (pid ${process.pid})`,
    );
    // The refusal left the first one's lock and index alone.
    const c = client(first);
    await c.store("k", "v");
    expect(await c.retrieve("k")).toBe("v");
  });

  test("leftovers are swept only after a successful bind: a daemon that cannot listen leaves them", async () => {
    // A crash's leftovers in a folder no daemon holds.
    const first = await daemon();
    await client(first).store("k", "v");
    await first.kill("SIGKILL");
    const leftover = path.join(storage, "tmp", "0123456789abcdef0123456789abcdef");
    const orphan = path.join(storage, "blobs", "ab", "ab00000000000000000000000000dead");
    await fs.writeFile(leftover, "half an upload");
    await fs.writeFile(orphan, "orphan");

    const busy = net.createServer();
    await new Promise<void>((r) => busy.listen(0, "127.0.0.1", () => r()));
    cleanups.push(() => new Promise((r) => busy.close(r)));
    const port = (busy.address() as net.AddressInfo).port;
    const refused = spawnSync(process.execPath, [BIN, "serve"], {
      env: { PATH: process.env.PATH, LOCAL_STORAGE_PATH: storage, LISTEN_ADDRESS: `127.0.0.1:${port}`, METRICS_PORT: "0" },
      encoding: "utf8",
      timeout: 20_000,
    });
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(/cannot listen on LISTEN_ADDRESS/);
    await expect(fs.stat(leftover)).resolves.toBeDefined();
    await expect(fs.stat(orphan)).resolves.toBeDefined();

    const second = await daemon();
    expect(await tmpFiles()).toEqual([]);
    await expect(fs.stat(orphan)).rejects.toThrow();
    expect(await client(second).retrieve("k")).toBe("v");
  }, 60_000);
});

describe("shutdown", () => {
  test("SIGTERM during an upload with a short grace: no temp file is left and the previous version is intact", async () => {
    const first = await daemon({ SHUTDOWN_GRACE_SECONDS: "1" });
    const c = client(first);
    await c.store("model", bytes(3 * MiB));
    const upload = heldUpload(32 * MiB, 0);
    const uploaded = c.upload("model", upload.source).then(
      () => "stored",
      () => "failed",
    );
    await upload.sent;
    await waitFor(async () => (await tmpFiles()).length === 1, "the upload's temp file");
    first.child.kill("SIGTERM");
    const exit = await first.exited;
    expect(exit.code).toBe(0);
    expect(await uploaded).toBe("failed");
    expect(await tmpFiles()).toEqual([]);

    const again = await daemon();
    const back = (await client(again).retrieve("model")) as Buffer;
    expect(back.equals(bytes(3 * MiB))).toBe(true);
  }, 60_000);

  test("with stdout's reader gone (serve | head -1), SIGTERM still exits within a few seconds", async () => {
    // As `serve | head -1`: the first line read, then the reader is gone; the
    // next line ("shutting down") meets a broken pipe as the daemon exits.
    const d = await daemon({ SHUTDOWN_GRACE_SECONDS: "5" }, { closeStdoutWhenServing: true });
    const started = Date.now();
    d.child.kill("SIGTERM");
    const exit = await within(d.exited, 8_000);
    expect(exit).toEqual({ code: 0, signal: null });
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(d.stderr()).toMatch(/stdout failed \(EPIPE\): logging stopped/);
  }, 60_000);

  test("a second SIGTERM exits at once while the first waits for an upload to drain", async () => {
    const d = await daemon({ SHUTDOWN_GRACE_SECONDS: "60" }, { closeStdoutWhenServing: true });
    const c = client(d);
    await c.exists("warm-up");
    const upload = heldUpload(4 * MiB, 0);
    void c.upload("slow", upload.source).catch(() => undefined);
    await upload.sent;
    await waitFor(async () => (await tmpFiles()).length === 1, "the upload's temp file");
    d.child.kill("SIGTERM");
    // The first signal waits for the upload (grace 60 s)...
    await new Promise((r) => setTimeout(r, 1000));
    expect(d.child.exitCode).toBeNull();
    const started = Date.now();
    d.child.kill("SIGTERM");
    const exit = await within(d.exited, 5_000);
    expect(exit).toEqual({ code: 1, signal: null });
    expect(Date.now() - started).toBeLessThan(2_000);
  }, 60_000);
});
