/**
 * The one place the storage stack is assembled from the validated Config.
 * A reader finds the route of every call here; tests build stacks with the
 * same function.
 *
 *   engine (keys, limits, quotas, expiry, page tokens)
 *     -> memcache?                          in-memory LRU, original bytes, this process only (no CACHE_URL)
 *     -> chain(primary, fallback, cached)   with GCS_BUCKET_NAME; without it the local branch alone
 *          primary:  codec -> rediscache? -> diskcache? -> metrics -> GCS
 *          fallback: codec -> metrics -> local (SQLite index + blobs + outbox)
 *          cached:   codec -> diskcache's offline view (read while GCS is unavailable)
 *   replicator: outbox -> (rediscache? -> diskcache? ->) GCS, raw stored bytes, behind the breaker
 *   sweeper:    the local index every EXPIRY_SWEEP_SECONDS (expired objects, abandoned uploads), the bucket every GCS_SWEEP_SECONDS
 *   verify / scrubber: the local tier and the disk cache (and GCS on request), repairs between them
 *   uploads:    resumable upload sessions, kept by the local tier whatever the primary; a completed
 *               one is written through the engine (so: quotas, codec, chain, outbox) from its file
 *
 * The disk cache (DISK_CACHE_MAX_MB > 0, GCS only) holds stored bytes, so it
 * sits under the codec; under the shared cache, so Redis still answers the
 * small objects it holds without a GCS request and the disk cache serves
 * what Redis misses (and every large object) after one metadata request.
 * The replicator writes through both, so their copies of a key it changes go.
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
import { createFsBackend } from "./backends/fs/fs-backend.js";
import type { GcsBackend } from "./backends/gcs/gcs-backend.js";
import { createCacheBackend, type CacheBackend, type CacheOptions } from "./cache/cache-backend.js";
import { createDiskCacheBackend, type DiskCacheBackend } from "./cache/disk/disk-cache-backend.js";
import { localCacheKey, tierCacheKey, type CacheKey } from "./cache/cache-key.js";
import { cacheNamespace } from "./cache/cache-namespace.js";
import { createCodecBackend, createKeyring, type Keyring } from "./codec/codec-backend.js";
import type { Config } from "./config/load-config.js";
import { createChainBackend } from "./engine/chain-backend.js";
import { CircuitBreaker } from "./engine/circuit-breaker.js";
import { createEngine } from "./engine/engine.js";
import { startExpirySweeper, type ExpirySweeper } from "./engine/expiry.js";
import { flushBacklog } from "./engine/flush.js";
import { countUsage, createQuotas, type Quotas } from "./engine/quota.js";
import { createRepairs, type IntegrityTier, type Repairs } from "./engine/repair.js";
import { startReplicator, type Replicator } from "./engine/replicator.js";
import { startScrubber } from "./engine/scrubber.js";
import { verifyCopies, type VerifyEvent, type VerifyOptions, type VerifySources } from "./engine/verify.js";
import { createSharedQuotas } from "./engine/shared-quotas.js";
import type { Stack, StackEvents, StackHooks } from "./stack-contract.js";
import { createMetricsBackend } from "./metrics/metrics-backend.js";
import { createUploadSessions } from "./uploads/upload-sessions.js";
import { Code, StorageError, failedPrecondition } from "./storage-error.js";

/** While the store's shared-cache key is unknown, a lookup tries to load it at most this often. */
const CACHE_KEY_RETRY_MS = 2000;
/** Files no record names are judged orphans only once they are this old (a put publishes its file, then commits its row). */
const ORPHAN_GRACE_MS = 60_000;
const MiB = 1024 * 1024;

export type { Stack, StackEvents, StackHooks, StackStatus } from "./stack-contract.js";

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
  const measured = <T extends Backend>(tier: string, inner: T): T =>
    events.tier || events.tracer ? createMetricsBackend(inner, tier, events.tier, events.tracer) : inner;
  // The cache layer is traced but not counted: its calls include the tier's below it (fs_cache_* counts hits).
  const tracedCache = <T extends Backend>(inner: T): T => (events.tracer ? createMetricsBackend(inner, "cache", undefined, events.tracer) : inner);

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
  let diskCache: DiskCacheBackend | undefined;
  let repairs: Repairs | undefined;
  let verifyGcs: VerifySources["gcs"];
  /** A repair or a change below the caches replaced what serves `key`: the caches above let go of it. */
  const forgetAbove = (key: string) => {
    if (cache && !cacheUrl) void cache.forget(key).catch(() => undefined);
    if (diskCache) void diskCache.forget(key).catch(() => undefined);
  };
  const repaired = (tier: IntegrityTier) => events.onRepaired?.(tier);

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
    const measuredGcs: Backend = measured("gcs", raw);
    let primary: Backend = measuredGcs;
    if (config.diskCacheMaxMb > 0) {
      const opened = (diskCache = await createDiskCacheBackend(measuredGcs, {
        local,
        maxBytes: config.diskCacheMaxMb * MiB,
        minFreeBytes: config.diskCacheMinFreeMb * MiB,
        onWrite: config.diskCacheOnWrite,
        events: {
          onHit: events.onDiskCacheHit,
          onMiss: events.onDiskCacheMiss,
          onEvicted: events.onDiskCacheEviction,
          onCorrupt: () => events.onIntegrityProblem?.("disk_cache", "corrupt"),
          onRepaired: () => repaired("disk_cache"),
        },
      }));
      closers.push(() => opened.store.close());
      primary = opened;
    }
    if (cacheUrl) {
      // Read now only if GCS answered just now: no start-up wait on a dead GCS.
      const key = await tierCacheKey(raw, { tryNow: gcsBreaker.state === "closed", retryMs: CACHE_KEY_RETRY_MS, log: events.log });
      primary = tracedCache(await sharedCache(primary, cacheNamespace(storeIdentity), key));
      closers.push(() => cache!.close());
    }
    outbox = local.outbox;
    const fixes = (repairs = createRepairs({
      local,
      outbox,
      gcs: primary,
      gcsDecoded: codec(measuredGcs),
      breaker: gcsBreaker,
      afterChange: forgetAbove,
      onRepaired: repaired,
    }));
    verifyGcs = { raw: measuredGcs, available: () => gcsBreaker.state === "closed" };
    top = createChainBackend({
      primary: codec(primary),
      fallback: codec(measured("local", local)) as Backend & { outbox: Outbox },
      breaker: gcsBreaker,
      fallbackEnabled: config.enableLocalFallback,
      writer,
      onFallback: events.onFallback,
      cachedCopies: diskCache && codec(diskCache.offline),
      repairLocalCopy: (key) => {
        events.onIntegrityProblem?.("local", "corrupt");
        return fixes.retirePendingCopy(key);
      },
    });
    replicator = startReplicator({
      primary,
      fallback: local,
      breaker: gcsBreaker,
      intervalMs: config.replicationIntervalMs,
      tracer: events.tracer,
      onReplicated: (op, outcome, key) => {
        // The replicator writes below the caches: drop the key there (the shared cache sees its writes).
        forgetAbove(key);
        events.onReplicated?.(op, outcome);
      },
      onError: (err, entry) => events.log?.warn({ err, key: entry.key, op: entry.op }, "replication attempt failed"),
      checkPrimaryCopy: (key, generation) => fixes.gcsCopyIntact(key, generation),
      onRepaired: () => repaired("gcs"),
    });
    const kick = replicator.kick;
    gcsBreaker.onStateChange = (state) => {
      events.onBreakerState?.(state);
      if (state === "closed") kick();
    };
  } else if (cacheUrl) {
    top = codec(tracedCache(await sharedCache(measured("local", local), cacheNamespace(storeIdentity), localCacheKey(local))));
    closers.push(() => cache!.close());
  } else {
    top = codec(measured("local", local));
  }

  // Without CACHE_URL the in-memory cache sits on top (original bytes, this process only).
  if (config.enableCache && !cacheUrl) top = tracedCache((cache = await createCacheBackend(top, cacheOpts)));
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
    lifecycle: config.lifecycleRules,
    // Without GCS the local tier is the whole store: its index counts usage exactly.
    index: config.gcsBucketName ? undefined : local,
    log: events.log,
  });
  const uploads = await createUploadSessions({
    store: local.uploads,
    engine,
    quotas,
    limits: {
      expiryMs: config.uploadExpirySeconds * 1000,
      maxOpen: config.maxOpenUploads,
      maxOpenPerCaller: config.maxOpenUploadsPerCaller,
      maxObjectBytes: config.maxObjectBytes,
    },
    log: events.log,
  });
  const verifySources: VerifySources = { local, diskCache, gcs: verifyGcs, repairs, orphanGraceMs: ORPHAN_GRACE_MS };
  /** Every finding is counted, whoever asked for the check. */
  async function* verify(opts: VerifyOptions): AsyncGenerator<VerifyEvent> {
    for await (const event of verifyCopies(verifySources, opts)) {
      if (event.type === "finding") events.onIntegrityProblem?.(event.finding.tier, event.finding.problem);
      yield event;
    }
  }
  const scrubber = startScrubber({
    verify,
    bytesPerSecond: config.scrubBytesPerSecond,
    intervalMs: config.scrubIntervalSeconds * 1000,
    onBytes: events.onScrubbed,
    log: events.log,
  });

  const sweeper: ExpirySweeper = startExpirySweeper({
    local,
    store,
    uploads,
    gcs: gcs && breaker ? { backend: gcs, breaker, tombstoneRetentionMs: config.tombstoneRetentionSeconds * 1000 } : undefined,
    quotas,
    lifecycle: config.lifecycleRules,
    localIntervalMs: config.expirySweepSeconds * 1000,
    gcsIntervalMs: config.gcsSweepSeconds * 1000,
    onExpired: events.onExpired,
    log: events.log,
  });

  const backlog = () => {
    const pending = outbox?.stats() ?? { count: 0 };
    return {
      count: pending.count,
      oldestAgeSeconds: pending.oldestCreatedAt === undefined ? 0 : (Date.now() - pending.oldestCreatedAt) / 1000,
    };
  };

  return {
    engine,
    store,
    uploads,
    probe: (signal) => store.probe(signal),
    status() {
      const pending = backlog();
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
        diskCache: diskCache?.cacheStats() ?? { entries: 0, bytes: 0, hits: 0, misses: 0, evictions: 0 },
        pending,
      };
    },
    replicate: () => replicator?.drain() ?? Promise.resolve({ replicated: 0, remaining: 0 }),
    async flush(opts) {
      if (!replicator || !breaker) {
        throw failedPrecondition("this daemon has no GCS tier (GCS_BUCKET_NAME is unset): it keeps no replication backlog, there is nothing to flush");
      }
      return flushBacklog({ replicator, breaker, backlog }, opts);
    },
    sweepExpired: (opts) => sweeper.sweep(opts),
    verify,
    scrub: () => scrubber.pass(),
    parts: { local, gcs, breaker, replicator, cache, diskCache, repairs, quotas },
    async close() {
      await scrubber.stop();
      await sweeper.stop();
      // Attached upload streams stop and checkpoint while the local tier is still open.
      await uploads.close();
      await replicator?.stop();
      // The layers close their inner backends (the chain both tiers, a cache its store and tier).
      await store.close();
      closers.length = 0;
      await quotas?.close();
    },
  };
}
