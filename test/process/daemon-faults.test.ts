/**
 * The daemon as a process: memory on a 512 MiB stream, kill -9 in the middle
 * of an upload, concurrent writers, graceful shutdown, bad configuration.
 */
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { crc32c } from "@node-rs/crc32";
import { FileStorageClient } from "../../client/src/index.js";
import { BIN, spawnDaemon } from "../kit/daemon-process.js";

const MiB = 1024 * 1024;
let storage: string;

beforeEach(async () => {
  storage = await fs.mkdtemp(path.join(os.tmpdir(), "fs-faults-"));
});
afterEach(async () => {
  await fs.rm(storage, { recursive: true, force: true });
});

/** A deterministic pseudo-random stream of `total` bytes, generated as it is read. */
async function* generated(total: number, seed = 1, chunk = MiB): AsyncGenerator<Uint8Array> {
  const block = Buffer.alloc(chunk);
  let x = seed;
  for (let i = 0; i < chunk; i += 4) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    block.writeUInt32LE(x, i);
  }
  for (let sent = 0; sent < total; sent += chunk) {
    const n = Math.min(chunk, total - sent);
    // A fresh buffer each time, as a network source would give; vary a byte per chunk.
    const out = Buffer.from(block.subarray(0, n));
    out[0] = (sent / chunk) & 0xff;
    yield out;
  }
}

async function crcOf(source: AsyncIterable<Uint8Array>): Promise<{ crc: number; size: number }> {
  let crc = 0;
  let size = 0;
  for await (const c of source) {
    crc = crc32c(c as Buffer, crc);
    size += c.byteLength;
  }
  return { crc, size };
}

test("a 512 MiB stream up and down keeps the daemon's peak RSS under 200 MiB", async () => {
  const total = 512 * MiB;
  const daemon = await spawnDaemon({ LOCAL_STORAGE_PATH: storage, ENABLE_CACHE: "true" });
  const client = new FileStorageClient(daemon.address);
  try {
    const expected = await crcOf(generated(total));
    const info = await client.upload("model/big.bin", generated(total), { size: total });
    expect(Number(info.size)).toBe(total);
    expect(info.crc32c).toBe(expected.crc);
    const { stream } = await client.download("model/big.bin");
    const got = await crcOf(stream);
    expect(got).toEqual(expected);
    const peak = daemon.peakRss();
    console.log(`daemon peak RSS over a 512 MiB upload + download: ${(peak / MiB).toFixed(1)} MiB`);
    expect(peak).toBeLessThan(200 * MiB);
  } finally {
    client.close();
    await daemon.kill();
  }
}, 300_000);

test("kill -9 in the middle of an upload: after restart the previous version is intact and nothing stray is left", async () => {
  let daemon = await spawnDaemon({ LOCAL_STORAGE_PATH: storage });
  let client = new FileStorageClient(daemon.address);
  const previous = Buffer.from("the previous version");
  await client.store("models/m.bin", previous);
  const before = await client.listKeys({ prefix: "" });

  // Start a 256 MiB upload and kill the daemon once some of it arrived.
  let sent = 0;
  const upload = client.upload("models/m.bin", generated(256 * MiB), {
    onProgress: (n) => {
      sent = n;
    },
  });
  const uploadFailed = upload.then(
    () => false,
    () => true,
  );
  while (sent < 32 * MiB) await new Promise((r) => setTimeout(r, 10));
  const killed = await daemon.kill("SIGKILL");
  expect(killed.signal).toBe("SIGKILL");
  expect(await uploadFailed).toBe(true);
  client.close();

  daemon = await spawnDaemon({ LOCAL_STORAGE_PATH: storage });
  client = new FileStorageClient(daemon.address);
  try {
    expect(Buffer.compare((await client.retrieve("models/m.bin")) as Buffer, previous)).toBe(0);
    const after = await client.listKeys({ prefix: "" });
    expect(after.keys).toEqual(before.keys);
    // The start-up pass removed the interrupted write's temp file.
    const tmpDir = path.join(storage, "tmp");
    const leftovers = await fs.readdir(tmpDir).catch(() => []);
    expect(leftovers).toEqual([]);
  } finally {
    client.close();
    await daemon.kill();
  }
}, 120_000);

test("many concurrent writers to one key never produce a torn object", async () => {
  const daemon = await spawnDaemon({ LOCAL_STORAGE_PATH: storage });
  const client = new FileStorageClient(daemon.address);
  try {
    const writers = 16;
    const size = 2 * MiB + 123;
    const bodies = Array.from({ length: writers }, (_, i) => Buffer.alloc(size, i + 1));
    const reads: Promise<void>[] = [];
    const writes = bodies.map((b, i) =>
      // Half through the stream, half unary (under the 4 MiB limit both are possible).
      i % 2 ? client.upload("contended", [b.subarray(0, MiB), b.subarray(MiB)]) : client.store("contended", b),
    );
    for (let r = 0; r < 20; r++) {
      reads.push(
        client.retrieve("contended").then((v) => {
          if (v === null) return;
          const buf = v as Buffer;
          expect(buf.length).toBe(size);
          // Every byte from one writer: never a mix.
          expect(buf.every((x) => x === buf[0])).toBe(true);
        }),
      );
    }
    const infos = await Promise.all(writes);
    await Promise.all(reads);
    const final = (await client.retrieve("contended")) as Buffer;
    expect(final.every((x) => x === final[0])).toBe(true);
    const generations = new Set(infos.map((i) => i.generation));
    expect(generations.size).toBe(writers);
  } finally {
    client.close();
    await daemon.kill();
  }
}, 120_000);

test("SIGTERM drains an in-flight upload, then the daemon exits 0", async () => {
  const daemon = await spawnDaemon({ LOCAL_STORAGE_PATH: storage, SHUTDOWN_GRACE_SECONDS: "20" });
  const client = new FileStorageClient(daemon.address);
  try {
    // Connect first: while a channel connects, grpc-js buffers writes without
    // backpressure, so "sent" would not mean "reached the daemon".
    await client.exists("drain/warm-up");
    let sent = 0;
    const upload = client.upload("drain/x", generated(64 * MiB), { onProgress: (n) => (sent = n) });
    while (sent < 24 * MiB) await new Promise((r) => setTimeout(r, 5));
    daemon.child.kill("SIGTERM");
    const info = await upload;
    expect(Number(info.size)).toBe(64 * MiB);
    const exit = await daemon.exited;
    expect(exit.code).toBe(0);
  } finally {
    client.close();
    await daemon.kill();
  }
  // The drained upload is durable.
  const again = await spawnDaemon({ LOCAL_STORAGE_PATH: storage });
  const c2 = new FileStorageClient(again.address);
  try {
    expect(Number((await c2.stat("drain/x"))?.size)).toBe(64 * MiB);
  } finally {
    c2.close();
    await again.kill();
  }
}, 120_000);

describe("a bad setting stops the daemon with one line naming it", () => {
  test.each([
    [{ MAX_RETRIES: "abc" }, /MAX_RETRIES="abc".*integer/],
    [{ LISTEN_ADDRESS: "nonsense" }, /LISTEN_ADDRESS/],
    [{ ENABLE_ENCRYPTION: "true" }, /ENCRYPTION_KEY/],
    [{ ENABLE_ENCRYPTION: "true", ENCRYPTION_KEY: "c2hvcnQ=" }, /ENCRYPTION_KEY/],
    [{ METRICS_PORT: "70000" }, /METRICS_PORT/],
    [{ ENABLE_CACHE: "maybe" }, /ENABLE_CACHE/],
  ])("%j", (env, re) => {
    const r = spawnSync(process.execPath, [BIN, "serve"], {
      env: { PATH: process.env.PATH, LOCAL_STORAGE_PATH: storage, ...env },
      encoding: "utf8",
      timeout: 20_000,
    });
    expect(r.status).not.toBe(0);
    const lines = r.stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(re);
    expect(r.stderr).not.toMatch(/c2hvcnQ/);
  });
});
