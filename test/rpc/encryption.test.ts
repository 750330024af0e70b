/**
 * Encryption at rest (and compression with it) through the real gRPC server,
 * on the local tier and on the GCS tier (fake-gcs-server): round trips in
 * every combination, ObjectInfo flags and sizes, a tampered stored byte gives
 * DATA_LOSS (never garbage), keys rotate, a missing key is FAILED_PRECONDITION
 * naming its id, fallback copies are encrypted too, and no key reaches a log.
 */
import Database from "better-sqlite3";
import { Storage } from "@google-cloud/storage";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { FileStorageClient } from "../../client/src/index.js";
import { gcsStorageOptions } from "../../server/backends/gcs/gcs-backend.js";
import { deriveKeyId } from "../../server/codec/keyring.js";
import { ConfigError, loadConfig } from "../../server/config/load-config.js";
import { createLogger } from "../../server/logger.js";
import { startServer, type RunningServer } from "../../server/server.js";
import { startFakeGcs, type FakeGcs } from "../kit/fake-gcs.js";
import { failure } from "../support/expect-failure.js";

const KiB = 1024;
const KEY_A = randomBytes(32);
const KEY_B = randomBytes(32);
const b64 = (k: Buffer) => k.toString("base64");
/** Every spelling of the keys that must never appear in a log. */
const KEY_SPELLINGS = [KEY_A, KEY_B].flatMap((k) => [k.toString("base64"), k.toString("base64url"), k.toString("hex")]);

let gcs: FakeGcs;
let bucketSeq = 0;
const logLines: string[] = [];

beforeAll(async () => {
  gcs = await startFakeGcs();
});
afterAll(async () => {
  await gcs?.stop();
  const all = logLines.join("");
  expect(all.length).toBeGreaterThan(0);
  for (const spelling of KEY_SPELLINGS) expect(all).not.toContain(spelling);
});

type Tier = "local" | "gcs";

interface Daemon {
  client: FileStorageClient;
  server: RunningServer;
  storagePath: string;
  bucket?: string;
  logs: string[];
  stop(opts?: { keepFolder?: boolean }): Promise<void>;
}

/** A daemon at LOG_LEVEL=debug whose log lines are kept (also in logLines). */
async function startLogged(env: Record<string, string>): Promise<Daemon> {
  const storagePath = env.LOCAL_STORAGE_PATH ?? (await fs.mkdtemp(path.join(os.tmpdir(), "fs-enc-")));
  const logs: string[] = [];
  const config = loadConfig({
    env: { LISTEN_ADDRESS: "127.0.0.1:0", METRICS_PORT: "0", LOG_LEVEL: "debug", ...env, LOCAL_STORAGE_PATH: storagePath },
  });
  const destination = {
    write(line: string) {
      logs.push(line);
      logLines.push(line);
    },
  };
  const server = await startServer(config, { logger: createLogger(config.logLevel, destination) });
  const client = new FileStorageClient(server.address, { retries: 0 });
  return {
    client,
    server,
    storagePath,
    bucket: env.GCS_BUCKET_NAME,
    logs,
    async stop(opts = {}) {
      client.close();
      await server.shutdown(2000);
      if (!opts.keepFolder) await fs.rm(storagePath, { recursive: true, force: true });
    },
  };
}

function tierEnv(tier: Tier, bucket = `enc-${++bucketSeq}-bucket`): Record<string, string> {
  return tier === "gcs"
    ? { GCS_BUCKET_NAME: bucket, GCS_PROJECT_ID: "test", GCS_API_ENDPOINT: gcs.url, MAX_RETRIES: "0" }
    : {};
}


async function readStream(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of stream) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

function expectBytes(actual: unknown, expected: Buffer): void {
  expect(Buffer.isBuffer(actual)).toBe(true);
  expect((actual as Buffer).equals(expected)).toBe(true);
}

/** Flips one byte in the middle of the stored bytes of `key`, wherever the daemon keeps it. */
async function tamper(d: Daemon, key: string): Promise<void> {
  if (d.bucket) {
    const file = new Storage(gcsStorageOptions({ apiEndpoint: gcs.url, projectId: "test", timeoutMs: 5000 })).bucket(d.bucket).file(key);
    const [md] = await file.getMetadata();
    const [bytes] = await file.download();
    bytes[bytes.length >> 1] ^= 0x01;
    // Same custom metadata (x-fs-*): only the stored byte differs.
    await file.save(bytes, { resumable: false, validation: false, metadata: { contentType: md.contentType, metadata: md.metadata } });
    return;
  }
  // Small objects live inline in the index (data column); larger ones in blob files.
  const db = new Database(path.join(d.storagePath, "index.sqlite"), { fileMustExist: true });
  try {
    const row = db.prepare("SELECT blob, data FROM objects WHERE key = ?").get(key) as { blob: string | null; data: Buffer | null } | undefined;
    expect(row).toBeDefined();
    if (row!.blob === null) {
      const bytes = Buffer.from(row!.data!);
      bytes[bytes.length >> 1] ^= 0x01;
      db.prepare("UPDATE objects SET data = ? WHERE key = ?").run(bytes, key);
      return;
    }
    const file = path.join(d.storagePath, "blobs", row!.blob.slice(0, 2), row!.blob);
    const bytes = await fs.readFile(file);
    bytes[bytes.length >> 1] ^= 0x01;
    await fs.writeFile(file, bytes);
  } finally {
    db.close();
  }
}

/** The stored bytes of `key` on the tier (for checking they are not plaintext). */
async function storedBytes(d: Daemon, key: string): Promise<Buffer> {
  if (d.bucket) {
    const file = new Storage(gcsStorageOptions({ apiEndpoint: gcs.url, projectId: "test", timeoutMs: 5000 })).bucket(d.bucket).file(key);
    return (await file.download())[0];
  }
  const db = new Database(path.join(d.storagePath, "index.sqlite"), { readonly: true, fileMustExist: true });
  try {
    const row = db.prepare("SELECT blob, data FROM objects WHERE key = ?").get(key) as { blob: string | null; data: Buffer | null };
    if (row.blob === null) return Buffer.from(row.data!);
    return await fs.readFile(path.join(d.storagePath, "blobs", row.blob.slice(0, 2), row.blob));
  } finally {
    db.close();
  }
}

const MODES = [
  { name: "plain", gzip: false, aes: false },
  { name: "gzip", gzip: true, aes: false },
  { name: "aes", gzip: false, aes: true },
  { name: "gzip+aes", gzip: true, aes: true },
] as const;

describe.each(["local", "gcs"] as const)("%s tier", (tier) => {
  describe.each(MODES)("$name", (mode) => {
    let d: Daemon;
    beforeAll(async () => {
      d = await startLogged({
        ...tierEnv(tier),
        ENABLE_CACHE: "false", // every read goes to the tier
        ENABLE_COMPRESSION: String(mode.gzip),
        COMPRESSION_THRESHOLD_BYTES: "1024",
        ENABLE_ENCRYPTION: String(mode.aes),
        ...(mode.aes ? { ENCRYPTION_KEY: b64(KEY_A) } : {}),
      });
    });
    afterAll(async () => {
      await d?.stop();
    });

    test("round trips with the right ObjectInfo; savings counted", async () => {
      const { client } = d;
      const before = await client.getStats();
      expect(before.compressionEnabled).toBe(mode.gzip);
      expect(before.encryptionEnabled).toBe(mode.aes);

      const json = { rows: Array.from({ length: 3000 }, (_, i) => ({ id: i, label: "a repetitive label" })) };
      const j = await client.store("rt/json", json);
      expect(await client.retrieve("rt/json")).toEqual(json);
      expect(j.compressed).toBe(mode.gzip);
      expect(j.encrypted).toBe(mode.aes);
      if (mode.gzip) expect(j.storedSize).toBeLessThan(j.size / 4);
      else if (mode.aes) expect(j.storedSize).toBeGreaterThan(j.size);
      else expect(j.storedSize).toBe(j.size);
      expect(await client.stat("rt/json")).toMatchObject({ size: j.size, storedSize: j.storedSize, compressed: j.compressed, encrypted: j.encrypted });

      // Random bytes do not shrink: never compressed.
      const random = randomBytes(100 * KiB);
      const r = await client.store("rt/random", random);
      expectBytes(await client.retrieve("rt/random"), random);
      expect(r).toMatchObject({ size: random.length, compressed: false, encrypted: mode.aes });
      if (mode.aes) expect(r.storedSize).toBeGreaterThan(random.length);
      else expect(r.storedSize).toBe(random.length);

      // Under the threshold: never compressed.
      const small = await client.store("rt/small", "tiny text");
      expect(await client.retrieve("rt/small")).toBe("tiny text");
      expect(small).toMatchObject({ size: 9, compressed: false, encrypted: mode.aes });

      // Empty objects work in every mode.
      await client.store("rt/empty", Buffer.alloc(0));
      expectBytes(await client.retrieve("rt/empty"), Buffer.alloc(0));

      // A streamed object across many segments, whole and in ranges.
      const big = Buffer.from("0123456789abcdef".repeat(300 * KiB / 16 * 10)); // ~3 MiB, compressible
      const s = await client.upload("rt/stream", [big.subarray(0, 1_000_000), big.subarray(1_000_000)], { size: big.length });
      expect(s).toMatchObject({ size: big.length, compressed: mode.gzip, encrypted: mode.aes });
      expectBytes(await readStream((await client.download("rt/stream")).stream), big);
      for (const [offset, limit] of [[0, 10], [65_530, 20], [1_000_001, 200_000], [big.length - 5, 0]]) {
        const part = await readStream((await client.download("rt/stream", { offset, limit })).stream);
        expectBytes(part, big.subarray(offset, limit ? offset + limit : undefined));
      }

      const after = await client.getStats();
      if (mode.gzip) {
        expect(after.compressionSavingsBytes).toBeGreaterThan(before.compressionSavingsBytes);
        expect(after.compressionSavingsBytes - before.compressionSavingsBytes).toBeGreaterThanOrEqual(j.size / 2);
      } else {
        expect(after.compressionSavingsBytes).toBe(before.compressionSavingsBytes);
      }
      if (mode.aes) {
        // Nothing readable at rest.
        const atRest = await storedBytes(d, "rt/json");
        expect(atRest.includes(Buffer.from("a repetitive label"))).toBe(false);
        expect(atRest.subarray(0, 4).toString()).toBe("FSE1");
      }
    });

    test("a tampered stored byte gives DATA_LOSS with a request id, never garbage", async () => {
      const { client } = d;
      const json = { rows: Array.from({ length: 3000 }, (_, i) => ({ id: i, label: "tamper me" })) };
      const random = randomBytes(200 * KiB);
      await client.store("tamper/json", json);
      await client.store("tamper/random", random);
      await tamper(d, "tamper/json");
      await tamper(d, "tamper/random");

      for (const key of ["tamper/json", "tamper/random"]) {
        const err = await failure(client.retrieve(key));
        expect(err.codeName).toBe("DATA_LOSS");
        const id = /request id ([0-9a-f-]{36})/.exec(err.details)?.[1];
        expect(id).toBeDefined();
        // The log line carries the same id.
        const line = d.logs.map((l) => JSON.parse(l) as { requestId?: string; level: number }).find((l) => l.requestId === id);
        expect(line?.level).toBe(50);
        expect(err.metadata?.get("x-request-id")).toEqual([id]);

        const streamErr = await failure((async () => readStream((await client.download(key)).stream))());
        expect(streamErr.codeName).toBe("DATA_LOSS");
      }
    });
  });
});

describe.each(["local", "gcs"] as const)("key rotation on the %s tier", (tier) => {
  test("old objects stay readable while the old key is listed; without it FAILED_PRECONDITION names the key id", async () => {
    const storagePath = await fs.mkdtemp(path.join(os.tmpdir(), "fs-rot-"));
    const env = { ...tierEnv(tier), LOCAL_STORAGE_PATH: storagePath, ENABLE_ENCRYPTION: "true", ENABLE_CACHE: "false" };
    try {
      const d1 = await startLogged({ ...env, ENCRYPTION_KEY: b64(KEY_A) });
      await d1.client.store("rot/old", { written: "with key A" });
      await d1.stop({ keepFolder: true });

      const d2 = await startLogged({ ...env, ENCRYPTION_KEY: b64(KEY_B), ENCRYPTION_PREVIOUS_KEYS: b64(KEY_A) });
      expect(await d2.client.retrieve("rot/old")).toEqual({ written: "with key A" });
      await d2.client.store("rot/new", { written: "with key B" });
      await d2.stop({ keepFolder: true });

      const d3 = await startLogged({ ...env, ENCRYPTION_KEY: b64(KEY_B) });
      expect(await d3.client.retrieve("rot/new")).toEqual({ written: "with key B" });
      const err = await failure(d3.client.retrieve("rot/old"));
      expect(err.codeName).toBe("FAILED_PRECONDITION");
      expect(err.details).toContain(deriveKeyId(KEY_A));
      const streamErr = await failure((async () => readStream((await d3.client.download("rot/old")).stream))());
      expect(streamErr.codeName).toBe("FAILED_PRECONDITION");
      // Stat still answers (metadata is not encrypted).
      expect(await d3.client.stat("rot/old")).toMatchObject({ encrypted: true });
      await d3.stop({ keepFolder: true });

      const d4 = await startLogged({ ...env, ENABLE_ENCRYPTION: "false" });
      const off = await failure(d4.client.retrieve("rot/new"));
      expect(off.codeName).toBe("FAILED_PRECONDITION");
      expect(off.details).toContain(deriveKeyId(KEY_B));
      await d4.stop({ keepFolder: true });
    } finally {
      await fs.rm(storagePath, { recursive: true, force: true });
    }
  });
});

test("fallback copies are encrypted too, and replicate as they are", async () => {
  const own = await startFakeGcs({ backend: "filesystem" });
  const d = await startLogged({
    GCS_BUCKET_NAME: "fallback-enc-bucket",
    GCS_PROJECT_ID: "test",
    GCS_API_ENDPOINT: own.url,
    MAX_RETRIES: "0",
    TIMEOUT_SECONDS: "2",
    REPLICATION_INTERVAL_MS: "100",
    ENABLE_ENCRYPTION: "true",
    ENCRYPTION_KEY: b64(KEY_A),
  });
  try {
    await own.kill();
    const marker = "PLAINTEXT-MARKER ".repeat(200);
    const info = await d.client.store("fb/secret", marker);
    expect(info).toMatchObject({ encrypted: true, pendingReplication: true, backend: "local" });
    expect(await d.client.retrieve("fb/secret")).toBe(marker);
    // Nothing under the storage folder holds the plaintext.
    const files = (await fs.readdir(d.storagePath, { recursive: true })).map((f) => path.join(d.storagePath, f));
    for (const f of files) {
      if (!(await fs.stat(f)).isFile()) continue;
      expect((await fs.readFile(f)).includes(Buffer.from("PLAINTEXT-MARKER"))).toBe(false);
    }
    await own.start();
    const deadline = Date.now() + 20_000;
    while ((await d.client.getStats()).pendingReplication > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
    }
    expect((await d.client.getStats()).pendingReplication).toBe(0);
    const sdk = new Storage(gcsStorageOptions({ apiEndpoint: own.url, projectId: "test", timeoutMs: 5000 }));
    const [atRest] = await sdk.bucket("fallback-enc-bucket").file("fb/secret").download();
    expect(atRest.subarray(0, 4).toString()).toBe("FSE1");
    expect(atRest.includes(Buffer.from("PLAINTEXT-MARKER"))).toBe(false);
    expect(await d.client.retrieve("fb/secret")).toBe(marker);
  } finally {
    await d.stop();
    await own.stop();
  }
}, 60_000);

test("without a valid key while enabled, the daemon refuses to start, and the message hides the value", () => {
  expect(() => loadConfig({ env: { ENABLE_ENCRYPTION: "true" } })).toThrow(ConfigError);
  const short = randomBytes(31).toString("base64");
  let message = "";
  try {
    loadConfig({ env: { ENABLE_ENCRYPTION: "true", ENCRYPTION_KEY: short } });
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    message = (err as Error).message;
  }
  expect(message).toContain("ENCRYPTION_KEY");
  expect(message).not.toContain(short);
});
