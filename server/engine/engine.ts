/**
 * The engine: what the RPC handlers call. It assembles the stack of layers
 * from the configuration and adds what belongs above every backend: object
 * size limits, quotas, expiry, page tokens and status.
 *
 *   memcache? -> chain(codec -> GCS, codec -> local + outbox)   with GCS_BUCKET_NAME
 *   memcache? -> codec -> local                                  without (embedded)
 * or, with a shared cache (CACHE_URL):
 *   chain(codec -> rediscache -> GCS, codec -> local + outbox)
 *   codec -> rediscache -> local
 *
 * The codec sits under the chain, once per tier, so a unary write can be
 * replayed on the fallback and the replicator copies stored bytes as they are.
 * The in-memory cache is on top: original bytes, private to the process. The
 * Redis cache is under the codec: it holds stored bytes (encrypted when
 * encryption is on), namespaced by the store and authenticated with the
 * store's key; the fallback tier holds only pending copies, never cached, and
 * the replicator writes through the Redis-cached primary so its copies and
 * deletes invalidate the shared entries.
 */
import { randomUUID } from "node:crypto";
import type { Readable } from "node:stream";
import { BufferedSource, compareKeys, type Backend, type GetOptions, type ObjectRecord, type Outbox, type PutMeta, type PutOptions, type DeleteOptions } from "../backends/backend.js";
import { createFsBackend, type FsFaults } from "../backends/fs-backend.js";
import type { GcsBackend } from "../backends/gcs/gcs-backend.js";
import { createCacheBackend, type CacheBackend, type CacheOptions } from "../cache/cache-backend.js";
import { localCacheKey, tierCacheKey, type CacheKey } from "../cache/cache-key.js";
import { cacheNamespace } from "../cache/cache-namespace.js";
import { createCodecBackend, createKeyring } from "../codec/codec-backend.js";
import type { Config } from "../config/load-config.js";
import { checkDelimiter, checkKey, checkPrefix } from "../keys.js";
import { Code, StorageError, generationMismatch, invalidArgument } from "../storage-error.js";
import { createChainBackend } from "./chain-backend.js";
import { CircuitBreaker } from "./circuit-breaker.js";
import { createQuotas, type Quotas } from "./quota.js";
import { createSharedQuotas } from "./shared-quotas.js";
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
  /** A shared-cache frame failed authentication (a miss). */
  onCacheRejectedFrame?: () => void;
  log?: { warn(obj: object, msg: string): void; info(obj: object, msg: string): void };
}

export interface ListRequest {
  prefix: string;
  limit: number;
  pageToken: string;
  delimiter: string;
  signal?: AbortSignal;
  /**
   * Bytes one entry adds to the response on the wire (its key or prefix, and
   * its ObjectInfo when the caller asked for it). The page stops early, with a
   * page token, before the entries pass MAX_LIST_RESPONSE_BYTES; it always
   * holds at least one entry. Default: the bytes of the name plus framing.
   */
  entryBytes?: (entry: ListEntry) => number;
}

/** One entry of a listing: an object, or a prefix rolled up at the delimiter. */
export type ListEntry = { record: ObjectRecord; prefix?: undefined } | { prefix: string; record?: undefined };

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
  /** Deletes expired objects (and, with GCS, sweeps the bucket: old tombstones, upload leftovers); returns how many expired ones. */
  sweepExpired(opts?: { gcs?: boolean }): Promise<number>;
  close(): Promise<void>;
}

export const DEFAULT_PAGE_SIZE = 1000;
/** An upload part in the bucket older than this was left by a crash (uploads of a day are not expected). */
const UPLOAD_PART_MAX_AGE_MS = 24 * 3600 * 1000;
export const MAX_PAGE_SIZE = 10000;
/** While the store's shared-cache key is unknown, a lookup tries to load it at most this often. */
const CACHE_KEY_RETRY_MS = 2000;
/** Keys in one DeleteMany (as S3's DeleteObjects; a prefix has no such limit). */
export const MAX_DELETE_MANY_KEYS = 1000;
/** Part of MAX_LIST_RESPONSE_BYTES kept for the page token and the message framing. */
const LIST_RESPONSE_RESERVE_BYTES = 8 * 1024;

export async function createEngine(config: Config, events: EngineEvents = {}, hooks: { fsFaults?: FsFaults } = {}): Promise<Engine> {
  const keyring = config.enableEncryption && config.encryptionKey
    ? createKeyring({ primary: config.encryptionKey, previous: config.encryptionPreviousKeys })
    : undefined;
  const codec = (inner: Backend) =>
    createCodecBackend(inner, {
      compression: { enabled: config.enableCompression, thresholdBytes: config.compressionThresholdBytes },
      encryption: keyring,
      allowUnencryptedReads: config.allowUnencryptedReads,
      maxJsonDepth: config.maxJsonDepth,
      onCompressionSaved: events.onCompressionSaved,
    });

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

  const localRaw = await createFsBackend({ root: config.localStoragePath, minFreeBytes: config.localMinFreeBytes, faults: hooks.fsFaults });
  // The same id the local tier stamps on its own writes (write-origin.ts).
  const writer = localRaw.identity("writer-id", () => randomUUID());
  let top: Backend;
  let breaker: CircuitBreaker | undefined;
  let replicator: Replicator | undefined;
  let outbox: Outbox | undefined;
  let gcsRaw: GcsBackend | undefined;

  if (config.gcsBucketName) {
    // Each failure counted already spent MAX_RETRIES retries; only tier-wide
    // failures count (UNAVAILABLE, DEADLINE_EXCEEDED), so one caller's bad
    // request cannot open it, and it takes several in a row.
    breaker = new CircuitBreaker({ failureThreshold: config.gcsBreakerFailures, resetTimeoutMs: config.gcsBreakerResetSeconds * 1000 });
    try {
      // Loaded only with a bucket: the embedded mode never pays for the GCS SDK.
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const { createGcsBackend } = require("../backends/gcs/gcs-backend.js") as typeof import("../backends/gcs/gcs-backend.js");
      gcsRaw = await createGcsBackend({
        bucket: config.gcsBucketName,
        projectId: config.gcsProjectId,
        keyFilename: config.googleApplicationCredentials,
        location: config.gcsLocation,
        apiEndpoint: config.gcsApiEndpoint,
        maxRetries: config.maxRetries,
        timeoutMs: config.timeoutSeconds * 1000,
        writer,
      });
    } catch (err) {
      await localRaw.close();
      throw err;
    }
    const gcs = gcsRaw;
    try {
      await breaker.run(() => gcs.probe());
    } catch (err) {
      // The start-up check is tier-wide: GCS is down for everyone until a trial call succeeds.
      breaker.trip();
      if (!config.enableLocalFallback) {
        await localRaw.close();
        throw new StorageError(Code.Unavailable, "GCS is unreachable at start-up and ENABLE_LOCAL_FALLBACK=false: refusing to start", { cause: err });
      }
      events.log?.warn({ err }, "GCS is unreachable at start-up: serving from the local tier until it answers");
    }
    let primaryRaw: Backend = gcsRaw;
    if (cacheUrl) {
      try {
        // Read now only if GCS answered just now: no start-up wait on a dead GCS.
        const key = await tierCacheKey(gcsRaw, { tryNow: breaker.state === "closed", retryMs: CACHE_KEY_RETRY_MS, log: events.log });
        primaryRaw = await sharedCache(gcsRaw, cacheNamespace({ bucket: config.gcsBucketName }), key);
      } catch (err) {
        await gcsRaw.close();
        await localRaw.close();
        throw err;
      }
    }
    const fallback = codec(localRaw) as Backend & { outbox: Outbox };
    outbox = localRaw.outbox;
    top = createChainBackend({
      primary: codec(primaryRaw),
      fallback,
      breaker,
      fallbackEnabled: config.enableLocalFallback,
      writer,
      onFallback: events.onFallback,
    });
    replicator = startReplicator({
      primary: primaryRaw,
      fallback: localRaw,
      breaker,
      intervalMs: config.replicationIntervalMs,
      onReplicated: (op, outcome, key) => {
        // The replicator writes below the in-memory cache: drop the key there (the shared cache sees its writes).
        if (cache && !cacheUrl) void cache.forget(key).catch(() => undefined);
        events.onReplicated?.(op, outcome);
      },
      onError: (err, entry) => events.log?.warn({ err, key: entry.key, op: entry.op }, "replication attempt failed"),
    });
    const kick = replicator.kick;
    breaker.onStateChange = (state) => {
      events.onBreakerState?.(state);
      if (state === "closed") kick();
    };
  } else if (cacheUrl) {
    try {
      const namespace = cacheNamespace({ storeId: localRaw.identity("store-id", () => randomUUID()) });
      top = codec(await sharedCache(localRaw, namespace, localCacheKey(localRaw)));
    } catch (err) {
      await localRaw.close();
      throw err;
    }
  } else {
    top = codec(localRaw);
  }

  // Without CACHE_URL the in-memory cache sits on top (original bytes, this process only).
  if (config.enableCache && !cacheUrl) top = cache = await createCacheBackend(top, cacheOpts);
  const store: Backend = top;

  // With a shared Redis, quotas are counted there, across every daemon of the store.
  const quotaNamespace = config.cacheUrl
    ? cacheNamespace(config.gcsBucketName ? { bucket: config.gcsBucketName } : { storeId: localRaw.identity("store-id", () => randomUUID()) })
    : undefined;
  const quotas = await loadQuotas(store, config.quotas, quotaNamespace === undefined ? undefined : { url: config.cacheUrl!, namespace: quotaNamespace });
  const live = (r: ObjectRecord | undefined, now = Date.now()) =>
    r !== undefined && (r.expiresAt === undefined || r.expiresAt > now) ? r : undefined;

  // Writes and deletes of one quota-covered key take turns (quotas.exclusive),
  // so each knows exactly the size it replaces: concurrent overwrites cannot
  // all subtract the same old object and store past the quota.
  const covered = (key: string) => quotas?.covers(key) ?? false;

  async function put(key: string, source: AsyncIterable<Uint8Array>, meta: PutMeta, opts: PutOptions & { declaredSize?: number } = {}) {
    checkKey(key);
    const { declaredSize, ...putOpts } = opts;
    if (declaredSize !== undefined && declaredSize > config.maxObjectBytes) throw tooLarge(declaredSize);
    if (!covered(key)) return putOnce(key, source, meta, putOpts, declaredSize);
    return quotas!.exclusive(key, () => putOnce(key, source, meta, putOpts, declaredSize));
  }

  async function putOnce(key: string, source: AsyncIterable<Uint8Array>, meta: PutMeta, putOpts: PutOptions, declaredSize: number | undefined) {
    const isCovered = covered(key);
    // The object this write replaces frees its bytes (an expired one too: it is still counted until swept).
    // A create-only write (if_generation_match=0) may replace an expired object
    // the sweeper has not removed yet: to callers it is absent already.
    let current: ObjectRecord | undefined;
    if (isCovered || putOpts.ifGenerationMatch === 0n) {
      try {
        current = await store.head(key, { signal: putOpts.signal });
      } catch (err) {
        // During an outage a key only GCS holds cannot be looked at; the write may still land
        // on the local tier. Its old size is then unknown: count none freed (never fewer bytes than stored).
        if (!StorageError.is(err, Code.Unavailable) || putOpts.ifGenerationMatch !== undefined) throw err;
      }
    }
    if (putOpts.ifGenerationMatch === 0n && current && !live(current)) putOpts.ifGenerationMatch = current.generation;
    const oldSize = isCovered ? current?.size ?? 0 : 0;
    const reservation = isCovered ? await quotas!.reserve(key, declaredSize ?? 0, oldSize) : undefined;
    let record: ObjectRecord;
    try {
      const limited = await limitSource(source, config.maxObjectBytes, declaredSize ?? 0, reservation?.grow);
      record = await store.put(key, limited, meta, putOpts);
    } catch (err) {
      await reservation?.release();
      throw err;
    }
    // Committed: a failure to account it must not turn an acknowledged write into an error.
    await reservation?.commit(record.size, oldSize).catch((err) => events.log?.warn({ err, key }, "quota accounting of a committed write failed"));
    return record;
  }

  function tooLarge(size: number) {
    return new StorageError(
      Code.ResourceExhausted,
      `object of ${size} bytes exceeds the maximum object size of ${config.maxObjectBytes} bytes (MAX_OBJECT_BYTES)`,
    );
  }

  /** Counts bytes as they pass: over MAX_OBJECT_BYTES, or past the quota reservation, the write fails. */
  async function limitSource(
    source: AsyncIterable<Uint8Array>,
    max: number,
    reserved: number,
    grow?: (n: number) => Promise<void>,
  ): Promise<AsyncIterable<Uint8Array>> {
    if (source instanceof BufferedSource) {
      // A unary body: check it whole and keep it replayable for the fallback.
      const total = source.byteLength;
      if (total > max) throw tooLarge(total);
      if (total > reserved) await grow?.(total - reserved);
      return source;
    }
    return (async function* () {
      let seen = 0;
      for await (const chunk of source) {
        seen += chunk.byteLength;
        if (seen > max) throw tooLarge(seen);
        if (seen > reserved) {
          await grow?.(seen - reserved);
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
    return covered(key) ? quotas!.exclusive(key, () => delOnce(key, opts)) : delOnce(key, opts);
  }

  async function delOnce(key: string, opts: DeleteOptions) {
    let before: ObjectRecord | undefined;
    try {
      before = await store.head(key, opts);
    } catch (err) {
      // An outage: a key only GCS holds cannot be looked at, but its delete can
      // still be recorded (a tombstone the replicator replays). What it frees is unknown.
      if (!StorageError.is(err, Code.Unavailable) || opts.ifGenerationMatch !== undefined) throw err;
      return store.delete(key, opts);
    }
    if (before && !live(before)) {
      // Expired: already absent to callers. Remove it now, but report no delete.
      if (opts.ifGenerationMatch !== undefined) throw generationMismatch(key, opts.ifGenerationMatch, undefined);
      if (await store.delete(key, { ...opts, ifGenerationMatch: before.generation }).catch(() => false)) await quotas?.released(key, before.size);
      return false;
    }
    const deleted = await store.delete(key, opts);
    if (deleted && before) await quotas?.released(key, before.size);
    return deleted;
  }

  async function deleteMany(keys: string[], prefix: string, signal?: AbortSignal) {
    if (keys.length > MAX_DELETE_MANY_KEYS) {
      throw invalidArgument(`DeleteMany takes at most ${MAX_DELETE_MANY_KEYS} keys; got ${keys.length} (use several calls, or a prefix)`);
    }
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
    checkDelimiter(req.delimiter);
    if (req.limit < 0 || req.limit > MAX_PAGE_SIZE) {
      throw invalidArgument(`limit must be from 0 (default ${DEFAULT_PAGE_SIZE}) to ${MAX_PAGE_SIZE}; got ${req.limit}`);
    }
    const want = req.limit || DEFAULT_PAGE_SIZE;
    const budget = config.maxListResponseBytes - LIST_RESPONSE_RESERVE_BYTES;
    const entryBytes = req.entryBytes ?? ((e: ListEntry) => Buffer.byteLength(e.record?.key ?? e.prefix!) + 3);
    const objects: ObjectRecord[] = [];
    const prefixes: string[] = [];
    const now = Date.now();
    let taken = 0;
    let used = 0;
    let after = decodePageToken(req);
    // Backend pages of at most DEFAULT_PAGE_SIZE keep the records held at once
    // small whatever the limit; the byte budget may end the page early.
    for (;;) {
      const before = after;
      const page = await store.list({
        prefix: req.prefix,
        delimiter: req.delimiter || undefined,
        limit: Math.min(want - taken, DEFAULT_PAGE_SIZE),
        startAfter: after,
        signal: req.signal,
      });
      const entries: ListEntry[] = [...page.objects.map((record) => ({ record })), ...page.prefixes.map((prefix) => ({ prefix }))];
      entries.sort((a, b) => compareKeys(a.record?.key ?? a.prefix!, b.record?.key ?? b.prefix!));
      for (const entry of entries) {
        // An expired object is absent to callers: not returned, but passed.
        const shown = entry.prefix !== undefined || live(entry.record, now) !== undefined;
        const bytes = shown ? entryBytes(entry) : 0;
        if (taken > 0 && used + bytes > budget) {
          return { objects, prefixes, nextPageToken: encodePageToken(req, after!) };
        }
        used += bytes;
        taken++;
        if (entry.prefix !== undefined) prefixes.push(entry.prefix);
        else if (shown) objects.push(entry.record);
        after = resumeAfter(entry);
      }
      if (page.next === undefined) return { objects, prefixes, nextPageToken: "" };
      after = page.prefixes.includes(page.next) ? resumeAfter({ prefix: page.next }) : page.next;
      // A full page, or a backend page that made no progress: the caller continues.
      if (taken >= want || after === before) return { objects, prefixes, nextPageToken: encodePageToken(req, after) };
    }
  }

  /**
   * Expired objects of the local tier, found by its index (never a listing of
   * the store): each is deleted through the stack, guarded by its generation
   * so a rewrite wins. With GCS in chain mode these are pending copies, whose
   * deletes are then replayed like any other.
   */
  async function sweepLocal(now: number): Promise<number> {
    let count = 0;
    const seen = new Set<string>();
    for (;;) {
      const keys = localRaw.expired(now, DEFAULT_PAGE_SIZE).filter((k) => !seen.has(k));
      if (keys.length === 0) break;
      for (const key of keys) {
        seen.add(key);
        const record = await localRaw.head(key);
        if (record === undefined || record.expiresAt === undefined || record.expiresAt > now) continue;
        try {
          if (await store.delete(key, { ifGenerationMatch: record.generation })) count++;
          await quotas?.released(key, record.size);
        } catch (err) {
          // Rewritten meanwhile (precondition) or a tier is down: next sweep.
          if (!StorageError.is(err, Code.FailedPrecondition, Code.Unavailable, Code.Aborted)) throw err;
        }
      }
    }
    return count;
  }

  /** The bucket's own sweep (a listing, so rarely): expired objects, old tombstones, upload parts left by a crash. */
  async function sweepGcs(now: number): Promise<number> {
    if (gcsRaw === undefined || breaker === undefined || breaker.state === "open") return 0;
    const gcs = gcsRaw;
    const removed = await breaker.run(() =>
      gcs.sweep({
        now,
        tombstoneBefore: now - config.tombstoneRetentionSeconds * 1000,
        partsBefore: now - UPLOAD_PART_MAX_AGE_MS,
        onExpired: (r) => void quotas?.released(r.key, r.size),
      }),
    );
    if (removed.tombstones + removed.parts > 0) events.log?.info({ ...removed }, "GCS sweep removed leftovers");
    return removed.expired;
  }

  // A sweep never overlaps the previous one: the next tick is skipped instead.
  let sweeping: Promise<number> | undefined;
  function sweepExpired(opts: { gcs?: boolean } = { gcs: true }): Promise<number> {
    sweeping ??= (async () => {
      const now = Date.now();
      let count = await sweepLocal(now);
      if (opts.gcs) count += await sweepGcs(now);
      if (count > 0) events.onExpired?.(count);
      return count;
    })().finally(() => {
      sweeping = undefined;
    });
    return sweeping;
  }

  const sweepTick = (gcs: boolean) => () => {
    if (sweeping) return;
    sweepExpired({ gcs }).catch((err) => events.log?.warn({ err }, "expiry sweep failed"));
  };
  const sweeper = setInterval(sweepTick(false), config.expirySweepSeconds * 1000);
  sweeper.unref();
  const gcsSweeper = gcsRaw ? setInterval(sweepTick(true), config.gcsSweepSeconds * 1000) : undefined;
  gcsSweeper?.unref();

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
    async close() {
      clearInterval(sweeper);
      clearInterval(gcsSweeper);
      await sweeping?.catch(() => undefined);
      await replicator?.stop();
      await store.close();
      await quotas?.close();
    },
  };
}

async function loadQuotas(store: Backend, limits: Record<string, number>, shared?: { url: string; namespace: string }): Promise<Quotas | undefined> {
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
  return shared ? createSharedQuotas({ ...shared, limits, initialUsage: usage }) : createQuotas(limits, usage);
}

// Page tokens are opaque to callers: the key to continue after, bound to the
// listing they came from so a token cannot be replayed against another prefix.
interface PageToken {
  v: 1;
  after: string;
  prefix: string;
  delimiter: string;
}

/** Where a listing continues after `entry`: past a rolled-up prefix, after
 * everything under it (U+10FFFF sorts after every other character in UTF-8
 * byte order); past an object, after its key. */
function resumeAfter(entry: ListEntry): string {
  return entry.prefix !== undefined ? `${entry.prefix}\u{10FFFF}` : entry.record.key;
}

function encodePageToken(req: ListRequest, after: string): string {
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
