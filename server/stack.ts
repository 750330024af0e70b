/**
 * The one place the storage stack is assembled from the validated Config.
 * A reader finds the route of every call here; tests build stacks with the
 * same function.
 *
 *   engine (keys, limits, quotas, expiry, page tokens)
 *     -> memcache?                          in-memory LRU, original bytes, this process only (no CACHE_URL)
 *     -> chain(primary, fallback)           with GCS_BUCKET_NAME; without it the local branch alone
 *          primary:  codec -> rediscache? -> metrics -> GCS
 *          fallback: codec -> metrics -> local (SQLite index + blobs + outbox)
 *   replicator: outbox -> (rediscache? ->) GCS, raw stored bytes, behind the breaker
 *   sweeper:    the local index every EXPIRY_SWEEP_SECONDS, the bucket every GCS_SWEEP_SECONDS
 *
 * Why this order: the codec sits under the chain, once per tier, so a unary
 * write can be replayed on the fallback and the replicator copies stored
 * bytes without re-encoding. The shared (Redis) cache sits under the codec:
 * it holds stored bytes (encrypted when encryption is on) and the replicator
 * writes through it, so its copies invalidate shared entries; the fallback
 * holds only pending copies, never cached. The metrics layer is next to each
 * tier, so it times the tier's own calls.
 */
import { randomUUID } from "node:crypto";
import type { Backend, Outbox } from "./backends/backend.js";
import { createFsBackend, type FsBackend, type FsFaults } from "./backends/fs/fs-backend.js";
import type { GcsBackend } from "./backends/gcs/gcs-backend.js";
import { createCacheBackend, type CacheBackend, type CacheOptions } from "./cache/cache-backend.js";
import { localCacheKey, tierCacheKey, type CacheKey } from "./cache/cache-key.js";
import { cacheNamespace } from "./cache/cache-namespace.js";
import { createCodecBackend, createKeyring, type Keyring } from "./codec/codec-backend.js";
import type { Config } from "./config/load-config.js";
import { createChainBackend } from "./engine/chain-backend.js";
import { CircuitBreaker, type BreakerState } from "./engine/circuit-breaker.js";
import { createEngine, type Engine } from "./engine/engine.js";
import { startExpirySweeper, type ExpirySweeper } from "./engine/expiry.js";
import { countUsage, createQuotas, type Quotas } from "./engine/quota.js";
import { startReplicator, type Outcome, type Replicator } from "./engine/replicator.js";
import { createSharedQuotas } from "./engine/shared-quotas.js";
import { createMetricsBackend, type TierObserver } from "./metrics/metrics-backend.js";
import { Code, StorageError } from "./storage-error.js";

/** While the store's shared-cache key is unknown, a lookup tries to load it at most this often. */
const CACHE_KEY_RETRY_MS = 2000;

/** What the stack reports as it works (metrics, logs). */
export interface StackEvents {
  onCompressionSaved?: (bytes: number) => void;
  onFallback?: (op: "put" | "delete") => void;
  onReplicated?: (op: "put" | "delete", outcome: Outcome) => void;
  onBreakerState?: (state: BreakerState) => void;
  onExpired?: (count: number) => void;
  /** A get/head answered by the cache / not answered by it. */
  onCacheHit?: () => void;
  onCacheMiss?: () => void;
  /** A shared-cache frame failed authentication (a miss). */
  onCacheRejectedFrame?: () => void;
  /** Each call of a tier (gcs, local) with its outcome and duration. */
  tier?: TierObserver;
  log?: { warn(obj: object, msg: string): void; info(obj: object, msg: string): void };
}

/** What tests and the daemon inject beyond the Config. */
export interface StackHooks {
  fsFaults?: FsFaults;
}

/** The state GetStats, health and metrics report. */
export interface StackStatus {
  initialized: boolean;
  gcsEnabled: boolean;
  gcsAvailable: boolean;
  breaker?: BreakerState;
  localFallbackEnabled: boolean;
  cacheEnabled: boolean;
  compressionEnabled: boolean;
  encryptionEnabled: boolean;
  cache: { entries: number; bytes: number; hits: number; misses: number };
  pending: { count: number; oldestAgeSeconds: number };
}

export interface Stack {
  /** What the RPC handlers call. */
  engine: Engine;
  /** The top of the layers, under the engine. */
  store: Backend;
  status(): StackStatus;
  /** Resolves when a write can be made durable somewhere now. */
  probe(signal?: AbortSignal): Promise<void>;
  /** Runs one replication pass (no-op without GCS). */
  replicate(): Promise<{ replicated: number; remaining: number }>;
  /** Deletes expired objects (and, with GCS, sweeps the bucket); returns how many expired ones. */
  sweepExpired(opts?: { gcs?: boolean }): Promise<number>;
  /** The parts, for admin work and tests. */
  readonly parts: { local: FsBackend; gcs?: GcsBackend; breaker?: CircuitBreaker; replicator?: Replicator; cache?: CacheBackend; quotas?: Quotas };
  close(): Promise<void>;
}

/** Builds the whole stack from `config`; on a failure, whatever was opened is closed again. */
export async function buildStack(config: Config, events: StackEvents = {}, hooks: StackHooks = {}): Promise<Stack> {
  const closers: (() => Promise<void>)[] = [];
  const closeAll = async () => {
    for (const close of closers.splice(0).reverse()) await close().catch(() => undefined);
  };
  try {
    return await assemble(config, events, hooks, closers);
  } catch (err) {
    await closeAll();
    throw err;
  }
}

async function assemble(
  config: Config,
  events: StackEvents,
  hooks: StackHooks,
  closers: (() => Promise<void>)[],
): Promise<Stack> {
  const keyring: Keyring | undefined =
    config.enableEncryption && config.encryptionKey ? createKeyring({ primary: config.encryptionKey, previous: config.encryptionPreviousKeys }) : undefined;
  const codec = (inner: Backend) =>
    createCodecBackend(inner, {
      compression: { enabled: config.enableCompression, thresholdBytes: config.compressionThresholdBytes },
      encryption: keyring,
      allowUnencryptedReads: config.allowUnencryptedReads,
      maxJsonDepth: config.maxJsonDepth,
      onCompressionSaved: events.onCompressionSaved,
    });
  const measured = <T extends Backend>(tier: string, inner: T): T => (events.tier ? createMetricsBackend(inner, tier, events.tier) : inner);

  const cacheOpts: CacheOptions = {
    maxBytes: config.maxCacheSizeMb * 1024 * 1024,
    ttlMs: config.cacheTtlSeconds * 1000,
    maxObjectBytes: config.cacheMaxObjectBytes,
    onHit: events.onCacheHit,
    onMiss: events.onCacheMiss,
  };
  const cacheUrl = config.enableCache ? config.cacheUrl : undefined;
  let cache: CacheBackend | undefined;
  /** The shared cache right above a raw tier: it holds stored bytes. */
  const sharedCache = async (raw: Backend, namespace: string, key: CacheKey) =>
    (cache = await createCacheBackend(raw, {
      ...cacheOpts,
      holds: "stored",
      shared: { url: cacheUrl!, namespace, key, onRejectedFrame: events.onCacheRejectedFrame, log: events.log },
    }));

  const local = await createFsBackend({ root: config.localStoragePath, minFreeBytes: config.localMinFreeBytes, faults: hooks.fsFaults });
  closers.push(() => local.close());
  // The same id the local tier stamps on its own writes (write-origin.ts).
  const writer = local.identity("writer-id", () => randomUUID());
  const storeIdentity = config.gcsBucketName ? { bucket: config.gcsBucketName } : { storeId: local.identity("store-id", () => randomUUID()) };

  let top: Backend;
  let gcs: GcsBackend | undefined;
  let breaker: CircuitBreaker | undefined;
  let replicator: Replicator | undefined;
  let outbox: Outbox | undefined;

  if (config.gcsBucketName) {
    // Each failure counted already spent MAX_RETRIES retries; only tier-wide
    // failures count, so one caller's bad request cannot open it.
    const gcsBreaker = (breaker = new CircuitBreaker({
      failureThreshold: config.gcsBreakerFailures,
      resetTimeoutMs: config.gcsBreakerResetSeconds * 1000,
    }));
    // Loaded only with a bucket: the embedded mode never pays for the GCS SDK.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { createGcsBackend } = require("./backends/gcs/gcs-backend.js") as typeof import("./backends/gcs/gcs-backend.js");
    const raw = (gcs = await createGcsBackend({
      bucket: config.gcsBucketName,
      projectId: config.gcsProjectId,
      keyFilename: config.googleApplicationCredentials,
      location: config.gcsLocation,
      apiEndpoint: config.gcsApiEndpoint,
      maxRetries: config.maxRetries,
      timeoutMs: config.timeoutSeconds * 1000,
      writer,
      resumableThresholdBytes: config.gcsResumableThresholdBytes,
      parallelUpload: { partBytes: config.gcsParallelUploadPartBytes, parts: config.gcsParallelUploadParts },
      parallelRead: {
        thresholdBytes: config.gcsParallelReadThresholdBytes,
        parts: config.gcsParallelReadParts,
        partBytes: config.gcsParallelReadPartBytes,
      },
    }));
    closers.push(() => raw.close());
    try {
      await gcsBreaker.run(() => raw.probe());
    } catch (err) {
      // The start-up check is tier-wide: GCS is down for everyone until a trial call succeeds.
      gcsBreaker.trip();
      if (!config.enableLocalFallback) {
        throw new StorageError(Code.Unavailable, "GCS is unreachable at start-up and ENABLE_LOCAL_FALLBACK=false: refusing to start", { cause: err });
      }
      events.log?.warn({ err }, "GCS is unreachable at start-up: serving from the local tier until it answers");
    }
    let primary: Backend = measured("gcs", raw);
    if (cacheUrl) {
      // Read now only if GCS answered just now: no start-up wait on a dead GCS.
      const key = await tierCacheKey(raw, { tryNow: gcsBreaker.state === "closed", retryMs: CACHE_KEY_RETRY_MS, log: events.log });
      primary = await sharedCache(primary, cacheNamespace(storeIdentity), key);
      closers.push(() => cache!.close());
    }
    outbox = local.outbox;
    top = createChainBackend({
      primary: codec(primary),
      fallback: codec(measured("local", local)) as Backend & { outbox: Outbox },
      breaker: gcsBreaker,
      fallbackEnabled: config.enableLocalFallback,
      writer,
      onFallback: events.onFallback,
    });
    replicator = startReplicator({
      primary,
      fallback: local,
      breaker: gcsBreaker,
      intervalMs: config.replicationIntervalMs,
      onReplicated: (op, outcome, key) => {
        // The replicator writes below the in-memory cache: drop the key there (the shared cache sees its writes).
        if (cache && !cacheUrl) void cache.forget(key).catch(() => undefined);
        events.onReplicated?.(op, outcome);
      },
      onError: (err, entry) => events.log?.warn({ err, key: entry.key, op: entry.op }, "replication attempt failed"),
    });
    const kick = replicator.kick;
    gcsBreaker.onStateChange = (state) => {
      events.onBreakerState?.(state);
      if (state === "closed") kick();
    };
  } else if (cacheUrl) {
    top = codec(await sharedCache(measured("local", local), cacheNamespace(storeIdentity), localCacheKey(local)));
    closers.push(() => cache!.close());
  } else {
    top = codec(measured("local", local));
  }

  // Without CACHE_URL the in-memory cache sits on top (original bytes, this process only).
  if (config.enableCache && !cacheUrl) top = cache = await createCacheBackend(top, cacheOpts);
  const store = top;

  // With a shared Redis, quotas are counted there, across every daemon of the store.
  let quotas: Quotas | undefined;
  const prefixes = Object.keys(config.quotas);
  if (prefixes.length > 0) {
    const usage = await countUsage(store, prefixes);
    quotas = config.cacheUrl
      ? await createSharedQuotas({ url: config.cacheUrl, namespace: cacheNamespace(storeIdentity), limits: config.quotas, initialUsage: usage })
      : createQuotas(config.quotas, usage);
  }

  const engine = createEngine(store, {
    limits: { maxObjectBytes: config.maxObjectBytes, maxListResponseBytes: config.maxListResponseBytes },
    quotas,
    log: events.log,
  });
  const sweeper: ExpirySweeper = startExpirySweeper({
    local,
    store,
    gcs: gcs && breaker ? { backend: gcs, breaker, tombstoneRetentionMs: config.tombstoneRetentionSeconds * 1000 } : undefined,
    quotas,
    localIntervalMs: config.expirySweepSeconds * 1000,
    gcsIntervalMs: config.gcsSweepSeconds * 1000,
    onExpired: events.onExpired,
    log: events.log,
  });

  return {
    engine,
    store,
    probe: (signal) => store.probe(signal),
    status() {
      const pending = outbox?.stats() ?? { count: 0 };
      return {
        initialized: true,
        gcsEnabled: breaker !== undefined,
        gcsAvailable: breaker !== undefined && breaker.state === "closed",
        breaker: breaker?.state,
        localFallbackEnabled: config.gcsBucketName ? config.enableLocalFallback : true,
        cacheEnabled: cache !== undefined,
        compressionEnabled: config.enableCompression,
        encryptionEnabled: keyring !== undefined,
        cache: cache?.cacheStats() ?? { entries: 0, bytes: 0, hits: 0, misses: 0 },
        pending: {
          count: pending.count,
          oldestAgeSeconds: pending.oldestCreatedAt === undefined ? 0 : (Date.now() - pending.oldestCreatedAt) / 1000,
        },
      };
    },
    replicate: () => replicator?.drain() ?? Promise.resolve({ replicated: 0, remaining: 0 }),
    sweepExpired: (opts) => sweeper.sweep(opts),
    parts: { local, gcs, breaker, replicator, cache, quotas },
    async close() {
      await sweeper.stop();
      await replicator?.stop();
      // The layers close their inner backends (the chain both tiers, a cache its store and tier).
      await store.close();
      closers.length = 0;
      await quotas?.close();
    },
  };
}
