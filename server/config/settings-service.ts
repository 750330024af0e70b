/**
 * What the daemon does to objects and how it is reached: compression,
 * encryption, listening, metrics and tracing, limits, quotas, lifecycle rules,
 * access control and TLS. Part of the settings table (settings.ts, which keeps
 * the order of the README table).
 */
import { z } from "zod";
import type { SettingDef } from "./setting-def.js";
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
  host,
  hostPort,
  integer,
  jsonText,
  KEY_WORDS,
  keySchema,
  readText,
  toNumber,
  url,
} from "./value-kinds.js";

export const serviceSettings = {
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
} satisfies Record<string, SettingDef>;
