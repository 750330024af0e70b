/**
 * The per-store key that authenticates shared-cache frames (cache-frame.ts).
 * It is kept IN the store, so every daemon of the store shares it and someone
 * who can reach only Redis does not know it:
 * - a GCS store: the object `.filestorage/cache-key` in the bucket (32 random
 *   bytes, base64), created with ifGenerationMatch 0 on the raw tier so
 *   daemons starting together converge on one (the loser reads the winner's);
 * - a local-only store: an identity of the storage folder's index.
 * While the key is unknown (GCS unreachable at start-up) the shared cache is
 * bypassed; the key is loaded again lazily (see createLazyCacheKey).
 */
import { crc32c } from "@node-rs/crc32";
import { randomBytes } from "node:crypto";
import { BufferedSource, type Backend } from "../backends/backend.js";
import { Code, StorageError, dataLoss } from "../storage-error.js";

/** The object holding a GCS store's cache key (the `.filestorage/` prefix is reserved for the daemon). */
export const CACHE_KEY_OBJECT = ".filestorage/cache-key";
/** Name of the local store's identity holding its cache key. */
export const CACHE_KEY_IDENTITY = "cache-hmac-key";

const KEY_BYTES = 32;

/** The store's cache key as the cache sees it: undefined while it is not known (bypass). */
export interface CacheKey {
  current(): Buffer | undefined;
}

/** A key known from the start. */
export function fixedCacheKey(key: Buffer): CacheKey {
  return { current: () => key };
}

/** A local-only store's key: an identity of its storage folder (created on first use). */
export function localCacheKey(folder: { identity(name: string, create: () => string): string }): CacheKey {
  return fixedCacheKey(parseCacheKey(folder.identity(CACHE_KEY_IDENTITY, newCacheKeyText)));
}

/**
 * A GCS store's key, read (or created) on `tier`, the raw GCS backend. With
 * `tryNow` (GCS answered at start-up) one attempt is awaited; otherwise, or
 * when it fails, the key loads lazily from lookups every `retryMs` at most.
 * Logs one warning while the cache is bypassed and one line once it is used.
 */
export async function tierCacheKey(
  tier: Backend,
  opts: { tryNow: boolean; retryMs: number; log?: { warn(obj: object, msg: string): void; info(obj: object, msg: string): void } },
): Promise<CacheKey> {
  let bypassLogged = false;
  const bypassed = (err?: unknown) => {
    if (!bypassLogged) opts.log?.warn({ err }, "shared cache: the store's cache key cannot be read from GCS yet; the shared cache is bypassed until it can");
    bypassLogged = true;
  };
  const key = createLazyCacheKey(() => loadOrCreateCacheKey(tier), {
    retryMs: opts.retryMs,
    onError: bypassed,
    onLoaded: () => {
      if (bypassLogged) opts.log?.info({}, "shared cache: the store's cache key is loaded; the shared cache is in use");
    },
  });
  if (opts.tryNow) await key.loadNow();
  else bypassed();
  return key;
}

/** A fresh key in its stored form (base64 of 32 random bytes). */
export function newCacheKeyText(): string {
  return randomBytes(KEY_BYTES).toString("base64");
}

/** The key of a stored base64 text; DATA_LOSS when it is not 32 bytes of base64. */
export function parseCacheKey(text: string): Buffer {
  const trimmed = text.trim();
  const key = Buffer.from(trimmed, "base64");
  if (key.length !== KEY_BYTES || key.toString("base64") !== trimmed) {
    throw dataLoss(`the store's shared-cache key (${CACHE_KEY_OBJECT}) is not ${KEY_BYTES} bytes of base64`);
  }
  return key;
}

/**
 * Reads the store's cache key from `tier` (a raw backend: the object's stored
 * bytes are the key text), creating it when absent. Concurrent callers on one
 * store all end with the same key. Throws what the tier throws (UNAVAILABLE
 * while it is unreachable).
 */
export async function loadOrCreateCacheKey(tier: Backend, signal?: AbortSignal): Promise<Buffer> {
  for (let attempt = 0; attempt < 3; attempt++) {
    const got = await tier.get(CACHE_KEY_OBJECT, { signal });
    if (got) return parseCacheKey(await readSmall(got.body));
    const text = Buffer.from(newCacheKeyText(), "utf8");
    try {
      await tier.put(
        CACHE_KEY_OBJECT,
        new BufferedSource([text]),
        // Size and CRC32C known up front: the tier needs no metadata patch after the upload.
        { kind: "BYTES", contentType: "text/plain", metadata: {}, size: text.length, crc32c: crc32c(text) },
        { ifGenerationMatch: 0n, signal },
      );
      return parseCacheKey(text.toString("utf8"));
    } catch (err) {
      // Another daemon created it first: read theirs.
      if (!StorageError.is(err, Code.FailedPrecondition, Code.Aborted)) throw err;
    }
  }
  throw new StorageError(Code.Aborted, `the store's shared-cache key (${CACHE_KEY_OBJECT}) kept changing while it was created`);
}

/**
 * A key loaded by `load`, once. current() is undefined until a load succeeded;
 * a lookup while it is unknown starts a new load in the background when the
 * last attempt is at least `retryMs` old (the lookup itself does not wait).
 * `loadNow()` runs an attempt and waits for it (start-up).
 */
export function createLazyCacheKey(
  load: () => Promise<Buffer>,
  opts: { retryMs: number; onLoaded?: () => void; onError?: (err: unknown) => void },
): CacheKey & { loadNow(): Promise<boolean> } {
  let key: Buffer | undefined;
  let loading: Promise<boolean> | undefined;
  let lastAttempt = -Infinity;

  function attempt(): Promise<boolean> {
    lastAttempt = Date.now();
    loading ??= load().then(
      (loaded) => {
        key = loaded;
        opts.onLoaded?.();
        return true;
      },
      (err: unknown) => {
        opts.onError?.(err);
        return false;
      },
    ).finally(() => {
      loading = undefined;
      lastAttempt = Date.now();
    });
    return loading;
  }

  return {
    current() {
      if (key === undefined && loading === undefined && Date.now() - lastAttempt >= opts.retryMs) void attempt();
      return key;
    },
    loadNow: () => (key !== undefined ? Promise.resolve(true) : attempt()),
  };
}

/** A short body read whole (the key object is a few dozen bytes; more is not a key). */
async function readSmall(body: AsyncIterable<Uint8Array> & { destroy?(): void }): Promise<string> {
  const chunks: Buffer[] = [];
  let length = 0;
  try {
    for await (const chunk of body) {
      chunks.push(Buffer.from(chunk));
      length += chunk.length;
      if (length > 1024) break;
    }
  } finally {
    body.destroy?.();
  }
  return Buffer.concat(chunks).toString("utf8");
}
