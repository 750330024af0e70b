/**
 * The daemon's start line: what an operator needs to know once it serves,
 * in one log line (fields for machines) and one sentence (for a terminal).
 * It names the address, the storage folder, the mode (which tiers take
 * writes now), TLS, authentication, encryption, the cache, the metrics
 * endpoint and the version; never a key, a token or a password (a CACHE_URL
 * may carry one: only its kind is named).
 */
import type { Config } from "./config/load-config.js";
import type { StackStatus } from "./stack.js";

/** The start line's fields, each a short phrase. */
export interface StartLine {
  address: string;
  /** LOCAL_STORAGE_PATH, absolute. */
  storage: string;
  /** "local only", "GCS bucket B with local fallback", "GCS only (bucket B)" or "degraded: GCS unreachable, writing to local (bucket B)". */
  mode: string;
  /** "off", "on" or "on (mTLS)". */
  tls: string;
  /** "off", "on (N tokens)", "on (N tokens, M client certificate names)" or "on (client certificates)". */
  auth: string;
  /** "off" or "on (N keys)": the current key and the previous ones; never the keys. */
  encryption: string;
  /** "off", "memory (N MiB)" or "redis". */
  cache: string;
  /** host:port of /metrics, or "off". */
  metrics: string;
  version: string;
}

/** What the start line is made of beyond the Config: the bound ports and the stack's state once serving. */
export interface StartState {
  address: string;
  metricsPort?: number;
  status: Pick<StackStatus, "gcsEnabled" | "gcsAvailable" | "localFallbackEnabled">;
  version: string;
}

export function startLine(config: Config, state: StartState): StartLine {
  return {
    address: state.address,
    storage: config.localStoragePath,
    mode: modeOf(config, state.status),
    tls: !config.tlsCertFile ? "off" : config.tlsClientCaFile ? "on (mTLS)" : "on",
    auth: authOf(config),
    encryption: config.enableEncryption && config.encryptionKey ? `on (${plural(1 + config.encryptionPreviousKeys.length, "key")})` : "off",
    cache: !config.enableCache ? "off" : config.cacheUrl ? "redis" : `memory (${config.maxCacheSizeMb} MiB)`,
    metrics: state.metricsPort === undefined ? "off" : `${hostForUrl(config.metricsHost)}:${state.metricsPort}`,
    version: state.version,
  };
}

/** The start line as one sentence for a terminal. */
export function startSentence(line: StartLine): string {
  return (
    `FileStorage ${line.version} serving on ${line.address}: ${line.mode}; storage ${line.storage}; ` +
    `TLS ${line.tls}; auth ${line.auth}; encryption ${line.encryption}; cache ${line.cache}; metrics ${line.metrics}`
  );
}

function modeOf(config: Config, s: StartState["status"]): string {
  if (!s.gcsEnabled || !config.gcsBucketName) return "local only";
  const bucket = config.gcsBucketName;
  if (!s.localFallbackEnabled) return `GCS only (bucket ${bucket})`;
  // The breaker is closed only once GCS answered: at start-up that is the start-up check.
  return s.gcsAvailable ? `GCS bucket ${bucket} with local fallback` : `degraded: GCS unreachable, writing to local (bucket ${bucket})`;
}

function authOf(config: Config): string {
  const entries = config.authTokens?.entries;
  if (!entries) return config.tlsClientCaFile ? "on (client certificates)" : "off";
  const tokens = entries.filter((e) => e.credential.kind === "token").length;
  const names = entries.length - tokens;
  return `on (${[tokens > 0 || names === 0 ? plural(tokens, "token") : "", names > 0 ? plural(names, "client certificate name") : ""].filter(Boolean).join(", ")})`;
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;

/** An IPv6 literal in brackets, as in host:port. */
const hostForUrl = (host: string) => (host.includes(":") && !host.startsWith("[") ? `[${host}]` : host);
