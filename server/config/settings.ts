/**
 * The settings table: every setting of the daemon, its environment name,
 * config-file key, flag, default, what is allowed and what it does. One source
 * of truth for the loader (load-config.ts), `serve --help`, `filestorage
 * settings` and the README's configuration table.
 */
import { z } from "zod";
import {
  GiB,
  KiB,
  MiB,
  TiB,
  boolean,
  byteLimit,
  bytes,
  decodeKey,
  existingFile,
  folder,
  host,
  hostPort,
  integer,
  jsonText,
  KEY_WORDS,
  keySchema,
  readText,
  seconds,
  text,
  toNumber,
  url,
  type Kind,
} from "./value-kinds.js";

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

// The table. Raw defaults are written as a user would write them and go
// through the same schema as any other value.

export interface SettingDef extends Kind {
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

export const defs = {
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
  diskCacheMaxMb: {
    env: "DISK_CACHE_MAX_MB",
    ...integer(0, 16 * 1024 * 1024),
    default: "1024",
    description:
      "with GCS: MiB of GCS objects (stored bytes) kept on the local disk as a read cache, least recently used evicted first; 0 = off",
  },
  diskCacheMinFreeMb: {
    env: "DISK_CACHE_MIN_FREE_MB",
    ...integer(0, 1024 * 1024),
    default: "1024",
    description: "the disk cache admits no copy that would leave the disk with less free, evicting first",
  },
  diskCacheOnWrite: {
    env: "DISK_CACHE_ON_WRITE",
    ...boolean,
    default: "false",
    description: "also keep what is written through the daemon in the disk cache (once GCS committed it)",
  },
  scrubBytesPerSecond: {
    env: "SCRUB_BYTES_PER_SECOND",
    ...bytes(0, 10 * GiB),
    default: "4MiB",
    description: "rate at which the background scrubber re-reads the local tier and the disk cache to find and repair bad copies; 0 = off",
  },
  scrubIntervalSeconds: {
    env: "SCRUB_INTERVAL_SECONDS",
    ...integer(1, 30 * 86_400),
    default: "3600",
    description: "pause between scrubber passes, and before the first one after start-up",
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
  gcsResumableThresholdBytes: {
    env: "GCS_RESUMABLE_THRESHOLD_BYTES",
    ...bytes(256 * KiB, 256 * MiB),
    default: "8MiB",
    description:
      "uploads up to this size go to GCS in one request (held in memory, so a failure is retried); larger ones go in parts, and parts of at least this size go up resumably",
  },
  gcsParallelUploadPartBytes: {
    env: "GCS_PARALLEL_UPLOAD_PART_BYTES",
    ...bytes(256 * KiB, GiB),
    default: "16MiB",
    description: "uploads over GCS_RESUMABLE_THRESHOLD_BYTES go to GCS in parts of this size, each held in memory while it uploads (so a failed part is sent again)",
  },
  gcsParallelUploadParts: {
    env: "GCS_PARALLEL_UPLOAD_PARTS",
    ...integer(1, 32),
    default: "4",
    description:
      "parts of one upload sent to GCS at once, composed into the key at the end; an upload holds at most (this + 1) x GCS_PARALLEL_UPLOAD_PART_BYTES; 1 = one resumable session sent in requests of that size",
  },
  gcsParallelReadThresholdBytes: {
    env: "GCS_PARALLEL_READ_THRESHOLD_BYTES",
    ...bytes(MiB, 5 * TiB),
    default: "64MiB",
    description: "reads from GCS of at least this many bytes (objects or ranges) go in parallel ranged parts, delivered in order",
  },
  gcsParallelReadParts: {
    env: "GCS_PARALLEL_READ_PARTS",
    ...integer(1, 64),
    default: "8",
    description: "parts of one large read in flight at once (1 = one request); a read holds at most (this - 1) x GCS_PARALLEL_READ_PART_BYTES ahead of its reader",
  },
  gcsParallelReadPartBytes: {
    env: "GCS_PARALLEL_READ_PART_BYTES",
    ...bytes(256 * KiB, GiB),
    default: "16MiB",
    description: "size of one part of a parallel read",
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
  enableTracing: {
    env: "ENABLE_TRACING",
    ...boolean,
    default: "false",
    description: "OpenTelemetry traces: a span per RPC and per tier call, sent as OTLP/HTTP to TRACING_ENDPOINT",
  },
  tracingEndpoint: {
    env: "TRACING_ENDPOINT",
    ...url(["http", "https"]),
    default: "http://127.0.0.1:4318",
    description: "OTLP/HTTP base URL of a collector; spans go to <endpoint>/v1/traces",
  },
  tracingSampleRatio: {
    env: "TRACING_SAMPLE_RATIO",
    schema: z.preprocess(toNumber, z.number().min(0).max(1)),
    allowed: "a number from 0 to 1",
    default: "1",
    description: "share of new traces recorded; a caller's sampled traceparent is always followed",
  },
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
  lifecycleRules: {
    env: "LIFECYCLE_RULES",
    schema: z.preprocess(
      jsonText,
      z
        .array(
          z.strictObject({
            prefix: z.string().max(1024).refine((p) => !/[\0\r\n]/.test(p)),
            max_age_seconds: z.number().int().min(1).max(100 * 365 * 86_400),
          }),
        )
        .transform((rules) => rules.map((r) => ({ prefix: r.prefix, maxAgeSeconds: r.max_age_seconds }))),
    ),
    allowed:
      'a JSON list of {"prefix": key prefix, "max_age_seconds": whole seconds >= 1}, e.g. [{"prefix": "temp/", "max_age_seconds": 86400}]',
    default: [],
    defaultText: "none",
    description: "objects under a prefix expire that long after their last write, on both tiers (like GCS lifecycle age rules)",
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
    description: "how often expired objects and abandoned resumable uploads are removed from the local tier (by its index)",
  },
  uploadExpirySeconds: {
    env: "UPLOAD_EXPIRY_SECONDS",
    ...integer(1, 10 * 365 * 86_400),
    default: "86400",
    description:
      "a resumable upload (StoreStream with an upload_id) no stream has touched for this long is deleted with its bytes, " +
      "freeing its space and quota (checked every EXPIRY_SWEEP_SECONDS); a completed one stays queryable this long",
  },
  maxOpenUploads: {
    env: "MAX_OPEN_UPLOADS",
    ...integer(1, 1_000_000),
    default: "1000",
    description: "incomplete resumable uploads kept at once, in total; a new one past it is RESOURCE_EXHAUSTED",
  },
  maxOpenUploadsPerCaller: {
    env: "MAX_OPEN_UPLOADS_PER_CALLER",
    ...integer(1, 1_000_000),
    default: "100",
    description: 'incomplete resumable uploads kept at once per caller (auth entry name; all callers are "anonymous" without auth)',
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
    description: "log level",
  },
  logFormat: {
    env: "LOG_FORMAT",
    schema: z.preprocess(
      (value) => (typeof value === "string" ? value.trim().toLowerCase() : value),
      z.enum(["json", "pretty", "auto"]),
    ),
    allowed: "json, pretty or auto (pretty when stdout is a terminal, else json)",
    default: "json",
    description: "how log lines on stdout read: one JSON object per line, or a readable line per entry (pino-pretty)",
  },
} satisfies Record<string, SettingDef>;

export type Defs = typeof defs;
export type SettingName = keyof Defs;

/** Parsed values: settings with a default always have one. */
export type Values = {
  [K in SettingName]: Defs[K] extends { schema: infer S extends z.ZodType; default: {} }
    ? z.output<S>
    : Defs[K] extends { schema: infer S extends z.ZodType }
      ? z.output<S> | undefined
      : never;
};

export const defList = Object.entries(defs) as [SettingName, SettingDef][];

export const flagOf = (d: SettingDef) => (d.secret ? undefined : (d.flag ?? `--${d.env.toLowerCase().replaceAll("_", "-")}`));
/** commander's camelCase of a flag: --max-retries -> maxRetries. */
export const flagKey = (flag: string) => flag.slice(2).replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
export const fileKeyOf = (d: SettingDef) => (d.notInFile ? undefined : d.env.toLowerCase());

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
