/**
 * The daemon's configuration: every setting, its sources and its limits, in
 * one table (`settings`) that also feeds `--help` and the README. Settings come
 * from CLI flags, the environment and a JSON config file; flags beat env beat
 * file beat defaults. Everything is validated once, at start-up: a bad value is
 * a ConfigError whose message is one line naming the setting, the value and
 * what is allowed. Key material and tokens never appear in a message.
 *
 * Deep modules never read process.env; they get the typed `Config` (or the
 * parts they need) from here.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { z } from "zod";
import { insecureListenGaps } from "./auth/listen-policy.js";
import { readTokenFile, TokenFileError, type TokenFile } from "./auth/token-file.js";

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const TiB = 1024 * GiB;

export type LogLevel = "fatal" | "error" | "warn" | "info" | "debug" | "trace";

/** The validated configuration. Paths are absolute; sizes are bytes. */
export interface Config {
  /** Absent: the daemon runs on the local backend alone (embedded mode). */
  gcsBucketName?: string;
  gcsProjectId?: string;
  googleApplicationCredentials?: string;
  gcsLocation: string;
  gcsApiEndpoint?: string;
  localStoragePath: string;
  /** Local writes are refused below this many free bytes (deletes keep working). */
  localMinFreeBytes: number;
  enableLocalFallback: boolean;
  enableCache: boolean;
  cacheTtlSeconds: number;
  maxCacheSizeMb: number;
  cacheMaxObjectBytes: number;
  cacheUrl?: string;
  chunkSize: number;
  maxRetries: number;
  timeoutSeconds: number;
  /** Consecutive GCS outage failures that open the circuit breaker. */
  gcsBreakerFailures: number;
  /** How long an open breaker fails calls at once before a trial call. */
  gcsBreakerResetSeconds: number;
  enableCompression: boolean;
  compressionThresholdBytes: number;
  enableEncryption: boolean;
  /** 32 bytes, from ENCRYPTION_KEY or ENCRYPTION_KEY_FILE. */
  encryptionKey?: Buffer;
  /** Older 32-byte keys, still used to read objects written before a rotation. */
  encryptionPreviousKeys: Buffer[];
  /** With encryption on, still serve objects stored unencrypted (migration only: weakens the guarantee). */
  allowUnencryptedReads: boolean;
  listenAddress: string;
  /** 0 = no metrics endpoint. */
  metricsPort: number;
  metricsHost: string;
  maxObjectBytes: number;
  maxUnaryBytes: number;
  /** Accepted for compatibility; ignored (JSON is validated as it streams). */
  maxJsonBytes: number;
  /** Deepest nesting of arrays and objects in an object of kind JSON. */
  maxJsonDepth: number;
  /** Bound on one ListKeys response's encoded size. */
  maxListResponseBytes: number;
  /** Key prefix -> max bytes stored under it. */
  quotas: Record<string, number>;
  /** The tokens file, read again on reload; absent = authentication off. */
  authTokensFile?: string;
  /** Its validated entries (token digests, never tokens); absent = authentication off. */
  authTokens?: TokenFile;
  tlsCertFile?: string;
  tlsKeyFile?: string;
  /** PEM CA bundle: set = mutual TLS, every client must present a certificate it signed. */
  tlsClientCaFile?: string;
  /** Serve a non-loopback LISTEN_ADDRESS without TLS or without authentication. */
  allowInsecure: boolean;
  shutdownGraceSeconds: number;
  /** How often health (and GCS availability) is checked. */
  healthCheckSeconds: number;
  replicationIntervalMs: number;
  expirySweepSeconds: number;
  /** How often the whole bucket is listed to remove expired objects, old tombstones and upload leftovers. */
  gcsSweepSeconds: number;
  /** How long GCS keeps the tombstone of a deleted key (guards against older writes replayed late). */
  tombstoneRetentionSeconds: number;
  logLevel: LogLevel;
}

/** A bad setting. The message is one line, safe to print: no key material. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

/** One row of the settings table, as printed by `--help` and the README. */
export interface SettingInfo {
  /** camelCase name of the raw setting. */
  name: string;
  env: string;
  /** Key in the JSON config file; absent when the file cannot set it. */
  fileKey?: string;
  /** CLI flag (commander passes it camelCased, e.g. --max-retries -> maxRetries); absent for secrets. */
  flag?: string;
  /** Default as written in env form; absent when unset by default. */
  default?: string;
  /** What a valid value looks like. */
  allowed: string;
  description: string;
}

// ---------------------------------------------------------------------------
// Value kinds. Each returns the schema that parses a raw value (an env string,
// a JSON value from the file, or a commander value) and the words that
// describe what is allowed, so the error message and the help never drift.

interface Kind<S extends z.ZodType = z.ZodType> {
  schema: S;
  allowed: string;
}

const UNITS: Record<string, number> = { b: 1, kib: KiB, mib: MiB, gib: GiB, tib: TiB };

/** Strings become numbers when they are plain decimals; anything else is left for the schema to reject. */
function toNumber(value: unknown): unknown {
  if (typeof value !== "string") return value;
  const text = value.trim();
  return /^[+-]?(\d+(\.\d*)?|\.\d+)$/.test(text) ? Number(text) : value;
}

/** Like toNumber, plus binary suffixes: "4MiB", "16 KiB", "512B". */
function toBytes(value: unknown): unknown {
  if (typeof value !== "string") return value;
  const match = /^(\d+)\s*(b|kib|mib|gib|tib)?$/i.exec(value.trim());
  return match ? Number(match[1]) * UNITS[(match[2] ?? "b").toLowerCase()] : value;
}

/** "16 KiB" for exact binary multiples, else the plain number. */
export function formatBytes(n: number): string {
  for (const [unit, size] of [["TiB", TiB], ["GiB", GiB], ["MiB", MiB], ["KiB", KiB]] as const) {
    if (n >= size && n % size === 0) return `${n / size} ${unit}`;
  }
  return String(n);
}

const integer = (min: number, max: number) => ({
  schema: z.preprocess(toNumber, z.number().int().min(min).max(max)),
  allowed: `an integer from ${min} to ${max}`,
});

const bytes = (min: number, max: number) => ({
  schema: z.preprocess(toBytes, z.number().int().min(min).max(max)),
  allowed: `a size in bytes from ${formatBytes(min)} to ${formatBytes(max)} (e.g. 1048576 or 1MiB)`,
});

const seconds = (max: number, orZero: boolean) => ({
  schema: z.preprocess(toNumber, orZero ? z.number().min(0).max(max) : z.number().gt(0).max(max)),
  allowed: orZero ? `a number of seconds from 0 to ${max}` : `a number of seconds above 0 and at most ${max}`,
});

const TRUE_WORDS = ["true", "1", "yes"];
const FALSE_WORDS = ["false", "0", "no"];
const boolean = {
  schema: z.preprocess((value) => {
    const word = typeof value === "string" || typeof value === "number" ? String(value).trim().toLowerCase() : value;
    if (TRUE_WORDS.includes(word as string)) return true;
    if (FALSE_WORDS.includes(word as string)) return false;
    return value;
  }, z.boolean()),
  allowed: "true, false, 1, 0, yes or no",
};

const text = { schema: z.string().trim().min(1), allowed: "a non-empty string" };

const folder = {
  schema: z.string().trim().min(1).transform((p) => path.resolve(p)),
  allowed: "a folder path (relative paths resolve from the working folder)",
};

function isReadableFile(p: string): boolean {
  try {
    fs.accessSync(p, fs.constants.R_OK);
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

const existingFile = {
  schema: z.string().trim().min(1).refine(isReadableFile).transform((p) => path.resolve(p)),
  allowed: "the path of an existing readable file",
};

const url = (protocols: string[]) => ({
  schema: z.url({ protocol: new RegExp(`^(${protocols.join("|")})$`) }),
  allowed: `a URL starting with ${protocols.map((p) => `${p}://`).join(" or ")}`,
});

const HOST = String.raw`[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?`;
const host = {
  schema: z.string().trim().regex(new RegExp(`^(?:${HOST}|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*)$`)),
  allowed: "a host name or IP address",
};

const hostPort = {
  schema: z
    .string()
    .trim()
    .regex(new RegExp(String.raw`^(?:${HOST}|\[[0-9A-Fa-f:.]+\]):\d{1,5}$`))
    .refine((s) => Number(s.slice(s.lastIndexOf(":") + 1)) <= 65535),
  allowed: 'host:port, e.g. "127.0.0.1:50051" or "[::1]:50051" (port 0..65535)',
};

/** A 32-byte key from its base64 text (standard or URL-safe alphabet), or undefined. */
function decodeKey(text: string): Buffer | undefined {
  const trimmed = text.trim();
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(trimmed)) return undefined;
  const key = Buffer.from(trimmed, "base64");
  return key.length === 32 ? key : undefined;
}

const keySchema = z.string().transform(decodeKey).pipe(z.instanceof(Buffer));
const KEY_WORDS = "base64 of exactly 32 bytes (e.g. from `openssl rand -base64 32`)";

function readText(p: string): string | undefined {
  try {
    return fs.readFileSync(p, "utf8");
  } catch {
    return undefined;
  }
}

function parseJson(text: string | undefined): unknown {
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** Env values are JSON text; the config file holds the JSON value itself. */
const jsonText = (value: unknown) => (typeof value === "string" ? parseJson(value) : value);

const byteLimit = bytes(0, 5 * TiB).schema;

// ---------------------------------------------------------------------------
// The table. Raw defaults are written as a user would write them and go
// through the same schema as any other value.

interface SettingDef extends Kind {
  env: string;
  description: string;
  default?: unknown;
  /** Shown instead of String(default). */
  defaultText?: string;
  /** Never echo the value in a message, and offer no CLI flag (flags show in `ps`). */
  secret?: boolean;
  /** The config file cannot set it. */
  notInFile?: boolean;
  /** Overrides the flag derived from the env name. */
  flag?: string;
}

const defs = {
  configFile: {
    env: "CONFIG_FILE",
    ...text,
    allowed: "the path of a JSON config file",
    flag: "--config",
    notInFile: true,
    description: "JSON file of settings; keys are the lower-cased environment names",
  },
  gcsBucketName: {
    env: "GCS_BUCKET_NAME",
    schema: z.string().trim().regex(/^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$/),
    allowed: "a GCS bucket name: 3 to 222 of a-z 0-9 . _ - starting and ending with a letter or digit",
    description: "GCS bucket; unset = local storage only (embedded mode)",
  },
  gcsProjectId: { env: "GCS_PROJECT_ID", ...text, description: "GCS project; lets the daemon create a missing bucket" },
  googleApplicationCredentials: {
    env: "GOOGLE_APPLICATION_CREDENTIALS",
    ...existingFile,
    description: "service-account JSON file; unset = the platform's default credentials",
  },
  gcsLocation: { env: "GCS_LOCATION", ...text, default: "US", description: "location of a bucket the daemon creates" },
  gcsApiEndpoint: {
    env: "GCS_API_ENDPOINT",
    ...url(["http", "https"]),
    description: "GCS API base URL, e.g. an emulator's (without /storage/v1)",
  },
  localStoragePath: {
    env: "LOCAL_STORAGE_PATH",
    ...folder,
    default: "./storage",
    description: "folder of the local tier (fallback, or the only tier)",
  },
  localMinFreeBytes: {
    env: "LOCAL_MIN_FREE_BYTES",
    ...bytes(0, TiB),
    default: "64MiB",
    description: "local writes are refused when the disk has less free; deletes and the index keep working",
  },
  enableLocalFallback: {
    env: "ENABLE_LOCAL_FALLBACK",
    ...boolean,
    default: "true",
    description: "write locally while GCS is unavailable and replicate later",
  },
  enableCache: { env: "ENABLE_CACHE", ...boolean, default: "true", description: "cache small objects in memory" },
  cacheTtlSeconds: {
    env: "CACHE_TTL_SECONDS",
    ...integer(1, 31_536_000),
    default: "3600",
    description: "how long a cached object lives",
  },
  maxCacheSizeMb: {
    env: "MAX_CACHE_SIZE_MB",
    ...integer(1, 65_536),
    default: "100",
    description: "cache bound in MiB of object bytes",
  },
  cacheMaxObjectBytes: {
    env: "CACHE_MAX_OBJECT_BYTES",
    ...bytes(0, 64 * GiB),
    default: "1MiB",
    description: "larger objects are never cached; at most the cache size",
  },
  cacheUrl: {
    env: "CACHE_URL",
    ...url(["redis", "rediss"]),
    secret: true,
    description: "shared cache for several daemons (redis://...); unset = in-memory",
  },
  chunkSize: {
    env: "CHUNK_SIZE",
    ...bytes(16 * KiB, 3 * MiB),
    default: "1MiB",
    description: "bytes per streamed message; one message must stay under gRPC's 4 MiB limit",
  },
  maxRetries: { env: "MAX_RETRIES", ...integer(0, 20), default: "3", description: "retries of a failed GCS call" },
  timeoutSeconds: {
    env: "TIMEOUT_SECONDS",
    ...seconds(3600, false),
    default: "30",
    description: "timeout of one GCS call",
  },
  gcsBreakerFailures: {
    env: "GCS_BREAKER_FAILURES",
    ...integer(2, 1000),
    default: "5",
    description: "consecutive failed GCS calls (each after its retries) that open the circuit breaker",
  },
  gcsBreakerResetSeconds: {
    env: "GCS_BREAKER_RESET_SECONDS",
    ...seconds(3600, false),
    default: "2",
    description: "how long an open breaker fails GCS calls at once before one trial call",
  },
  enableCompression: {
    env: "ENABLE_COMPRESSION",
    ...boolean,
    default: "true",
    description: "gzip objects when it saves space",
  },
  compressionThresholdBytes: {
    env: "COMPRESSION_THRESHOLD_BYTES",
    ...bytes(0, 5 * TiB),
    default: "1024",
    description: "smaller objects are stored uncompressed",
  },
  enableEncryption: {
    env: "ENABLE_ENCRYPTION",
    ...boolean,
    default: "false",
    description: "encrypt objects at rest with AES-256-GCM",
  },
  encryptionKey: {
    env: "ENCRYPTION_KEY",
    schema: keySchema,
    allowed: KEY_WORDS,
    secret: true,
    description: "the current encryption key",
  },
  encryptionKeyFile: {
    env: "ENCRYPTION_KEY_FILE",
    schema: z.string().trim().min(1).transform((p) => decodeKey(readText(p) ?? "")).pipe(z.instanceof(Buffer)),
    allowed: `a readable file holding ${KEY_WORDS}`,
    description: "file holding the encryption key (instead of ENCRYPTION_KEY)",
  },
  encryptionPreviousKeys: {
    env: "ENCRYPTION_PREVIOUS_KEYS",
    schema: z.preprocess(
      (value) => (typeof value === "string" ? value.split(",").filter((k) => k.trim() !== "") : value),
      z.array(keySchema),
    ),
    allowed: `comma-separated keys, each ${KEY_WORDS}`,
    default: [],
    defaultText: "none",
    secret: true,
    description: "older keys, still used to read objects written before a rotation",
  },
  allowUnencryptedReads: {
    env: "ALLOW_UNENCRYPTED_READS",
    ...boolean,
    default: "false",
    description:
      "with encryption on, still serve objects stored unencrypted (while a store migrates; lets a bucket writer plant plaintext)",
  },
  listenAddress: {
    env: "LISTEN_ADDRESS",
    ...hostPort,
    default: "127.0.0.1:50051",
    description: "gRPC address",
  },
  metricsPort: {
    env: "METRICS_PORT",
    ...integer(0, 65_535),
    default: "8002",
    description: "Prometheus /metrics port; 0 = off",
  },
  metricsHost: { env: "METRICS_HOST", ...host, default: "127.0.0.1", description: "Prometheus /metrics address" },
  maxObjectBytes: {
    env: "MAX_OBJECT_BYTES",
    ...bytes(1, 5 * TiB),
    default: "5TiB",
    description: "largest object accepted (GCS's own limit is 5 TiB)",
  },
  maxUnaryBytes: {
    env: "MAX_UNARY_BYTES",
    ...bytes(KiB, 64 * MiB),
    default: "4MiB",
    description: "largest object sent in one message (Store, Retrieve); larger ones use the streams",
  },
  maxJsonBytes: {
    env: "MAX_JSON_BYTES",
    ...bytes(KiB, GiB),
    default: "64MiB",
    description: "deprecated and ignored: JSON is validated as it streams, so its size is bounded by MAX_OBJECT_BYTES alone",
  },
  maxJsonDepth: {
    env: "MAX_JSON_DEPTH",
    ...integer(1, 1_000_000),
    default: "10000",
    description: "deepest nesting of arrays and objects in an object of kind JSON (bounds the validator's memory)",
  },
  maxListResponseBytes: {
    env: "MAX_LIST_RESPONSE_BYTES",
    ...bytes(64 * KiB, 64 * MiB),
    default: "4MiB",
    description: "largest ListKeys response; a page that would be larger stops early with a next_page_token",
  },
  quotas: {
    env: "QUOTAS",
    schema: z.preprocess(jsonText, z.record(z.string(), byteLimit)),
    allowed: 'a JSON object of key prefix to byte limit, e.g. {"tenants/a/": 1048576}',
    default: {},
    defaultText: "none",
    description: "maximum bytes stored under each key prefix",
  },
  authTokensFile: {
    env: "AUTH_TOKENS_FILE",
    ...existingFile,
    allowed:
      'a readable JSON file: a list of {"name", "sha256" (hex SHA-256 of the token) or "client_cn", "prefixes": [...], ' +
      '"rights": [read, write, delete, list, admin]} (the older {"token": [prefixes]} form still loads, with a warning)',
    description: "who may call: token digests or client certificate names, with key prefixes and rights; SIGHUP reloads it; unset = no authentication",
  },
  tlsCertFile: { env: "TLS_CERT_FILE", ...existingFile, description: "PEM certificate; with TLS_KEY_FILE turns TLS on" },
  tlsKeyFile: { env: "TLS_KEY_FILE", ...existingFile, description: "PEM private key of TLS_CERT_FILE" },
  tlsClientCaFile: {
    env: "TLS_CLIENT_CA_FILE",
    ...existingFile,
    description: "PEM CA certificates; set = mutual TLS: clients must present a certificate they signed (needs TLS_CERT_FILE)",
  },
  allowInsecure: {
    env: "ALLOW_INSECURE",
    ...boolean,
    default: "false",
    description: "serve a non-loopback LISTEN_ADDRESS without TLS or without authentication (otherwise refused)",
  },
  shutdownGraceSeconds: {
    env: "SHUTDOWN_GRACE_SECONDS",
    ...seconds(3600, true),
    default: "10",
    description: "how long open calls may finish on shutdown",
  },
  healthCheckSeconds: {
    env: "HEALTH_CHECK_SECONDS",
    ...seconds(3600, false),
    default: "5",
    description: "how often the daemon checks that a write can be made durable (health, and GCS's availability)",
  },
  replicationIntervalMs: {
    env: "REPLICATION_INTERVAL_MS",
    ...integer(10, 3_600_000),
    default: "2000",
    description: "how often the replicator retries the outbox while GCS is down",
  },
  expirySweepSeconds: {
    env: "EXPIRY_SWEEP_SECONDS",
    ...integer(1, 86_400),
    default: "60",
    description: "how often expired objects are removed from the local tier (by its index)",
  },
  gcsSweepSeconds: {
    env: "GCS_SWEEP_SECONDS",
    ...integer(1, 30 * 86_400),
    default: "3600",
    description: "how often the bucket is listed to remove expired objects, old tombstones and upload leftovers",
  },
  tombstoneRetentionSeconds: {
    env: "TOMBSTONE_RETENTION_SECONDS",
    ...integer(1, 10 * 365 * 86_400),
    default: "604800",
    description: "how long GCS keeps a deleted key's tombstone; an outage longer than this may resurrect keys deleted meanwhile",
  },
  logLevel: {
    env: "LOG_LEVEL",
    schema: z.preprocess(
      (value) => (typeof value === "string" ? value.trim().toLowerCase() : value),
      z.enum(["fatal", "error", "warn", "info", "debug", "trace"]),
    ),
    allowed: "fatal, error, warn, info, debug or trace",
    default: "info",
    description: "log level (JSON logs on stdout)",
  },
} satisfies Record<string, SettingDef>;

type Defs = typeof defs;
type SettingName = keyof Defs;

/** Parsed values: settings with a default always have one. */
type Values = {
  [K in SettingName]: Defs[K] extends { schema: infer S extends z.ZodType; default: {} }
    ? z.output<S>
    : Defs[K] extends { schema: infer S extends z.ZodType }
      ? z.output<S> | undefined
      : never;
};

const defList = Object.entries(defs) as [SettingName, SettingDef][];

const flagOf = (d: SettingDef) => (d.secret ? undefined : (d.flag ?? `--${d.env.toLowerCase().replaceAll("_", "-")}`));
/** commander's camelCase of a flag: --max-retries -> maxRetries. */
const flagKey = (flag: string) => flag.slice(2).replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
const fileKeyOf = (d: SettingDef) => (d.notInFile ? undefined : d.env.toLowerCase());

/** Every setting, in the order of the README table. One source of truth with the parsing below. */
export const settings: readonly SettingInfo[] = defList.map(([name, d]) => ({
  name,
  env: d.env,
  fileKey: fileKeyOf(d),
  flag: flagOf(d),
  default: d.defaultText ?? (d.default === undefined ? undefined : String(d.default)),
  allowed: d.allowed,
  description: d.description,
}));

// ---------------------------------------------------------------------------

/** Where a raw value came from, as the error message names it. */
interface Found {
  value: unknown;
  /** e.g. "MAX_RETRIES", "--max-retries", "max_retries". */
  label: string;
  /** e.g. " in config file /etc/fs.json". */
  where: string;
}

const isSet = (value: unknown) => value !== undefined && value !== null && value !== "";

/** One-line rendering of a value; JSON escapes newlines, long values are cut. */
function show(value: unknown): string {
  const json = JSON.stringify(value) ?? String(value);
  return json.length > 200 ? `${json.slice(0, 200)}...` : json;
}

function invalid(d: SettingDef, found: Found): ConfigError {
  const value = d.secret ? " (value hidden)" : `=${show(found.value)}`;
  return new ConfigError(`invalid ${found.label}${value}${found.where}: expected ${d.allowed}`);
}

/** Reads the config file: a JSON object whose keys are lower-cased env names. */
function readConfigFile(file: string): Map<string, unknown> {
  const where = `config file ${file}`;
  let textValue: string;
  try {
    textValue = fs.readFileSync(file, "utf8");
  } catch (err) {
    throw new ConfigError(`cannot read ${where}: ${(err as NodeJS.ErrnoException).code ?? "read failed"}`);
  }
  // JSON.parse's message quotes the text, which may hold a key: say only that it failed.
  const parsed = parseJson(textValue);
  if (parsed === undefined) throw new ConfigError(`${where} is not valid JSON`);
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    throw new ConfigError(`${where} must hold a JSON object of settings`);
  }
  const known = new Set(defList.map(([, d]) => fileKeyOf(d)));
  for (const key of Object.keys(parsed)) {
    if (!known.has(key)) {
      throw new ConfigError(
        `unknown setting "${key}" in ${where}: keys are the lower-cased environment names, e.g. "max_retries"`,
      );
    }
  }
  return new Map(Object.entries(parsed));
}

/** What the listen rule (auth/listen-policy.ts) needs to know of a configuration. */
export function listenPolicyInput(c: Pick<Config, "listenAddress" | "tlsCertFile" | "authTokensFile" | "tlsClientCaFile">) {
  return {
    listenAddress: c.listenAddress,
    tls: c.tlsCertFile !== undefined,
    // Mutual TLS authenticates callers too (every certificate of the client CA is let in).
    authenticated: c.authTokensFile !== undefined || c.tlsClientCaFile !== undefined,
  };
}

/**
 * Builds the Config from CLI flags (camelCase keys as commander gives them;
 * unknown keys are ignored), the environment and the config file (path from
 * `configFile`, else the `config` flag or CONFIG_FILE). Flags beat env beat
 * file beat defaults; empty strings count as unset. Throws ConfigError on the
 * first bad setting. Reads the files it is pointed at (key file, token file),
 * synchronously: this runs once, before the daemon serves.
 */
export function loadConfig(input: {
  env: NodeJS.ProcessEnv;
  flags?: Record<string, unknown>;
  configFile?: string;
}): Config {
  const flags = input.flags ?? {};
  const labels = new Map<SettingName, string>();

  const find = (d: SettingDef, file?: Map<string, unknown>, fileName?: string): Found | undefined => {
    const flag = flagOf(d);
    if (flag !== undefined && isSet(flags[flagKey(flag)])) return { value: flags[flagKey(flag)], label: flag, where: "" };
    if (isSet(input.env[d.env])) return { value: input.env[d.env], label: d.env, where: "" };
    const key = fileKeyOf(d);
    if (file && key !== undefined && isSet(file.get(key))) {
      return { value: file.get(key), label: key, where: ` in config file ${fileName}` };
    }
    return undefined;
  };

  const parse = (name: SettingName, d: SettingDef, found: Found | undefined): unknown => {
    if (found === undefined) {
      return d.default === undefined ? undefined : d.schema.parse(d.default);
    }
    labels.set(name, found.label);
    const result = d.schema.safeParse(found.value);
    if (!result.success) throw invalid(d, found);
    return result.data;
  };

  const configPath =
    input.configFile !== undefined && input.configFile !== ""
      ? input.configFile
      : (parse("configFile", defs.configFile, find(defs.configFile)) as string | undefined);
  const file = configPath === undefined ? undefined : readConfigFile(path.resolve(configPath));

  const values = {} as Record<SettingName, unknown>;
  for (const [name, d] of defList) values[name] = parse(name, d, find(d, file, configPath));
  const v = values as Values;
  const label = (name: SettingName) => labels.get(name) ?? defs[name].env;

  if (v.encryptionKey !== undefined && v.encryptionKeyFile !== undefined) {
    throw new ConfigError(`set ${label("encryptionKey")} or ${label("encryptionKeyFile")}, not both`);
  }
  const encryptionKey = v.encryptionKey ?? v.encryptionKeyFile;
  if (v.enableEncryption && encryptionKey === undefined) {
    throw new ConfigError(
      `${label("enableEncryption")}=true needs ENCRYPTION_KEY or ENCRYPTION_KEY_FILE: ${KEY_WORDS}`,
    );
  }
  if ((v.tlsCertFile === undefined) !== (v.tlsKeyFile === undefined)) {
    throw new ConfigError(
      `${label("tlsCertFile")} and ${label("tlsKeyFile")} go together: set both (TLS) or neither (plaintext)`,
    );
  }
  const cacheBytes = v.maxCacheSizeMb * MiB;
  if (v.cacheMaxObjectBytes > cacheBytes) {
    throw new ConfigError(
      `invalid ${label("cacheMaxObjectBytes")}=${v.cacheMaxObjectBytes}: expected at most ` +
        `${label("maxCacheSizeMb")} (${formatBytes(cacheBytes)} = ${cacheBytes} bytes)`,
    );
  }

  if (v.tlsClientCaFile !== undefined && v.tlsCertFile === undefined) {
    throw new ConfigError(`${label("tlsClientCaFile")} (mutual TLS) needs TLS: set TLS_CERT_FILE and TLS_KEY_FILE too`);
  }
  let authTokens: TokenFile | undefined;
  if (v.authTokensFile !== undefined) {
    try {
      authTokens = readTokenFile(v.authTokensFile, { clientCertificates: v.tlsClientCaFile !== undefined });
    } catch (err) {
      if (!(err instanceof TokenFileError)) throw err;
      throw new ConfigError(`invalid ${label("authTokensFile")}=${show(v.authTokensFile)}: ${err.message}`);
    }
  }
  const gaps = insecureListenGaps(listenPolicyInput(v));
  if (gaps.length > 0 && !v.allowInsecure) {
    throw new ConfigError(
      `${label("listenAddress")}=${v.listenAddress} is not a loopback address and would be served without ${gaps.join(" and ")}: ` +
        `set TLS_CERT_FILE/TLS_KEY_FILE and AUTH_TOKENS_FILE, or ALLOW_INSECURE=true`,
    );
  }

  const { configFile: _file, encryptionKeyFile: _keyFile, ...direct } = v;
  return { ...direct, encryptionKey, authTokens };
}
