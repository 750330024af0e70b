/**
 * The Google Cloud Storage tier (@google-cloud/storage 7.x for the bucket,
 * listings and the sweep; gcs-http.ts for the requests every call makes).
 *
 * - Our flags live in custom metadata (object-metadata.ts), never in
 *   contentEncoding.
 * - One request per call where correctness allows: a read takes its record
 *   from the media answer's headers (gcs-read.ts); a write without a
 *   precondition sends no look-up before it, and a write with one hands it to
 *   GCS (commit-version.ts: what a retry after an ambiguous failure looks at
 *   first so it never clobbers a newer write).
 * - Every version carries the origin of its write (x-fs-written-at, x-fs-writer)
 *   and a delete leaves a tombstone: a zero-byte object with x-fs-deleted=1
 *   and the delete's origin, invisible to reads and listings. Several daemons
 *   replaying writes made during an outage compare origins, so an older write
 *   can neither overwrite a newer one nor resurrect a key deleted later.
 *   A delete looks first (it says whether something was deleted, and a newer
 *   tombstone is left alone), then writes its tombstone guarded by what it saw.
 * - Uploads carry our CRC32C for GCS to verify (gcs-upload.ts: one request when
 *   held whole, else parts uploaded in parallel and composed into the key with
 *   the final metadata); large reads go in parallel parts (parallel-read.ts).
 * - The SDK's own retries are off; ours (retry.ts) are counted and bounded.
 * - Errors are translated where they arise (gcs-errors.ts): no raw error with
 *   an HTTP `code` leaves this folder, and messages never carry the bucket name.
 */
import { Storage, type FileMetadata } from "@google-cloud/storage";
import type { Backend, DeleteOptions, GetOptions, HeadOptions, ListOptions, ObjectRecord, PutMeta, PutOptions } from "../backend.js";
import { compareOrigins, newOrigin } from "../write-origin.js";
import { Code, StorageError, generationMismatch } from "../../storage-error.js";
import { throwIfAborted } from "../../signals.js";
import { commitVersion } from "./commit-version.js";
import type { GcsContext } from "./gcs-context.js";
import { call, httpStatus, isRetryable } from "./gcs-errors.js";
import { createGcsHttp, crc32cBase64 } from "./gcs-http.js";
import { listPage, sweepBucket, type SweepLimits } from "./gcs-listing.js";
import { readObject, type ParallelReadSettings } from "./gcs-read.js";
import { uploadStreamed, uploadWhole } from "./gcs-upload.js";
import { TOMBSTONE_TYPE, customMetadata, toRecord, tombstoneMetadata } from "./object-metadata.js";
import { ReplaySource } from "./replay-source.js";
import { withRetry } from "./retry.js";
import { gcsStorageOptions, type SdkOptions } from "./sdk-options.js";
import type { PartSettings } from "./upload-parts.js";

export { gcsStorageOptions } from "./sdk-options.js";
export type { SweepLimits } from "./gcs-listing.js";

export interface GcsBackendOptions extends SdkOptions {
  bucket: string;
  /** Location of a bucket we create (default US). */
  location?: string;
  /** Retries after the first attempt of a retry-safe call. */
  maxRetries: number;
  /** Sources up to this size go up in one multipart request; larger ones in parts (default 8 MiB); parts of at least this size go up resumably. */
  resumableThresholdBytes?: number;
  /** Large reads in parallel parts (default: from 64 MiB, 8 parts of 16 MiB in flight). */
  parallelRead?: Partial<ParallelReadSettings>;
  /** Streamed uploads: part size and parts uploading at once (default 16 MiB x 4; 1 = one resumable session in requests of partBytes). */
  parallelUpload?: { partBytes?: number; parts?: number };
  /** An injected SDK client (tests); build it with gcsStorageOptions() so SDK retries stay off. */
  storage?: Storage;
  /** This daemon's writer id: the origin of writes and deletes that come without one. */
  writer?: string;
}

/** The GCS tier: a Backend plus the sweep of what GCS keeps that nobody can read. */
export type GcsBackend = Backend & {
  /**
   * Replaces objects expired before `now` by tombstones of their own write
   * (an older write replayed later cannot bring them back), removes
   * tombstones older than `tombstoneBefore` and upload parts older than
   * `partsBefore` (left by a crash), each guarded by the generation seen.
   */
  sweep(limits: SweepLimits): Promise<{ tombstones: number; expired: number; parts: number }>;
};

const MiB = 1024 * 1024;
const PROBE_TIMEOUT_MS = 5000;

/**
 * Opens the bucket (creating it when missing and a project id is given) and
 * returns the GCS tier. When GCS cannot be reached at start-up the factory
 * still succeeds: the bucket check is repeated by probe() and the first write.
 */
export async function createGcsBackend(opts: GcsBackendOptions): Promise<GcsBackend> {
  const storage = opts.storage ?? new Storage(gcsStorageOptions(opts));
  const bucket = storage.bucket(opts.bucket);
  const writer = opts.writer ?? "";
  const threshold = opts.resumableThresholdBytes ?? 8 * MiB;
  const parallelRead: ParallelReadSettings = { thresholdBytes: 64 * MiB, parts: 8, partBytes: 16 * MiB, ...opts.parallelRead };
  const parts: PartSettings = { partBytes: 16 * MiB, parts: 4, ...opts.parallelUpload, resumableThresholdBytes: threshold };
  const http = createGcsHttp(storage, opts.bucket, opts.timeoutMs);
  const ctx: GcsContext = {
    bucket,
    http,
    maxRetries: opts.maxRetries,
    timeoutMs: opts.timeoutMs,
    retry: (fn, signal) => withRetry(fn, { maxRetries: opts.maxRetries, timeoutMs: opts.timeoutMs, signal, retryable: isRetryable }),
  };

  let bucketReady: Promise<void> | undefined;
  /** Checks (once, until it succeeds) that the bucket exists, creating it when allowed. */
  const ensureBucket = (signal?: AbortSignal): Promise<void> => {
    bucketReady ??= ctx
      .retry(async () => {
        const [exists] = await call("bucket check", () => bucket.exists());
        if (exists) return;
        if (!opts.projectId) {
          throw new StorageError(Code.FailedPrecondition, "the GCS bucket does not exist and no project id is configured to create it");
        }
        try {
          await call("bucket create", () => bucket.create({ location: opts.location ?? "US" }));
        } catch (err) {
          // Another daemon created it meanwhile.
          if (!(err instanceof StorageError && err.cause && httpStatus(err.cause) === 409)) throw err;
        }
      }, signal)
      .catch((err) => {
        bucketReady = undefined;
        throw err;
      });
    return bucketReady;
  };
  try {
    await ensureBucket();
  } catch (err) {
    if (!StorageError.is(err, Code.Unavailable, Code.DeadlineExceeded)) throw err;
  }

  /** Raw object metadata (expired objects and tombstones included), or undefined. */
  const stat = (key: string, signal?: AbortSignal): Promise<FileMetadata | undefined> => ctx.retry((attempt) => http.stat(key, attempt), signal);

  /** The record (a tombstone only when asked for), or undefined. */
  async function head(key: string, headOpts?: HeadOptions): Promise<ObjectRecord | undefined> {
    const md = await stat(key, headOpts?.signal);
    const record = md && toRecord(key, md);
    return record?.deleted && !headOpts?.tombstones ? undefined : record;
  }

  /** What a write of `key` replaces: the raw record (a tombstone too) and the live one, checked against `expected`. */
  async function observe(key: string, expected: bigint | undefined, signal?: AbortSignal) {
    const md = await stat(key, signal);
    const raw = md && toRecord(key, md);
    const live = raw?.deleted ? undefined : raw;
    // 0 = absent (a tombstone is absence); otherwise the generation of what is there, a tombstone's too.
    if (expected !== undefined && (expected === 0n ? live !== undefined : raw?.generation !== expected)) {
      throw generationMismatch(key, expected, live?.generation);
    }
    return { raw, live, guard: raw?.generation ?? 0n };
  }

  async function put(key: string, source: AsyncIterable<Uint8Array>, meta: PutMeta, putOpts: PutOptions = {}): Promise<ObjectRecord> {
    const { signal, ifGenerationMatch: expected, verify } = putOpts;
    throwIfAborted(signal);
    await ensureBucket(signal);
    const origin = meta.origin ?? newOrigin(writer);
    // Up to the threshold is read ahead (and kept for a replay).
    const replay = new ReplaySource(source, threshold);
    const whole = await replay.fill(signal);
    // A streamed upload with a precondition checks it before the rest of the
    // stream moves (GCS would only say so at the end); a whole one lets GCS check it.
    // An expired object or a tombstone is invisible, but GCS still holds it: guard on it.
    const guard = !whole && expected !== undefined ? (await observe(key, expected, signal)).guard : undefined;
    // The codec fills meta.encoding once data flows, size/crc32c at the end.
    const target = {
      key,
      contentType: meta.contentType,
      metadata: () => customMetadata(meta, origin),
      storedAsIs: () => meta.encoding?.compression === undefined && meta.encoding?.encryption === undefined,
      origin,
      expected,
      guard,
      look: (s?: AbortSignal) => stat(key, s),
    };
    const uploaded = whole ? await uploadWhole(ctx, replay, target, signal, verify) : await uploadStreamed(ctx, replay, target, parts, signal, verify);
    return toRecord(key, uploaded);
  }

  const get = (key: string, getOpts: GetOptions = {}) => {
    throwIfAborted(getOpts.signal);
    return readObject(ctx, key, getOpts, parallelRead, stat);
  };

  /**
   * Deletes by writing a tombstone over the current version (or over nothing:
   * a delete of an absent key still leaves one, since another daemon may hold
   * an older write of it waiting to be replayed). A tombstone newer than this
   * delete is left alone. True when a live object was removed.
   */
  async function del(key: string, delOpts: DeleteOptions = {}): Promise<boolean> {
    const { signal, ifGenerationMatch: expected } = delOpts;
    throwIfAborted(signal);
    await ensureBucket(signal);
    const origin = delOpts.origin ?? newOrigin(writer);
    const { raw, live, guard } = await observe(key, expected, signal);
    if (raw?.deleted && compareOrigins(raw.origin, origin) >= 0) return false;
    const resource = { contentType: TOMBSTONE_TYPE, metadata: tombstoneMetadata(origin), crc32c: crc32cBase64(0) };
    await commitVersion(
      ctx,
      {
        key,
        origin,
        expected,
        guard,
        what: "the delete",
        attempt: (g, s) => http.uploadMultipart(key, resource, [], { ifGenerationMatch: g }, s),
        look: (s) => stat(key, s),
      },
      signal,
    );
    return live !== undefined;
  }

  async function probe(signal?: AbortSignal): Promise<void> {
    const probeSignal = signal ? AbortSignal.any([signal, AbortSignal.timeout(PROBE_TIMEOUT_MS)]) : AbortSignal.timeout(PROBE_TIMEOUT_MS);
    try {
      await withRetry(
        async () => {
          await ensureBucket(probeSignal);
          await call("probe", () => bucket.getMetadata());
        },
        { maxRetries: 0, timeoutMs: Math.min(opts.timeoutMs, PROBE_TIMEOUT_MS), signal: probeSignal },
      );
    } catch (err) {
      if (StorageError.is(err, Code.Unavailable)) throw err;
      throw new StorageError(Code.Unavailable, "GCS is not reachable", { cause: err });
    }
  }

  return {
    name: "gcs",
    put,
    get,
    head,
    delete: del,
    list: (listOpts: ListOptions) => listPage(ctx, listOpts),
    probe,
    sweep: (limits) => sweepBucket(ctx, limits, del),
    // The SDK keeps no resources that need closing (its sockets are pooled and unref'd); ours are closed.
    close: async () => http.close(),
  };
}
