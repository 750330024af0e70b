/**
 * The engine: what the RPC handlers call. It assembles the stack of layers
 * from the configuration and adds what belongs above every backend: object
 * size limits, quotas, expiry, page tokens and status.
 *
 *   cache? -> chain(codec -> GCS, codec -> local + outbox)   with GCS_BUCKET_NAME
 *   cache? -> codec -> local                                  without (embedded)
 *
 * The codec sits under the chain, once per tier, so a unary write can be
 * replayed on the fallback and the replicator copies stored bytes as they are.
 */
import type { Readable } from "node:stream";
import { BufferedSource, type Backend, type GetOptions, type ObjectRecord, type Outbox, type PutMeta, type PutOptions, type DeleteOptions } from "../backends/backend.js";
import { createFsBackend } from "../backends/fs-backend.js";
import { createCacheBackend } from "../cache/cache-backend.js";
import { createCodecBackend, createKeyring } from "../codec/codec-backend.js";
import type { Config } from "../config.js";
import { checkKey, checkPrefix } from "../keys.js";
import { Code, StorageError, generationMismatch, invalidArgument } from "../storage-error.js";
import { createChainBackend } from "./chain-backend.js";
import { CircuitBreaker } from "./circuit-breaker.js";
import { createQuotas, type Quotas } from "./quota.js";
import { startReplicator, type Replicator } from "./replicator.js";

export interface EngineStatus {
  initialized: boolean;
  gcsEnabled: boolean;
  gcsAvailable: boolean;
  breaker?: "closed" | "open" | "half-open";
  localFallbackEnabled: boolean;
  cacheEnabled: boolean;
  compressionEnabled: boolean;
  encryptionEnabled: boolean;
  cache: { entries: number; bytes: number; hits: number; misses: number };
  pending: { count: number; oldestAgeSeconds: number };
}

export interface EngineEvents {
  onCompressionSaved?: (bytes: number) => void;
  onFallback?: (op: "put" | "delete") => void;
  onReplicated?: (op: "put" | "delete", outcome: "copied" | "superseded") => void;
  onBreakerState?: (state: "closed" | "open" | "half-open") => void;
  onExpired?: (count: number) => void;
  /** A get/head answered by the cache / not answered by it. */
  onCacheHit?: () => void;
  onCacheMiss?: () => void;
  log?: { warn(obj: object, msg: string): void; info(obj: object, msg: string): void };
}

export interface ListRequest {
  prefix: string;
  limit: number;
  pageToken: string;
  delimiter: string;
  signal?: AbortSignal;
}

export interface Engine {
  /** Writes an object. `declaredSize` (a stream's header) is checked against limits up front. */
  put(key: string, source: AsyncIterable<Uint8Array>, meta: PutMeta, opts?: PutOptions & { declaredSize?: number }): Promise<ObjectRecord>;
  /** The live object, or undefined (missing or expired). */
  get(key: string, opts?: GetOptions): Promise<{ record: ObjectRecord; body: Readable } | undefined>;
  head(key: string, opts?: { signal?: AbortSignal }): Promise<ObjectRecord | undefined>;
  delete(key: string, opts?: DeleteOptions): Promise<boolean>;
  deleteMany(keys: string[], prefix: string, signal?: AbortSignal): Promise<number>;
  list(req: ListRequest): Promise<{ objects: ObjectRecord[]; prefixes: string[]; nextPageToken: string }>;
  /** Resolves when a write can be made durable somewhere now. */
  probe(signal?: AbortSignal): Promise<void>;
  status(): EngineStatus;
  /** Runs one replication pass (no-op without GCS). */
  replicate(): Promise<{ replicated: number; remaining: number }>;
  /** Deletes expired objects; returns how many. */
  sweepExpired(): Promise<number>;
  /** Removes a crash's leftovers from the local folder (FsBackend.sweepLeftovers); once, after the server bound. */
  sweepLeftovers(): Promise<{ tmpFiles: number; blobs: number }>;
  close(): Promise<void>;
}

export const DEFAULT_PAGE_SIZE = 1000;
export const MAX_PAGE_SIZE = 10000;

export async function createEngine(config: Config, events: EngineEvents = {}): Promise<Engine> {
  const keyring = config.enableEncryption && config.encryptionKey
    ? createKeyring({ primary: config.encryptionKey, previous: config.encryptionPreviousKeys })
    : undefined;
  const codec = (inner: Backend) =>
    createCodecBackend(inner, {
      compression: { enabled: config.enableCompression, thresholdBytes: config.compressionThresholdBytes },
      encryption: keyring,
      maxJsonBytes: config.maxJsonBytes,
      onCompressionSaved: events.onCompressionSaved,
    });

  const localRaw = await createFsBackend({ root: config.localStoragePath });
  let top: Backend;
  let breaker: CircuitBreaker | undefined;
  let replicator: Replicator | undefined;
  let outbox: Outbox | undefined;

  if (config.gcsBucketName) {
    // One failed call already spent MAX_RETRIES retries, so it opens the breaker:
    // later calls fail over at once and GetStats says GCS is unavailable.
    breaker = new CircuitBreaker({ failureThreshold: 1, resetTimeoutMs: 2000 });
    let gcsRaw: Backend;
    try {
      // Loaded only with a bucket: the embedded mode never pays for the GCS SDK.
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const { createGcsBackend } = require("../backends/gcs-backend.js") as typeof import("../backends/gcs-backend.js");
      gcsRaw = await createGcsBackend({
        bucket: config.gcsBucketName,
        projectId: config.gcsProjectId,
        keyFilename: config.googleApplicationCredentials,
        location: config.gcsLocation,
        apiEndpoint: config.gcsApiEndpoint,
        maxRetries: config.maxRetries,
        timeoutMs: config.timeoutSeconds * 1000,
      });
    } catch (err) {
      await localRaw.close();
      throw err;
    }
    try {
      await breaker.run(() => gcsRaw.probe());
    } catch (err) {
      if (!config.enableLocalFallback) {
        await localRaw.close();
        throw new StorageError(Code.Unavailable, "GCS is unreachable at start-up and ENABLE_LOCAL_FALLBACK=false: refusing to start", { cause: err });
      }
      events.log?.warn({ err }, "GCS is unreachable at start-up: serving from the local tier until it answers");
    }
    const fallback = codec(localRaw) as Backend & { outbox: Outbox };
    outbox = localRaw.outbox;
    top = createChainBackend({
      primary: codec(gcsRaw),
      fallback,
      breaker,
      fallbackEnabled: config.enableLocalFallback,
      onFallback: events.onFallback,
    });
    replicator = startReplicator({
      primary: gcsRaw,
      fallback: localRaw,
      breaker,
      intervalMs: config.replicationIntervalMs,
      onReplicated: events.onReplicated,
      onError: (err, entry) => events.log?.warn({ err, key: entry.key, op: entry.op }, "replication attempt failed"),
    });
    const kick = replicator.kick;
    breaker.onStateChange = (state) => {
      events.onBreakerState?.(state);
      if (state === "closed") kick();
    };
  } else {
    top = codec(localRaw);
  }

  const cache = config.enableCache
    ? await createCacheBackend(top, {
        maxBytes: config.maxCacheSizeMb * 1024 * 1024,
        ttlMs: config.cacheTtlSeconds * 1000,
        maxObjectBytes: config.cacheMaxObjectBytes,
        url: config.cacheUrl,
        onHit: events.onCacheHit,
        onMiss: events.onCacheMiss,
      })
    : undefined;
  const store: Backend = cache ?? top;

  const quotas = await loadQuotas(store, config.quotas);
  const live = (r: ObjectRecord | undefined, now = Date.now()) =>
    r !== undefined && (r.expiresAt === undefined || r.expiresAt > now) ? r : undefined;

  async function put(key: string, source: AsyncIterable<Uint8Array>, meta: PutMeta, opts: PutOptions & { declaredSize?: number } = {}) {
    checkKey(key);
    const { declaredSize, ...putOpts } = opts;
    if (declaredSize !== undefined && declaredSize > config.maxObjectBytes) throw tooLarge(declaredSize);
    // The object this write replaces frees its bytes (an expired one too: it is still counted until swept).
    const covered = quotas?.covers(key) ?? false;
    // A create-only write (if_generation_match=0) may replace an expired object
    // the sweeper has not removed yet: to callers it is absent already.
    const current = covered || putOpts.ifGenerationMatch === 0n ? await store.head(key, { signal: putOpts.signal }) : undefined;
    if (putOpts.ifGenerationMatch === 0n && current && !live(current)) putOpts.ifGenerationMatch = current.generation;
    const oldSize = covered ? current?.size ?? 0 : 0;
    const reservation = covered ? quotas!.reserve(key, declaredSize ?? 0, oldSize) : undefined;
    try {
      const limited = limitSource(source, config.maxObjectBytes, declaredSize ?? 0, reservation?.grow);
      const record = await store.put(key, limited, meta, putOpts);
      reservation?.commit(record.size, oldSize);
      return record;
    } catch (err) {
      reservation?.release();
      throw err;
    }
  }

  function tooLarge(size: number) {
    return new StorageError(
      Code.ResourceExhausted,
      `object of ${size} bytes exceeds the maximum object size of ${config.maxObjectBytes} bytes (MAX_OBJECT_BYTES)`,
    );
  }

  /** Counts bytes as they pass: over MAX_OBJECT_BYTES, or past the quota reservation, the write fails. */
  function limitSource(source: AsyncIterable<Uint8Array>, max: number, reserved: number, grow?: (n: number) => void): AsyncIterable<Uint8Array> {
    if (source instanceof BufferedSource) {
      // A unary body: check it whole and keep it replayable for the fallback.
      const total = source.byteLength;
      if (total > max) throw tooLarge(total);
      if (total > reserved) grow?.(total - reserved);
      return source;
    }
    return (async function* () {
      let seen = 0;
      for await (const chunk of source) {
        seen += chunk.byteLength;
        if (seen > max) throw tooLarge(seen);
        if (seen > reserved) {
          grow?.(seen - reserved);
          reserved = seen;
        }
        yield chunk;
      }
    })();
  }

  async function get(key: string, opts?: GetOptions) {
    checkKey(key);
    const found = await store.get(key, opts);
    if (found && !live(found.record)) {
      found.body.destroy();
      return undefined;
    }
    return found;
  }

  async function head(key: string, opts?: { signal?: AbortSignal }) {
    checkKey(key);
    return live(await store.head(key, opts));
  }

  async function del(key: string, opts: DeleteOptions = {}) {
    checkKey(key);
    const before = await store.head(key, opts);
    if (before && !live(before)) {
      // Expired: already absent to callers. Remove it now, but report no delete.
      if (opts.ifGenerationMatch !== undefined) throw generationMismatch(key, opts.ifGenerationMatch, undefined);
      if (await store.delete(key, { ...opts, ifGenerationMatch: before.generation }).catch(() => false)) quotas?.released(key, before.size);
      return false;
    }
    const deleted = await store.delete(key, opts);
    if (deleted && before) quotas?.released(key, before.size);
    return deleted;
  }

  async function deleteMany(keys: string[], prefix: string, signal?: AbortSignal) {
    keys.forEach((k) => checkKey(k, `keys[] entry "${k.slice(0, 64)}"`));
    checkPrefix(prefix);
    if (keys.length === 0 && prefix === "") {
      throw invalidArgument("DeleteMany needs keys or a non-empty prefix (an empty prefix would delete everything)");
    }
    let count = 0;
    for (const key of keys) if (await del(key, { signal })) count++;
    if (prefix !== "") {
      let startAfter: string | undefined;
      do {
        const page = await store.list({ prefix, startAfter, limit: DEFAULT_PAGE_SIZE, signal });
        for (const r of page.objects) if (await del(r.key, { signal })) count++;
        startAfter = page.next;
      } while (startAfter !== undefined);
    }
    return count;
  }

  async function list(req: ListRequest) {
    checkPrefix(req.prefix);
    if (req.delimiter.length > 1 && req.delimiter !== "/") checkPrefix(req.delimiter, "delimiter");
    if (req.limit < 0 || req.limit > MAX_PAGE_SIZE) {
      throw invalidArgument(`limit must be from 0 (default ${DEFAULT_PAGE_SIZE}) to ${MAX_PAGE_SIZE}; got ${req.limit}`);
    }
    const startAfter = decodePageToken(req);
    const page = await store.list({
      prefix: req.prefix,
      delimiter: req.delimiter || undefined,
      limit: req.limit || DEFAULT_PAGE_SIZE,
      startAfter,
      signal: req.signal,
    });
    const now = Date.now();
    return {
      objects: page.objects.filter((r) => live(r, now)),
      prefixes: page.prefixes,
      nextPageToken: page.next === undefined ? "" : encodePageToken(req, page.next),
    };
  }

  async function sweepExpired(): Promise<number> {
    let count = 0;
    let startAfter: string | undefined;
    const now = Date.now();
    do {
      const page = await store.list({ limit: DEFAULT_PAGE_SIZE, startAfter });
      for (const r of page.objects) {
        if (r.expiresAt !== undefined && r.expiresAt <= now) {
          try {
            if (await store.delete(r.key, { ifGenerationMatch: r.generation })) {
              count++;
              quotas?.released(r.key, r.size);
            }
          } catch (err) {
            // Rewritten meanwhile (precondition) or a tier is down: next sweep.
            if (!StorageError.is(err, Code.FailedPrecondition, Code.Unavailable)) throw err;
          }
        }
      }
      startAfter = page.next;
    } while (startAfter !== undefined);
    if (count > 0) events.onExpired?.(count);
    return count;
  }

  const sweeper = setInterval(() => {
    sweepExpired().catch((err) => events.log?.warn({ err }, "expiry sweep failed"));
  }, config.expirySweepSeconds * 1000);
  sweeper.unref();

  return {
    put,
    get,
    head,
    delete: del,
    deleteMany,
    list,
    probe: (signal) => store.probe(signal),
    status() {
      const pending = outbox?.stats() ?? { count: 0 };
      const cs = cache?.cacheStats() ?? { entries: 0, bytes: 0, hits: 0, misses: 0 };
      return {
        initialized: true,
        gcsEnabled: breaker !== undefined,
        gcsAvailable: breaker !== undefined && breaker.state === "closed",
        breaker: breaker?.state,
        localFallbackEnabled: config.gcsBucketName ? config.enableLocalFallback : true,
        cacheEnabled: cache !== undefined,
        compressionEnabled: config.enableCompression,
        encryptionEnabled: keyring !== undefined,
        cache: cs,
        pending: {
          count: pending.count,
          oldestAgeSeconds: pending.oldestCreatedAt === undefined ? 0 : (Date.now() - pending.oldestCreatedAt) / 1000,
        },
      };
    },
    replicate: () => replicator?.drain() ?? Promise.resolve({ replicated: 0, remaining: 0 }),
    sweepExpired,
    sweepLeftovers: () => localRaw.sweepLeftovers(),
    async close() {
      clearInterval(sweeper);
      await replicator?.stop();
      await store.close();
    },
  };
}

async function loadQuotas(store: Backend, limits: Record<string, number>): Promise<Quotas | undefined> {
  if (Object.keys(limits).length === 0) return undefined;
  const usage: Record<string, number> = {};
  for (const prefix of Object.keys(limits)) {
    let used = 0;
    let startAfter: string | undefined;
    do {
      const page = await store.list({ prefix, startAfter, limit: DEFAULT_PAGE_SIZE });
      for (const r of page.objects) used += r.size;
      startAfter = page.next;
    } while (startAfter !== undefined);
    usage[prefix] = used;
  }
  return createQuotas(limits, usage);
}

// Page tokens are opaque to callers: the key to continue after, bound to the
// listing they came from so a token cannot be replayed against another prefix.
interface PageToken {
  v: 1;
  after: string;
  prefix: string;
  delimiter: string;
}

function encodePageToken(req: ListRequest, next: string): string {
  let after = next;
  // After a rolled-up prefix, skip everything under it: U+10FFFF sorts after
  // every other character in UTF-8 byte order.
  if (req.delimiter && after.endsWith(req.delimiter)) after += "\u{10FFFF}";
  const token: PageToken = { v: 1, after, prefix: req.prefix, delimiter: req.delimiter };
  return Buffer.from(JSON.stringify(token)).toString("base64url");
}

function decodePageToken(req: ListRequest): string | undefined {
  if (!req.pageToken) return undefined;
  let token: PageToken;
  try {
    token = JSON.parse(Buffer.from(req.pageToken, "base64url").toString("utf8")) as PageToken;
  } catch {
    throw invalidArgument("page_token is not a token from a previous ListKeys response");
  }
  if (token?.v !== 1 || typeof token.after !== "string") {
    throw invalidArgument("page_token is not a token from a previous ListKeys response");
  }
  if (token.prefix !== req.prefix || token.delimiter !== req.delimiter) {
    throw invalidArgument("page_token belongs to a listing with another prefix or delimiter");
  }
  return token.after;
}
