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
import { insecureListenGaps } from "../auth/listen-policy.js";
import { readTokenFile, TokenFileError, type TokenFile } from "../auth/token-file.js";
import type { LifecycleRule } from "../engine/lifecycle.js";
import { defList, defs, fileKeyOf, flagKey, flagOf, type SettingDef, type SettingName, type Values } from "./settings.js";
import { KEY_WORDS, MiB, formatBytes, parseJson } from "./value-kinds.js";

export { settings, type SettingInfo } from "./settings.js";
export { formatBytes } from "./value-kinds.js";

export type LogLevel = "fatal" | "error" | "warn" | "info" | "debug" | "trace";
/** LOG_FORMAT: JSON lines, readable lines, or readable on a terminal only. */
export type LogFormat = "json" | "pretty" | "auto";

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
  /** With GCS: bound of the disk cache of GCS objects in MiB; 0 = off. */
  diskCacheMaxMb: number;
  /** The disk cache keeps at least this many MiB free on its disk. */
  diskCacheMinFreeMb: number;
  /** Keep what is written through the daemon in the disk cache too. */
  diskCacheOnWrite: boolean;
  /** Bytes per second the scrubber re-reads; 0 = off. */
  scrubBytesPerSecond: number;
  /** Pause between scrubber passes. */
  scrubIntervalSeconds: number;
  chunkSize: number;
  maxRetries: number;
  timeoutSeconds: number;
  /** Consecutive GCS outage failures that open the circuit breaker. */
  gcsBreakerFailures: number;
  /** How long an open breaker fails calls at once before a trial call. */
  gcsBreakerResetSeconds: number;
  /** Uploads up to this size go in one request; larger ones in parts. */
  gcsResumableThresholdBytes: number;
  gcsParallelUploadPartBytes: number;
  /** Parts of one upload in flight. */
  gcsParallelUploadParts: number;
  /** Reads of at least this size go in parallel parts. */
  gcsParallelReadThresholdBytes: number;
  /** Parts of one read in flight (1 = never in parts). */
  gcsParallelReadParts: number;
  gcsParallelReadPartBytes: number;
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
  enableTracing: boolean;
  /** OTLP/HTTP base URL; spans go to <endpoint>/v1/traces. */
  tracingEndpoint: string;
  tracingSampleRatio: number;
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
  /** Objects under a prefix expire maxAgeSeconds after their write. */
  lifecycleRules: LifecycleRule[];
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
  /** An abandoned resumable upload is deleted after this long; a completed one stays queryable this long. */
  uploadExpirySeconds: number;
  /** Incomplete resumable uploads kept at once, in total and per caller. */
  maxOpenUploads: number;
  maxOpenUploadsPerCaller: number;
  /** How often the whole bucket is listed to remove expired objects, old tombstones and upload leftovers. */
  gcsSweepSeconds: number;
  /** How long GCS keeps the tombstone of a deleted key (guards against older writes replayed late). */
  tombstoneRetentionSeconds: number;
  logLevel: LogLevel;
  logFormat: LogFormat;
}

/** A bad setting. The message is one line, safe to print: no key material. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

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
