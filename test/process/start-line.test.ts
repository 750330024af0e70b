/**
 * The daemon's start line and log formats, from a real daemon process: the
 * "FileStorage is serving" line names the address, the storage folder, the
 * mode (local only, GCS with fallback, GCS only, degraded), TLS, auth,
 * encryption (a count, never a key), the cache, the metrics address and the
 * version; on a terminal it is also one sentence on stderr. LOG_FORMAT=pretty
 * writes readable lines (level word, message), json stays JSON.
 */
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { BIN, spawnDaemon, type DaemonProcess } from "../kit/daemon-process.js";
import { startFakeGcs, type FakeGcs } from "../kit/fake-gcs.js";
import { freePort } from "../kit/free-port.js";
import { makeTempDir, type TempDir } from "../kit/temp-dir.js";
import { makePki } from "../support/certs.js";
import { tokenEntry, writeTokenFile } from "../support/tokens.js";
import { VERSION } from "../../server/version.js";

let dir: TempDir;
let gcs: FakeGcs;
let n = 0;
const daemons: DaemonProcess[] = [];

beforeAll(async () => {
  dir = await makeTempDir("fs-start-line-");
  gcs = await startFakeGcs();
});
afterEach(async () => {
  for (const d of daemons.splice(0)) await d.stop();
});
afterAll(async () => {
  await gcs?.stop();
  await dir?.cleanup();
});

const START_FIELDS = ["address", "storage", "mode", "tls", "auth", "encryption", "cache", "metrics", "version"] as const;
type StartFields = Record<(typeof START_FIELDS)[number], string>;

/** A new folder under the test's temp folder. */
const folder = (name: string) => fs.mkdirSync(path.join(dir.path, name), { recursive: true })!;

/** A fresh storage folder (absolute) for one daemon. */
const storageFolder = () => path.join(dir.path, `store-${++n}`);

async function daemon(env: Record<string, string>, opts: Parameters<typeof spawnDaemon>[1] = {}): Promise<DaemonProcess> {
  const d = await spawnDaemon(env, opts);
  daemons.push(d);
  return d;
}

/** Every stdout line of `d` as parsed JSON (throws on a line that is not JSON). */
const jsonLines = (d: DaemonProcess) =>
  d.stdout().split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as Record<string, unknown> & { msg?: string; level?: number });

/** The start line's fields, exactly those. */
function startFields(d: DaemonProcess): StartFields {
  const line = jsonLines(d).find((l) => l.msg === "FileStorage is serving");
  if (!line) throw new Error(`no start line in: ${d.stdout()}`);
  return Object.fromEntries(START_FIELDS.map((f) => [f, line[f]])) as StartFields;
}

const gcsEnv = (bucket: string, endpoint: string) => ({
  GCS_BUCKET_NAME: bucket,
  GCS_PROJECT_ID: "test",
  GCS_API_ENDPOINT: endpoint,
  MAX_RETRIES: "0",
  TIMEOUT_SECONDS: "2",
});

describe("the start line", () => {
  test("local only, with TLS, two tokens and two encryption keys: counts, never the keys or the tokens", async () => {
    const storage = storageFolder();
    const pki = makePki(folder("pki-1"));
    const key = randomBytes(32).toString("base64");
    const previous = randomBytes(32).toString("base64");
    const tokens = writeTokenFile(dir.path, "tokens.json", [
      tokenEntry("ci", "token-ci-9d8e7f", ["ci/"], ["read", "write"]),
      tokenEntry("ops", "token-ops-1a2b3c", [""], ["admin"]),
    ]);
    const metricsPort = await freePort();
    const d = await daemon({
      LOCAL_STORAGE_PATH: storage,
      TLS_CERT_FILE: pki.server.certFile,
      TLS_KEY_FILE: pki.server.keyFile,
      AUTH_TOKENS_FILE: tokens,
      ENABLE_ENCRYPTION: "true",
      ENCRYPTION_KEY: key,
      ENCRYPTION_PREVIOUS_KEYS: previous,
      METRICS_PORT: String(metricsPort),
    });
    expect(startFields(d)).toEqual({
      address: d.address,
      storage,
      mode: "local only",
      tls: "on",
      auth: "on (2 tokens)",
      encryption: "on (2 keys)",
      cache: "memory (100 MiB)",
      metrics: `127.0.0.1:${metricsPort}`,
      version: VERSION,
    });
    for (const secret of [key, previous, "token-ci-9d8e7f", "token-ops-1a2b3c"]) expect(d.stdout() + d.stderr()).not.toContain(secret);
  });

  test("local only, everything off; a relative LOCAL_STORAGE_PATH is named resolved", async () => {
    const storage = storageFolder();
    const d = await daemon({ LOCAL_STORAGE_PATH: path.relative(process.cwd(), storage), ENABLE_CACHE: "false" });
    expect(startFields(d)).toEqual({
      address: d.address,
      storage,
      mode: "local only",
      tls: "off",
      auth: "off",
      encryption: "off",
      cache: "off",
      metrics: "off",
      version: VERSION,
    });
  });

  test("GCS with local fallback, mutual TLS without a tokens file", async () => {
    const pki = makePki(folder("pki-2"));
    const bucket = `start-line-${process.pid}-a`;
    const d = await daemon({
      ...gcsEnv(bucket, gcs.url),
      LOCAL_STORAGE_PATH: storageFolder(),
      TLS_CERT_FILE: pki.server.certFile,
      TLS_KEY_FILE: pki.server.keyFile,
      TLS_CLIENT_CA_FILE: pki.ca.certFile,
    });
    expect(startFields(d)).toMatchObject({
      mode: `GCS bucket ${bucket} with local fallback`,
      tls: "on (mTLS)",
      auth: "on (client certificates)",
      encryption: "off",
      cache: "memory (100 MiB)",
    });
  });

  test("GCS only when fallback is off", async () => {
    const bucket = `start-line-${process.pid}-b`;
    const d = await daemon({ ...gcsEnv(bucket, gcs.url), LOCAL_STORAGE_PATH: storageFolder(), ENABLE_LOCAL_FALLBACK: "false" });
    expect(startFields(d).mode).toBe(`GCS only (bucket ${bucket})`);
  });

  test("degraded when GCS is unreachable at start-up (its endpoint a closed port)", async () => {
    const bucket = `start-line-${process.pid}-c`;
    const storage = storageFolder();
    const d = await daemon({ ...gcsEnv(bucket, `http://127.0.0.1:${await freePort()}`), LOCAL_STORAGE_PATH: storage });
    expect(startFields(d)).toEqual({
      address: d.address,
      storage,
      mode: `degraded: GCS unreachable, writing to local (bucket ${bucket})`,
      tls: "off",
      auth: "off",
      encryption: "off",
      cache: "memory (100 MiB)",
      metrics: "off",
      version: VERSION,
    });
  });

  test("on a terminal the start line is also one sentence on stderr", () => {
    const storage = storageFolder();
    // script(1) gives the daemon a pseudo-terminal; timeout stops it once it has started.
    const env = `LOCAL_STORAGE_PATH=${storage} LISTEN_ADDRESS=127.0.0.1:0 METRICS_PORT=0 ENABLE_CACHE=false`;
    const run = spawnSync("script", ["-qec", `env ${env} timeout -s TERM 4 ${process.execPath} ${BIN} serve`, "/dev/null"], {
      encoding: "utf8",
      timeout: 20_000,
    });
    const lines = run.stdout.split(/\r?\n/);
    const sentence = lines.find((l) => l.startsWith("FileStorage "));
    expect(sentence).toMatch(
      new RegExp(
        `^FileStorage ${VERSION.replaceAll(".", "\\.")} serving on 127\\.0\\.0\\.1:\\d+: local only; storage ${storage}; ` +
          "TLS off; auth off; encryption off; cache off; metrics off$",
      ),
    );
  });
});

describe("LOG_FORMAT", () => {
  test("pretty: readable lines with the level word and the message, no JSON", async () => {
    let serving = false;
    const d = await daemon(
      { ...gcsEnv(`start-line-${process.pid}-d`, `http://127.0.0.1:${await freePort()}`), LOCAL_STORAGE_PATH: storageFolder(), LOG_FORMAT: "pretty" },
      {
        // The message line comes first, then its fields one per line.
        ready: (line) => {
          if (line.includes("INFO: FileStorage is serving")) serving = true;
          return serving ? /^\s+address: "(.+)"$/.exec(line)?.[1] : undefined;
        },
      },
    );
    await d.stop();
    const lines = d.stdout().split("\n").filter((l) => l !== "");
    for (const line of lines) expect(() => JSON.parse(line)).toThrow();
    const stamp = String.raw`^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} [+-]\d{4}\] `;
    expect(lines).toContainEqual(expect.stringMatching(new RegExp(`${stamp}WARN: GCS is unreachable at start-up: serving from the local tier until it answers$`)));
    expect(lines).toContainEqual(expect.stringMatching(new RegExp(`${stamp}INFO: FileStorage is serving$`)));
    expect(lines).toContain('    mode: "degraded: GCS unreachable, writing to local (bucket start-line-' + process.pid + '-d)"');
    expect(lines).toContainEqual(expect.stringMatching(new RegExp(`${stamp}INFO: FileStorage stopped$`)));
  });

  test("pretty with stdout's reader gone (serve | head -1): logging stops and SIGTERM exits at once, as with JSON", async () => {
    let serving = false;
    const d = await daemon(
      { LOCAL_STORAGE_PATH: storageFolder(), LOG_FORMAT: "pretty" },
      {
        closeStdoutWhenServing: true,
        ready: (line) => {
          if (line.includes("INFO: FileStorage is serving")) serving = true;
          return serving ? /^\s+address: "(.+)"$/.exec(line)?.[1] : undefined;
        },
      },
    );
    const started = Date.now();
    expect(await d.kill("SIGTERM")).toEqual({ code: 0, signal: null });
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(d.stderr()).toMatch(/stdout failed \(EPIPE\): logging stopped/);
  });

  test("json (the default): every line is one JSON object with a numeric level and msg", async () => {
    const d = await daemon({ LOCAL_STORAGE_PATH: storageFolder(), LOG_FORMAT: "json" });
    await d.stop();
    const lines = jsonLines(d);
    expect(lines.map((l) => [l.level, l.msg])).toEqual([
      [30, "FileStorage is serving"],
      [30, "shutting down"],
      [30, "FileStorage stopped"],
    ]);
  });
});
