import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { ConfigError, loadConfig, settings, type Config } from "../../../server/config/load-config.js";
import { makeTempDir, type TempDir } from "../../kit/temp-dir.js";

const KEY = Buffer.alloc(32, 0xab);
const KEY_B64 = KEY.toString("base64");
const OLD_KEY = Buffer.alloc(32, 0x01);
const SHORT_KEY_B64 = Buffer.alloc(31, 0xcd).toString("base64");

let dir: TempDir;
let files: Record<"key" | "badKey" | "tokens" | "badTokens" | "newTokens" | "cnTokens" | "cert" | "tlsKey", string>;

const sha256 = (token: string) => createHash("sha256").update(token).digest();

/** A list-form entry for the token "secret-token-3", with `fields` on top. */
function entry(fields: Record<string, unknown>): Record<string, unknown> {
  return { name: "ci", sha256: sha256("secret-token-3").toString("hex"), prefixes: [""], rights: ["read"], ...fields };
}

/** A tokens file holding `content`, written once per test run. */
function tokensFile(content: unknown): string {
  const file = path.join(dir.path, `tokens-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(file, typeof content === "string" ? content : JSON.stringify(content));
  return file;
}

/** Writes a config file holding `content` (an object is written as JSON). */
async function configFile(content: unknown): Promise<string> {
  const file = path.join(dir.path, `config-${Math.random().toString(36).slice(2)}.json`);
  await fs.writeFile(file, typeof content === "string" ? content : JSON.stringify(content));
  return file;
}

/** The ConfigError loadConfig throws for `input`. */
function errorOf(input: Parameters<typeof loadConfig>[0]): ConfigError {
  try {
    loadConfig(input);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error(`expected a ConfigError for ${JSON.stringify(input.env)}`);
}

beforeAll(async () => {
  dir = await makeTempDir("config-test-");
  const write = async (name: string, content: string) => {
    const file = path.join(dir.path, name);
    await fs.writeFile(file, content);
    return file;
  };
  files = {
    key: await write("key.b64", `${KEY_B64}\n`),
    badKey: await write("bad-key.b64", SHORT_KEY_B64),
    tokens: await write("tokens.json", JSON.stringify({ "secret-token-1": ["tenants/a/", "shared/"] })),
    badTokens: await write("bad-tokens.json", JSON.stringify({ "secret-token-2": "tenants/a/" })),
    newTokens: await write("new-tokens.json", JSON.stringify([entry({ name: "ci", prefixes: ["builds/"], rights: ["read", "write"] })])),
    cnTokens: await write(
      "cn-tokens.json",
      JSON.stringify([{ name: "worker", client_cn: "worker.internal", prefixes: [""], rights: ["read"] }]),
    ),
    cert: await write("cert.pem", "cert"),
    tlsKey: await write("key.pem", "key"),
  };
});

afterAll(() => dir.cleanup());

describe("defaults", () => {
  test("an empty environment gives every documented default", () => {
    const expected: Config = {
      gcsBucketName: undefined,
      gcsProjectId: undefined,
      googleApplicationCredentials: undefined,
      gcsLocation: "US",
      gcsApiEndpoint: undefined,
      localStoragePath: path.resolve("./storage"),
      localMinFreeBytes: 64 * 1024 * 1024,
      enableLocalFallback: true,
      enableCache: true,
      cacheTtlSeconds: 3600,
      maxCacheSizeMb: 100,
      cacheMaxObjectBytes: 1024 * 1024,
      cacheUrl: undefined,
      diskCacheMaxMb: 1024,
      diskCacheMinFreeMb: 1024,
      diskCacheOnWrite: false,
      scrubBytesPerSecond: 4 * 1024 * 1024,
      scrubIntervalSeconds: 3600,
      chunkSize: 1024 * 1024,
      maxRetries: 3,
      timeoutSeconds: 30,
      gcsBreakerFailures: 5,
      gcsBreakerResetSeconds: 2,
      gcsResumableThresholdBytes: 8 * 1024 * 1024,
      gcsParallelUploadPartBytes: 16 * 1024 * 1024,
      gcsParallelUploadParts: 4,
      gcsParallelReadThresholdBytes: 64 * 1024 * 1024,
      gcsParallelReadParts: 8,
      gcsParallelReadPartBytes: 16 * 1024 * 1024,
      enableCompression: true,
      compressionThresholdBytes: 1024,
      enableEncryption: false,
      encryptionKey: undefined,
      encryptionPreviousKeys: [],
      allowUnencryptedReads: false,
      listenAddress: "127.0.0.1:50051",
      metricsPort: 8002,
      metricsHost: "127.0.0.1",
      enableTracing: false,
      tracingEndpoint: "http://127.0.0.1:4318",
      tracingSampleRatio: 1,
      maxObjectBytes: 5 * 1024 ** 4,
      maxUnaryBytes: 4 * 1024 * 1024,
      maxJsonBytes: 64 * 1024 * 1024,
      maxJsonDepth: 10000,
      maxListResponseBytes: 4 * 1024 * 1024,
      quotas: {},
      lifecycleRules: [],
      authTokensFile: undefined,
      authTokens: undefined,
      tlsCertFile: undefined,
      tlsKeyFile: undefined,
      tlsClientCaFile: undefined,
      allowInsecure: false,
      shutdownGraceSeconds: 10,
      healthCheckSeconds: 5,
      replicationIntervalMs: 2000,
      expirySweepSeconds: 60,
      uploadExpirySeconds: 86400,
      maxOpenUploads: 1000,
      maxOpenUploadsPerCaller: 100,
      gcsSweepSeconds: 3600,
      tombstoneRetentionSeconds: 604800,
      logLevel: "info",
      logFormat: "json",
    };
    const config = loadConfig({ env: {} });
    expect(config).toEqual(expected);
    // toEqual ignores undefined properties: check no unexpected keys either.
    expect(Object.keys(config).sort()).toEqual(Object.keys(expected).sort());
  });

  test("empty environment strings count as unset", () => {
    const config = loadConfig({ env: { MAX_RETRIES: "", GCS_BUCKET_NAME: "", ENABLE_CACHE: "", CONFIG_FILE: "" } });
    expect(config.maxRetries).toBe(3);
    expect(config.gcsBucketName).toBeUndefined();
    expect(config.enableCache).toBe(true);
  });
});

describe("precedence: flags > env > file > defaults", () => {
  test("each source overrides the ones below it", async () => {
    const file = await configFile({ max_retries: 5, gcs_location: "EU", chunk_size: "64KiB" });
    expect(loadConfig({ env: {}, configFile: file }).maxRetries).toBe(5);
    expect(loadConfig({ env: { MAX_RETRIES: "6" }, configFile: file }).maxRetries).toBe(6);
    expect(loadConfig({ env: { MAX_RETRIES: "6" }, flags: { maxRetries: "7" }, configFile: file }).maxRetries).toBe(7);
    const mixed = loadConfig({ env: { MAX_RETRIES: "6" }, flags: { maxRetries: 7 }, configFile: file });
    expect(mixed).toMatchObject({ maxRetries: 7, gcsLocation: "EU", chunkSize: 64 * 1024, timeoutSeconds: 30 });
  });

  test("an empty env value does not hide the file's value", async () => {
    const file = await configFile({ max_retries: 5 });
    expect(loadConfig({ env: { MAX_RETRIES: "" }, configFile: file }).maxRetries).toBe(5);
  });

  test("the file path comes from input.configFile, else the config flag, else CONFIG_FILE", async () => {
    const a = await configFile({ gcs_location: "A" });
    const b = await configFile({ gcs_location: "B" });
    const c = await configFile({ gcs_location: "C" });
    expect(loadConfig({ env: { CONFIG_FILE: a } }).gcsLocation).toBe("A");
    expect(loadConfig({ env: { CONFIG_FILE: a }, flags: { config: b } }).gcsLocation).toBe("B");
    expect(loadConfig({ env: { CONFIG_FILE: a }, flags: { config: b }, configFile: c }).gcsLocation).toBe("C");
  });

  test("flags use commander's camelCase names and accept typed values", () => {
    const config = loadConfig({
      env: { ENABLE_CACHE: "true", LISTEN_ADDRESS: "0.0.0.0:1" },
      flags: { enableCache: false, listenAddress: "[::1]:0", metricsPort: 0, somethingElse: "ignored" },
    });
    expect(config).toMatchObject({ enableCache: false, listenAddress: "[::1]:0", metricsPort: 0 });
  });
});

describe("values", () => {
  test.each([
    ["true", true],
    ["1", true],
    ["yes", true],
    ["YES", true],
    ["false", false],
    ["0", false],
    ["no", false],
    [" No ", false],
  ])("boolean %j is %j", (text, value) => {
    expect(loadConfig({ env: { ENABLE_COMPRESSION: text } }).enableCompression).toBe(value);
  });

  test("sizes are bytes, with optional binary suffixes", () => {
    const config = loadConfig({
      env: { CHUNK_SIZE: "65536", MAX_UNARY_BYTES: "8MiB", MAX_OBJECT_BYTES: "2 GiB", COMPRESSION_THRESHOLD_BYTES: "0" },
    });
    expect(config).toMatchObject({
      chunkSize: 65536,
      maxUnaryBytes: 8 * 1024 * 1024,
      maxObjectBytes: 2 * 1024 ** 3,
      compressionThresholdBytes: 0,
    });
  });

  test("paths resolve to absolute ones and files must exist", () => {
    const config = loadConfig({
      env: { LOCAL_STORAGE_PATH: "data/here", TLS_CERT_FILE: files.cert, TLS_KEY_FILE: files.tlsKey },
    });
    expect(config.localStoragePath).toBe(path.resolve("data/here"));
    expect(config).toMatchObject({ tlsCertFile: files.cert, tlsKeyFile: files.tlsKey });
  });

  test("quotas from env JSON and from the file's object; sizes allowed as values", async () => {
    expect(
      loadConfig({ env: { LIFECYCLE_RULES: '[{"prefix": "temp/", "max_age_seconds": 86400}, {"prefix": "", "max_age_seconds": 5}]' } }).lifecycleRules,
    ).toEqual([
      { prefix: "temp/", maxAgeSeconds: 86400 },
      { prefix: "", maxAgeSeconds: 5 },
    ]);
    expect(loadConfig({ env: { QUOTAS: '{"tenants/a/": 1048576, "b/": "2MiB"}' } }).quotas).toEqual({
      "tenants/a/": 1048576,
      "b/": 2 * 1024 * 1024,
    });
    const file = await configFile({ gcs_bucket_name: "bucket-b", quotas: { "tenants/a/": 10 } });
    expect(loadConfig({ env: {}, configFile: file })).toMatchObject({ gcsBucketName: "bucket-b", quotas: { "tenants/a/": 10 } });
  });

  test("auth entries come from AUTH_TOKENS_FILE, holding digests only", () => {
    const config = loadConfig({ env: { AUTH_TOKENS_FILE: files.newTokens } });
    expect(config.authTokensFile).toBe(files.newTokens);
    expect(config.authTokens).toEqual({
      legacyForm: false,
      entries: [
        { name: "ci", credential: { kind: "token", sha256: sha256("secret-token-3") }, prefixes: ["builds/"], rights: new Set(["read", "write"]) },
      ],
    });
  });

  test("the older {token: [prefixes]} form loads as entries with every right but admin", () => {
    expect(loadConfig({ env: { AUTH_TOKENS_FILE: files.tokens } }).authTokens).toEqual({
      legacyForm: true,
      entries: [
        {
          name: "legacy-1",
          credential: { kind: "token", sha256: sha256("secret-token-1") },
          prefixes: ["tenants/a/", "shared/"],
          rights: new Set(["read", "write", "delete", "list"]),
        },
      ],
    });
  });

  test("client_cn entries load with mutual TLS on", () => {
    const config = loadConfig({
      env: { AUTH_TOKENS_FILE: files.cnTokens, TLS_CERT_FILE: files.cert, TLS_KEY_FILE: files.tlsKey, TLS_CLIENT_CA_FILE: files.cert },
    });
    expect(config.authTokens?.entries[0]).toMatchObject({ name: "worker", credential: { kind: "client-cn", commonName: "worker.internal" } });
    expect(config.tlsClientCaFile).toBe(files.cert);
  });

  test("a public listen address is served with TLS and auth, or with ALLOW_INSECURE=true", () => {
    const tls = { TLS_CERT_FILE: files.cert, TLS_KEY_FILE: files.tlsKey };
    expect(loadConfig({ env: { LISTEN_ADDRESS: "0.0.0.0:1", ...tls, AUTH_TOKENS_FILE: files.newTokens } }).listenAddress).toBe("0.0.0.0:1");
    // Mutual TLS authenticates callers too.
    expect(loadConfig({ env: { LISTEN_ADDRESS: "[::]:1", ...tls, TLS_CLIENT_CA_FILE: files.cert } }).listenAddress).toBe("[::]:1");
    expect(loadConfig({ env: { LISTEN_ADDRESS: "0.0.0.0:1", ALLOW_INSECURE: "true" } }).allowInsecure).toBe(true);
    for (const host of ["127.0.0.1", "127.5.6.7", "localhost", "LOCALHOST", "[::1]", "[::ffff:127.0.0.1]"]) {
      expect(loadConfig({ env: { LISTEN_ADDRESS: `${host}:1` } }).listenAddress).toBe(`${host}:1`);
    }
  });

  test("encryption key from ENCRYPTION_KEY or ENCRYPTION_KEY_FILE; previous keys as a list", () => {
    const fromEnv = loadConfig({
      env: { ENABLE_ENCRYPTION: "true", ENCRYPTION_KEY: KEY_B64, ENCRYPTION_PREVIOUS_KEYS: `${OLD_KEY.toString("base64")}, ${KEY_B64}` },
    });
    expect(fromEnv.encryptionKey?.equals(KEY)).toBe(true);
    expect(fromEnv.encryptionPreviousKeys.map((k) => k.toString("hex"))).toEqual([OLD_KEY.toString("hex"), KEY.toString("hex")]);
    const fromFile = loadConfig({ env: { ENABLE_ENCRYPTION: "1", ENCRYPTION_KEY_FILE: files.key } });
    expect(fromFile.encryptionKey?.equals(KEY)).toBe(true);
    // URL-safe base64 is accepted too.
    expect(loadConfig({ env: { ENCRYPTION_KEY: KEY.toString("base64url") } }).encryptionKey?.equals(KEY)).toBe(true);
  });

  test("URLs with the allowed schemes pass", () => {
    const config = loadConfig({ env: { GCS_API_ENDPOINT: "http://127.0.0.1:4443", CACHE_URL: "rediss://:pw@cache:6380/0" } });
    expect(config).toMatchObject({ gcsApiEndpoint: "http://127.0.0.1:4443", cacheUrl: "rediss://:pw@cache:6380/0" });
  });
});

interface BadCase {
  name: string;
  env?: NodeJS.ProcessEnv;
  file?: unknown;
  flags?: Record<string, unknown>;
  /** Fragments the one-line message must contain. */
  expect: string[];
}

/** Built lazily: some cases need the temp files. */
const badCases = (): BadCase[] => [
  { name: "non-numeric retries", env: { MAX_RETRIES: "abc" }, expect: ['invalid MAX_RETRIES="abc": expected an integer from 0 to 20'] },
  { name: "retries above the limit", env: { MAX_RETRIES: "21" }, expect: ['MAX_RETRIES="21"', "0 to 20"] },
  { name: "fractional retries", env: { MAX_RETRIES: "2.5" }, expect: ['MAX_RETRIES="2.5"', "integer"] },
  { name: "retries from a flag", flags: { maxRetries: "-1" }, expect: ['invalid --max-retries="-1"', "0 to 20"] },
  { name: "retries from the file", file: { max_retries: 99 }, expect: ["invalid max_retries=99 in config file", "0 to 20"] },
  { name: "bad boolean", env: { ENABLE_CACHE: "maybe" }, expect: ['ENABLE_CACHE="maybe"', "true, false, 1, 0, yes or no"] },
  { name: "zero cache TTL", env: { CACHE_TTL_SECONDS: "0" }, expect: ['CACHE_TTL_SECONDS="0"', "from 1"] },
  { name: "cache size zero", env: { MAX_CACHE_SIZE_MB: "0" }, expect: ['MAX_CACHE_SIZE_MB="0"', "1 to 65536"] },
  { name: "cache size too big", env: { MAX_CACHE_SIZE_MB: "65537" }, expect: ['MAX_CACHE_SIZE_MB="65537"'] },
  {
    name: "cache admission above the cache size",
    env: { MAX_CACHE_SIZE_MB: "2", CACHE_MAX_OBJECT_BYTES: "3MiB" },
    expect: ["CACHE_MAX_OBJECT_BYTES=3145728", "at most MAX_CACHE_SIZE_MB (2 MiB"],
  },
  { name: "negative disk cache", env: { DISK_CACHE_MAX_MB: "-1" }, expect: ['invalid DISK_CACHE_MAX_MB="-1": expected an integer from 0 to 16777216'] },
  { name: "disk cache floor not a number", env: { DISK_CACHE_MIN_FREE_MB: "lots" }, expect: ['DISK_CACHE_MIN_FREE_MB="lots"', "0 to 1048576"] },
  { name: "disk cache on write not a boolean", env: { DISK_CACHE_ON_WRITE: "sometimes" }, expect: ['DISK_CACHE_ON_WRITE="sometimes"', "true, false"] },
  { name: "scrub rate too high", env: { SCRUB_BYTES_PER_SECOND: "11GiB" }, expect: ['SCRUB_BYTES_PER_SECOND="11GiB"', "0 to 10 GiB"] },
  { name: "scrub interval zero", env: { SCRUB_INTERVAL_SECONDS: "0" }, expect: ['SCRUB_INTERVAL_SECONDS="0"', "from 1 to 2592000"] },
  { name: "chunk too big for one gRPC message", env: { CHUNK_SIZE: "4MiB" }, expect: ['CHUNK_SIZE="4MiB"', "16 KiB to 3 MiB"] },
  { name: "chunk too small", env: { CHUNK_SIZE: "1000" }, expect: ['CHUNK_SIZE="1000"', "16 KiB"] },
  { name: "size with a bad suffix", env: { MAX_OBJECT_BYTES: "5TB" }, expect: ['MAX_OBJECT_BYTES="5TB"', "size in bytes"] },
  { name: "object limit above 5 TiB", env: { MAX_OBJECT_BYTES: "6TiB" }, expect: ['MAX_OBJECT_BYTES="6TiB"', "5 TiB"] },
  { name: "unary limit too big", env: { MAX_UNARY_BYTES: "65MiB" }, expect: ['MAX_UNARY_BYTES="65MiB"', "1 KiB to 64 MiB"] },
  { name: "zero timeout", env: { TIMEOUT_SECONDS: "0" }, expect: ['TIMEOUT_SECONDS="0"', "above 0"] },
  { name: "timeout too long", env: { TIMEOUT_SECONDS: "3601" }, expect: ['TIMEOUT_SECONDS="3601"', "3600"] },
  { name: "negative threshold", env: { COMPRESSION_THRESHOLD_BYTES: "-1" }, expect: ['COMPRESSION_THRESHOLD_BYTES="-1"'] },
  { name: "metrics port too big", env: { METRICS_PORT: "70000" }, expect: ['METRICS_PORT="70000"', "0 to 65535"] },
  { name: "listen address without port", env: { LISTEN_ADDRESS: "localhost" }, expect: ['LISTEN_ADDRESS="localhost"', "host:port"] },
  { name: "listen port too big", env: { LISTEN_ADDRESS: "localhost:65536" }, expect: ['LISTEN_ADDRESS="localhost:65536"'] },
  { name: "bad metrics host", env: { METRICS_HOST: "a b" }, expect: ['METRICS_HOST="a b"', "host name or IP"] },
  { name: "endpoint not http", env: { GCS_API_ENDPOINT: "ftp://x" }, expect: ['GCS_API_ENDPOINT="ftp://x"', "http:// or https://"] },
  { name: "cache URL not redis", env: { CACHE_URL: "http://:pw@x" }, expect: ["CACHE_URL (value hidden)", "redis://"] },
  { name: "bad bucket name", env: { GCS_BUCKET_NAME: "My_Bucket" }, expect: ['GCS_BUCKET_NAME="My_Bucket"', "bucket name"] },
  { name: "log level", env: { LOG_LEVEL: "loud" }, expect: ['LOG_LEVEL="loud"', "fatal, error, warn, info, debug or trace"] },
  { name: "log format", env: { LOG_FORMAT: "xml" }, expect: ['LOG_FORMAT="xml"', "json, pretty or auto"] },
  { name: "quotas not JSON", env: { QUOTAS: "{" }, expect: ['QUOTAS="{"', "JSON object of key prefix to byte limit"] },
  { name: "quota not a size", env: { QUOTAS: '{"a/": -5}' }, expect: ["QUOTAS=", "byte limit"] },
  { name: "lifecycle rules not a list", env: { LIFECYCLE_RULES: '{"prefix": "temp/"}' }, expect: ["LIFECYCLE_RULES=", 'JSON list of {"prefix"'] },
  { name: "lifecycle rule without an age", env: { LIFECYCLE_RULES: '[{"prefix": "temp/"}]' }, expect: ["LIFECYCLE_RULES=", "max_age_seconds"] },
  { name: "lifecycle age not whole seconds", env: { LIFECYCLE_RULES: '[{"prefix": "t/", "max_age_seconds": 0.5}]' }, expect: ["LIFECYCLE_RULES="] },
  { name: "lifecycle rule with an unknown field", env: { LIFECYCLE_RULES: '[{"prefix": "t/", "max_age_seconds": 5, "age": 1}]' }, expect: ["LIFECYCLE_RULES="] },
  { name: "lifecycle prefix with a newline", env: { LIFECYCLE_RULES: '[{"prefix": "a\\nb", "max_age_seconds": 5}]' }, expect: ["LIFECYCLE_RULES="] },
  { name: "quotas in file not an object", file: { quotas: [1] }, expect: ["invalid quotas=[1] in config file"] },
  { name: "missing credentials file", env: { GOOGLE_APPLICATION_CREDENTIALS: "/nonexistent/sa.json" }, expect: ['GOOGLE_APPLICATION_CREDENTIALS="/nonexistent/sa.json"', "existing readable file"] },
  { name: "TLS cert without key", env: { TLS_CERT_FILE: files.cert }, expect: ["TLS_CERT_FILE and TLS_KEY_FILE go together"] },
  { name: "missing TLS key file", env: { TLS_CERT_FILE: files.cert, TLS_KEY_FILE: "/nonexistent.pem" }, expect: ['TLS_KEY_FILE="/nonexistent.pem"'] },
  { name: "missing tokens file", env: { AUTH_TOKENS_FILE: "/nonexistent.json" }, expect: ['AUTH_TOKENS_FILE="/nonexistent.json"', "expected a readable JSON file: a list of"] },
  {
    name: "tokens file of the older form with a bad value",
    env: { AUTH_TOKENS_FILE: files.badTokens },
    expect: [`invalid AUTH_TOKENS_FILE="${files.badTokens}": entry 0 of the older {"token": [prefixes]} form (token not shown): expected a list of key prefixes`],
  },
  ...tokenFileCases(),
  { name: "client CA without TLS", env: { TLS_CLIENT_CA_FILE: files.cert }, expect: ["TLS_CLIENT_CA_FILE (mutual TLS) needs TLS: set TLS_CERT_FILE and TLS_KEY_FILE"] },
  {
    name: "client_cn entry without mutual TLS",
    env: { AUTH_TOKENS_FILE: files.cnTokens },
    expect: [`AUTH_TOKENS_FILE="${files.cnTokens}": entry 0 ("worker"), field "client_cn": needs mutual TLS (TLS_CLIENT_CA_FILE), which is off`],
  },
  ...insecureListenCases(),
  { name: "encryption without a key", env: { ENABLE_ENCRYPTION: "true" }, expect: ["ENABLE_ENCRYPTION=true needs ENCRYPTION_KEY"] },
  { name: "encryption enabled by flag without a key", flags: { enableEncryption: true }, expect: ["--enable-encryption=true needs ENCRYPTION_KEY"] },
  { name: "key of 31 bytes", env: { ENABLE_ENCRYPTION: "true", ENCRYPTION_KEY: SHORT_KEY_B64 }, expect: ["invalid ENCRYPTION_KEY (value hidden): expected base64 of exactly 32 bytes"] },
  { name: "key that is not base64", env: { ENCRYPTION_KEY: "not base64!" }, expect: ["ENCRYPTION_KEY (value hidden)"] },
  { name: "key file with a short key", env: { ENCRYPTION_KEY_FILE: files.badKey }, expect: [`ENCRYPTION_KEY_FILE="${files.badKey}"`, "32 bytes"] },
  { name: "both key sources", env: { ENCRYPTION_KEY: KEY_B64, ENCRYPTION_KEY_FILE: files.key }, expect: ["set ENCRYPTION_KEY or ENCRYPTION_KEY_FILE, not both"] },
  { name: "a bad previous key", env: { ENCRYPTION_PREVIOUS_KEYS: `${KEY_B64},${SHORT_KEY_B64}` }, expect: ["ENCRYPTION_PREVIOUS_KEYS (value hidden)"] },
  { name: "key in the file, wrong length", file: { encryption_key: SHORT_KEY_B64 }, expect: ["encryption_key (value hidden) in config file"] },
  { name: "unknown key in the file", file: { max_retires: 3 }, expect: ['unknown setting "max_retires" in config file'] },
  { name: "config_file inside the file", file: { config_file: "x" }, expect: ['unknown setting "config_file"'] },
  { name: "file not JSON", file: "{ not json", expect: ["config file", "is not valid JSON"] },
  { name: "file holding an array", file: [1, 2], expect: ["must hold a JSON object of settings"] },
];

/** Tokens files that must stop the daemon: one line naming the file, the entry and the field, never a token. */
function tokenFileCases(): BadCase[] {
  const bad = (name: string, content: unknown, ...expected: string[]): BadCase => {
    const file = tokensFile(content);
    return { name: `tokens file: ${name}`, env: { AUTH_TOKENS_FILE: file }, expect: [`invalid AUTH_TOKENS_FILE="${file}": `, ...expected] };
  };
  const rights = "expected a non-empty list of rights, each one of read, write, delete, list, admin";
  return [
    bad("empty list", [], "it holds no entries; an empty file would turn authentication off"),
    bad("empty object (older form)", {}, "it holds no entries"),
    bad("not JSON", '[{"name": "x", "sha256": "secret-token-2"', "it is not valid JSON"),
    bad("a string", '"secret-token-2"', "expected a JSON list of entries"),
    bad("entry not an object", [entry({}), "secret-token-2"], "entry 1 expected an object of name, sha256 or client_cn, prefixes, rights"),
    bad("the token itself in sha256", [entry({ sha256: "secret-token-2" })], 'entry 0 ("ci"), field "sha256": expected 64 hex digits'),
    bad("a token field", [entry({ token: "secret-token-2" })], 'entry 0 ("ci") has a field that is not one of name, sha256 or client_cn, prefixes, rights'),
    bad("no name", [entry({ name: "" })], 'entry 0, field "name": expected a non-empty string'),
    bad("unknown right", [entry({}), entry({ name: "b", rights: ["read", "sudo"] })], `entry 1 ("b"), field "rights": ${rights}`),
    bad("no rights", [entry({ rights: [] })], `field "rights": ${rights}`),
    bad("prefixes not a list", [entry({ prefixes: "a/" })], 'entry 0 ("ci"), field "prefixes": expected a list of key prefixes'),
    bad("neither sha256 nor client_cn", [{ name: "x", prefixes: [], rights: ["read"] }], 'entry 0 ("x"): give exactly one of "sha256"'),
    bad("both sha256 and client_cn", [entry({ client_cn: "host" })], 'entry 0 ("ci"): give exactly one of "sha256"'),
    bad("duplicate names", [entry({ sha256: sha256("a").toString("hex") }), entry({})], 'entry 1 ("ci"), field "name": the same as entry 0\'s'),
    bad("duplicate digests", [entry({}), entry({ name: "other" })], 'entry 1 ("other"), field "sha256": the same as entry 0\'s'),
    bad("empty token in the older form", { "": ["a/"] }, "entry 0 of the older", "the token is empty"),
  ];
}

/** A non-loopback LISTEN_ADDRESS without TLS or without authentication. */
function insecureListenCases(): BadCase[] {
  const fix = "set TLS_CERT_FILE/TLS_KEY_FILE and AUTH_TOKENS_FILE, or ALLOW_INSECURE=true";
  const tls = { TLS_CERT_FILE: files.cert, TLS_KEY_FILE: files.tlsKey };
  return [
    { name: "0.0.0.0 plaintext without auth", env: { LISTEN_ADDRESS: "0.0.0.0:0" }, expect: [`LISTEN_ADDRESS=0.0.0.0:0 is not a loopback address and would be served without TLS and authentication: ${fix}`] },
    { name: ":: with auth, no TLS", env: { LISTEN_ADDRESS: "[::]:50051", AUTH_TOKENS_FILE: files.newTokens }, expect: ["LISTEN_ADDRESS=[::]:50051 is not a loopback address and would be served without TLS: "] },
    { name: "a host name with TLS, no auth", env: { LISTEN_ADDRESS: "storage.internal:50051", ...tls }, expect: ["LISTEN_ADDRESS=storage.internal:50051", "without authentication: "] },
    { name: "a public IP from a flag", flags: { listenAddress: "10.1.2.3:50051" }, expect: ["--listen-address=10.1.2.3:50051 is not a loopback address", fix] },
    { name: "ALLOW_INSECURE=false", env: { LISTEN_ADDRESS: "0.0.0.0:0", ALLOW_INSECURE: "false" }, expect: ["LISTEN_ADDRESS=0.0.0.0:0 is not a loopback"] },
  ];
}

/** Runs a case, adding `extraEnv` below the case's own env. */
async function runCase(c: BadCase, extraEnv: NodeJS.ProcessEnv = {}): Promise<ConfigError> {
  const file = c.file === undefined ? undefined : await configFile(c.file);
  return errorOf({ env: { ...extraEnv, ...c.env }, flags: c.flags, configFile: file });
}

describe("bad configurations", () => {
  test("each is rejected with one line naming the setting, the value and what is allowed", async () => {
    for (const c of badCases()) {
      const err = await runCase(c);
      for (const fragment of c.expect) {
        expect({ case: c.name, message: err.message }).toEqual({ case: c.name, message: expect.stringContaining(fragment) });
      }
      expect({ case: c.name, lines: err.message.split("\n").length }).toEqual({ case: c.name, lines: 1 });
    }
  });

  test("a missing config file is named", () => {
    expect(errorOf({ env: { CONFIG_FILE: "/nonexistent/fs.json" } }).message).toBe(
      "cannot read config file /nonexistent/fs.json: ENOENT",
    );
  });

  test("key material and tokens never appear in a message", async () => {
    const secrets = [KEY_B64, KEY.toString("base64url"), KEY.toString("hex"), SHORT_KEY_B64, "secret-token-1", "secret-token-2", "secret-token-3", ":pw@"];
    // Every bad case again, with a valid key (and a token file) present as well.
    for (const c of badCases()) {
      for (const extra of [{ ENCRYPTION_KEY: KEY_B64, AUTH_TOKENS_FILE: files.tokens }, {}]) {
        let message: string;
        try {
          loadConfig({ env: { ...extra, ...c.env }, flags: c.flags, configFile: c.file === undefined ? undefined : await configFile(c.file) });
          continue; // the extra settings may make a case valid (encryption with a key)
        } catch (err) {
          message = (err as Error).message;
        }
        for (const secret of secrets) expect({ case: c.name, leaked: message.includes(secret) }).toEqual({ case: c.name, leaked: false });
      }
    }
    // A key put in the file where the JSON cannot parse: the parser's message (which quotes the text) is not passed on.
    const broken = await configFile(`{"encryption_key": "${KEY_B64}",}`);
    expect(errorOf({ env: {}, configFile: broken }).message).not.toContain(KEY_B64);
  });
});

describe("settings table", () => {
  test("one row per setting, with env, file key, flag and description", () => {
    const envs = settings.map((s) => s.env);
    expect(new Set(envs).size).toBe(envs.length);
    for (const s of settings) {
      expect(s.description).not.toBe("");
      expect(s.allowed).not.toBe("");
      if (s.fileKey !== undefined) expect(s.fileKey).toBe(s.env.toLowerCase());
    }
    const row = (env: string) => settings.find((s) => s.env === env);
    expect(row("MAX_RETRIES")).toMatchObject({ flag: "--max-retries", fileKey: "max_retries", default: "3" });
    expect(row("CHUNK_SIZE")).toMatchObject({ default: "1MiB" });
    // Secrets have no flag: a command line shows in `ps`.
    expect(row("ENCRYPTION_KEY")?.flag).toBeUndefined();
    expect(row("CONFIG_FILE")).toMatchObject({ flag: "--config", fileKey: undefined });
  });

  test("every default in the table parses to the Config default", () => {
    const env = Object.fromEntries(settings.filter((s) => s.default !== undefined && s.default !== "none").map((s) => [s.env, s.default]));
    expect(loadConfig({ env })).toEqual(loadConfig({ env: {} }));
  });
});
