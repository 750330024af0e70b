/**
 * The Google Cloud Storage tier (@google-cloud/storage 7.x).
 *
 * - Our flags live in custom metadata (object-metadata.ts), never in
 *   contentEncoding.
 * - Every write carries a generation precondition (the caller's, or the one
 *   we observed just before), so a retried or racing write never clobbers a
 *   newer one; with the SDK 7.x a precondition-less save() also turns the
 *   client's autoRetry off for everybody.
 * - Every version carries the origin of its write (x-fs-written-at, x-fs-writer)
 *   and a delete leaves a tombstone: a zero-byte object with x-fs-deleted=1
 *   and the delete's origin, invisible to reads and listings. Several daemons
 *   replaying writes made during an outage compare origins, so an older write
 *   can neither overwrite a newer one nor resurrect a key deleted later.
 * - Uploads: gcs-upload.ts (one request when held whole, else an upload part
 *   composed into the key with its final metadata).
 * - The SDK's own retries are off; ours (retry.ts) are counted and bounded.
 * - Errors are translated where they arise (gcs-errors.ts): no raw error with
 *   an HTTP `code` leaves this folder, and messages never carry the bucket name.
 */
import { Readable } from "node:stream";
import { Storage, type FileMetadata } from "@google-cloud/storage";
import type { Backend, DeleteOptions, GetOptions, HeadOptions, ListOptions, ObjectRecord, PutMeta, PutOptions } from "../backend.js";
import { compareOrigins, newOrigin } from "../write-origin.js";
import { Code, StorageError, generationMismatch } from "../../storage-error.js";
import { bindSignal, throwIfAborted } from "../../signals.js";
import type { GcsContext } from "./gcs-context.js";
import { call, httpStatus, isRetryable } from "./gcs-errors.js";
import { listPage, sweepBucket, type SweepLimits } from "./gcs-listing.js";
import { PinnedGenerationGone, openRead } from "./gcs-read.js";
import { uploadStreamed, uploadWhole } from "./gcs-upload.js";
import { TOMBSTONE_TYPE, customMetadata, toRecord, tombstoneMetadata } from "./object-metadata.js";
import { ReplaySource } from "./replay-source.js";
import { withRetry } from "./retry.js";
import { gcsStorageOptions, type SdkOptions } from "./sdk-options.js";

export { gcsStorageOptions } from "./sdk-options.js";
export type { SweepLimits } from "./gcs-listing.js";

export interface GcsBackendOptions extends SdkOptions {
  bucket: string;
  /** Location of a bucket we create (default US). */
  location?: string;
  /** Retries after the first attempt of a retry-safe call. */
  maxRetries: number;
  /** Uploads above this size (or of unknown size past it) are streamed through an upload part (default 8 MiB). */
  resumableThresholdBytes?: number;
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
  const ctx: GcsContext = {
    bucket,
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
  const stat = (key: string, signal?: AbortSignal): Promise<FileMetadata | undefined> =>
    ctx.retry(() => call("stat", async () => (await bucket.file(key).getMetadata())[0], { notFound: undefined }), signal);

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

  /** GCS refused the generation we observed: a concurrent write won. */
  async function lostRace(key: string, expected: bigint | undefined, err: StorageError, what: string): Promise<never> {
    if (expected !== undefined) {
      const now = await head(key).catch(() => undefined);
      throw generationMismatch(key, expected, now?.generation);
    }
    throw new StorageError(Code.Aborted, `a concurrent write to key "${key}" won ${what}; retry it`, { cause: err });
  }

  async function put(key: string, source: AsyncIterable<Uint8Array>, meta: PutMeta, putOpts: PutOptions = {}): Promise<ObjectRecord> {
    const { signal, ifGenerationMatch: expected, verify } = putOpts;
    throwIfAborted(signal);
    await ensureBucket(signal);
    // Observe the current generation before touching the source: it is the
    // precondition of the upload, and a mismatch fails before any byte moves.
    // An expired object or a tombstone is invisible, but GCS still holds it: guard on it.
    const { live, guard } = await observe(key, expected, signal);
    const origin = meta.origin ?? newOrigin(writer);
    // Up to the threshold is read ahead (and kept for a replay).
    const replay = new ReplaySource(source, threshold);
    // The codec fills meta.encoding once data flows, size/crc32c at the end.
    const whole = await replay.fill(signal);
    const target = { key, contentType: meta.contentType, guard, metadata: () => customMetadata(meta, live?.createdAt, origin) };
    try {
      const uploaded = whole ? await uploadWhole(ctx, replay, target, signal, verify) : await uploadStreamed(ctx, replay, target, signal, verify);
      return toRecord(key, uploaded);
    } catch (err) {
      if (StorageError.is(err, Code.FailedPrecondition) && err.cause !== undefined) return lostRace(key, expected, err, "the write");
      throw err;
    }
  }

  async function get(key: string, getOpts: GetOptions = {}): Promise<{ record: ObjectRecord; body: Readable } | undefined> {
    const { signal, range, ifGenerationMatch: expected } = getOpts;
    throwIfAborted(signal);
    // The object may be replaced between the stat and the read (the read is
    // pinned to the stat's generation): then look again.
    for (let race = 0; ; race++) {
      const record = await head(key, { signal });
      if (!record) return undefined;
      if (expected !== undefined && record.generation !== expected) throw generationMismatch(key, expected, record.generation);
      const offset = range?.offset ?? 0;
      if (offset > record.storedSize) {
        throw new StorageError(Code.OutOfRange, `offset ${offset} is past the end of key "${key}" (${record.storedSize} bytes)`);
      }
      const end = Math.min(record.storedSize, range?.length === undefined ? Infinity : offset + range.length);
      if (end <= offset) return { record, body: Readable.from([]) };
      const whole = offset === 0 && end === record.storedSize;
      try {
        const pinned = bucket.file(key, { generation: record.generation.toString() });
        const body = await ctx.retry(() => openRead(pinned, whole ? undefined : { start: offset, end: end - 1 }), signal);
        return { record, body: bindSignal(body, signal) };
      } catch (err) {
        if (!(err instanceof PinnedGenerationGone)) throw err;
        if (race >= 3) throw new StorageError(Code.Aborted, `key "${key}" kept changing while it was read; try again`);
      }
    }
  }

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
    try {
      await ctx.retry(
        () =>
          call("delete", () =>
            bucket.file(key).save(Buffer.alloc(0), {
              resumable: false,
              validation: false,
              metadata: { contentType: TOMBSTONE_TYPE, metadata: tombstoneMetadata(origin) },
              preconditionOpts: { ifGenerationMatch: guard.toString() },
            }),
          ),
        signal,
      );
    } catch (err) {
      if (StorageError.is(err, Code.FailedPrecondition)) return lostRace(key, expected, err, "over the delete");
      throw err;
    }
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
    // The SDK keeps no resources that need closing (its sockets are pooled and unref'd).
    close: async () => undefined,
  };
}
