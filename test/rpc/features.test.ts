/**
 * Every feature of issue 4 on at once through the real gRPC server (cache,
 * compression, encryption, quotas, expiry, metrics), and the logs: pino JSON
 * lines, a request id on every failed call's line (also sent to the client as
 * x-request-id, and in the message of INTERNAL / DATA_LOSS), no key material.
 */
import { randomBytes } from "node:crypto";
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { FileStorageClient } from "../../client/src/index.js";
import { loadConfig } from "../../server/config/load-config.js";
import { createLogger } from "../../server/logger.js";
import { startServer, type RunningServer } from "../../server/server.js";
import { failure } from "../support/expect-failure.js";

const KEY = randomBytes(32);

interface LogLine {
  level: number;
  time: number;
  msg: string;
  requestId?: string;
  method?: string;
  code?: string;
}

let server: RunningServer;
let client: FileStorageClient;
let storagePath: string;
const lines: string[] = [];
const logs = () => lines.map((l) => JSON.parse(l) as LogLine);

beforeAll(async () => {
  storagePath = await fs.mkdtemp(path.join(os.tmpdir(), "fs-features-"));
  const config = loadConfig({
    env: {
      LISTEN_ADDRESS: "127.0.0.1:0",
      METRICS_PORT: "0",
      LOG_LEVEL: "debug",
      LOCAL_STORAGE_PATH: storagePath,
      ENABLE_ENCRYPTION: "true",
      ENCRYPTION_KEY: KEY.toString("base64"),
      QUOTAS: JSON.stringify({ "quota/": 50_000 }),
      EXPIRY_SWEEP_SECONDS: "1",
      CACHE_MAX_OBJECT_BYTES: "8192",
    },
  });
  server = await startServer(config, { logger: createLogger(config.logLevel, { write: (l: string) => void lines.push(l) }) });
  client = new FileStorageClient(server.address, { retries: 0 });
});
afterAll(async () => {
  client.close();
  await server.shutdown(2000);
  await fs.rm(storagePath, { recursive: true, force: true });
});


test("all features together: compressed, encrypted, cached, quota-checked, expiring", async () => {
  const stats0 = await client.getStats();
  expect(stats0).toMatchObject({ cacheEnabled: true, compressionEnabled: true, encryptionEnabled: true });

  const doc = { items: Array.from({ length: 200 }, (_, i) => ({ i, text: "compress me" })) };
  const info = await client.store("quota/doc", doc, { metadata: { owner: "tests" } });
  expect(info).toMatchObject({ compressed: true, encrypted: true, metadata: { owner: "tests" } });
  expect(info.storedSize).toBeLessThan(info.size);
  // Served from the cache, which holds the original bytes.
  expect(await client.retrieve("quota/doc")).toEqual(doc);
  const stats1 = await client.getStats();
  expect(stats1.cacheHits).toBeGreaterThan(stats0.cacheHits);
  expect(stats1.compressionSavingsBytes).toBeGreaterThan(stats0.compressionSavingsBytes);

  // The quota counts original bytes, not the smaller stored ones.
  const err = await failure(client.store("quota/big", randomBytes(50_000 - info.size + 1)));
  expect(err.codeName).toBe("RESOURCE_EXHAUSTED");
  expect(err.details).toContain('"quota/"');

  await client.store("quota/brief", "soon gone", { expiresAt: new Date(Date.now() + 700) });
  expect(await client.retrieve("quota/brief")).toBe("soon gone");
  await new Promise((r) => setTimeout(r, 800));
  expect(await client.retrieve("quota/brief")).toBeNull();
  expect((await client.listKeys({ prefix: "quota/" })).keys).toEqual(["quota/doc"]);
});

test("every failed call has a request id: on its log line, in x-request-id, and in the message of server faults", async () => {
  const failures = [
    await failure(client.download("missing/key")), // NOT_FOUND (RetrieveStream)
    await failure(client.store("", "no key")), // INVALID_ARGUMENT
    await failure(client.store("quota/too-big", randomBytes(60_000))), // RESOURCE_EXHAUSTED
  ];
  // A DATA_LOSS: a stored byte flipped under the daemon (over CACHE_MAX_OBJECT_BYTES, so read from disk).
  // Over the local tier's inline limit too, so it sits in a blob file.
  await client.store("tamper/me", randomBytes(100_000));
  const blob = await newestFile(path.join(storagePath, "blobs"));
  const bytes = await fs.readFile(blob);
  bytes[bytes.length >> 1] ^= 0xff;
  await fs.writeFile(blob, bytes);
  const lost = await failure(client.retrieve("tamper/me"));
  expect(lost.codeName).toBe("DATA_LOSS");
  const lostId = lost.metadata?.get("x-request-id")[0];
  expect(lost.details).toContain(`request id ${lostId}`);
  expect(logs().find((l) => l.requestId === lostId)?.level).toBe(50);
  failures.push(lost);

  for (const err of failures) {
    const id = err.metadata?.get("x-request-id")[0];
    expect(typeof id).toBe("string");
    const line = logs().find((l) => l.requestId === id);
    expect(line).toBeDefined();
    expect(line!.code).toBe(err.codeName);
  }
});

test("every error line carries a request id; no line holds the key", async () => {
  const all = logs();
  expect(all.length).toBeGreaterThan(0);
  for (const l of all) {
    expect(typeof l.level).toBe("number");
    expect(typeof l.time).toBe("number");
    if (l.level >= 50) expect(l.requestId).toMatch(/^[0-9a-f-]{36}$/);
  }
  const text = lines.join("");
  for (const spelling of [KEY.toString("base64"), KEY.toString("base64url"), KEY.toString("hex")]) expect(text).not.toContain(spelling);
});

/** The most recently modified file under `dir`. */
async function newestFile(dir: string): Promise<string> {
  let best: { file: string; mtime: number } | undefined;
  for (const name of await fs.readdir(dir, { recursive: true })) {
    const file = path.join(dir, name);
    const st = await fs.stat(file);
    if (st.isFile() && (!best || st.mtimeMs > best.mtime)) best = { file, mtime: st.mtimeMs };
  }
  return best!.file;
}
