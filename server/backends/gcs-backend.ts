/**
 * The Google Cloud Storage tier (@google-cloud/storage 7.x).
 *
 * - Our flags (kind, content type, user metadata, original size and CRC32C,
 *   encoding, expiry, creation time) live in custom metadata (`x-fs-*`),
 *   never in contentEncoding: gzip, which would make GCS decompress behind
 *   our back and break checksums and ranges.
 * - Every write carries a generation precondition (the caller's, or the one
 *   we observed just before), so a retried or racing write never clobbers a
 *   newer one; with the SDK 7.x a precondition-less save() also turns the
 *   client's autoRetry off for everybody.
 * - Every version carries the origin of its write (x-fs-written-at, x-fs-writer)
 *   and a delete leaves a tombstone: a zero-byte object with x-fs-deleted=1
 *   and the delete's origin, invisible to reads and listings. Several daemons
 *   replaying writes made during an outage compare origins, so an older write
 *   can neither overwrite a newer one nor resurrect a key deleted later.
 * - A streamed upload (too large to hold for a replay) goes to a temporary
 *   object under .filestorage/uploads/ and is composed into the key with its
 *   final metadata (original size and CRC32C) in one request, guarded by the
 *   precondition: the key keeps its previous version until that succeeds.
 * - The SDK's own retries are off; ours (withRetry) are counted and bounded.
 * - Errors are translated here: a miss is undefined/false, 412 is
 *   FAILED_PRECONDITION, 416 OUT_OF_RANGE, 429 RESOURCE_EXHAUSTED (a throttled
 *   object, retried), and UNAVAILABLE only for what says "GCS cannot be
 *   reached" (network failures, 5xx, timeouts): the breaker counts those, so
 *   one caller's bad request cannot make GCS look down for everybody. An
 *   error we cannot classify is INTERNAL. No raw error with an HTTP `code`
 *   leaves this file, and messages never carry the bucket name.
 */
import { randomUUID } from "node:crypto";
import { Readable, PassThrough } from "node:stream";
import { pipeline } from "node:stream/promises";
import { Storage, type CRC32CValidator, type File, type FileMetadata } from "@google-cloud/storage";
import { crc32c } from "@node-rs/crc32";
import type {
  Backend,
  DataKindName,
  DeleteOptions,
  Encoding,
  GetOptions,
  HeadOptions,
  JsonObject,
  ListOptions,
  ListPage,
  ObjectRecord,
  PutMeta,
  PutOptions,
} from "./backend.js";
import { compareKeys } from "./backend.js";
import { compareOrigins, newOrigin, type WriteOrigin } from "./write-origin.js";
import { Code, StorageError, generationMismatch } from "../storage-error.js";
import { withRetry } from "../engine/retry.js";

export interface GcsBackendOptions {
  bucket: string;
  /** Needed to create a missing bucket. */
  projectId?: string;
  /** A service-account key file; without it, application default credentials. */
  keyFilename?: string;
  /** Location of a bucket we create (default US). */
  location?: string;
  /** An emulator's base URL (without /storage/v1); no credentials are used then. */
  apiEndpoint?: string;
  /** Retries after the first attempt of a retry-safe call. */
  maxRetries: number;
  /** Deadline of one attempt; for uploads, the longest GCS may make no progress. */
  timeoutMs: number;
  /** Uploads above this size (or of unknown size past it) are resumable (default 8 MiB). */
  resumableThresholdBytes?: number;
  /** An injected SDK client (tests); build it with gcsStorageOptions() so SDK retries stay off. */
  storage?: Storage;
  /** This daemon's writer id: the origin of writes and deletes that come without one. */
  writer?: string;
}

/** Objects under this prefix are the daemon's own (upload parts, keys); callers can never name them. */
export const RESERVED_PREFIX = ".filestorage/";
const UPLOADS_PREFIX = `${RESERVED_PREFIX}uploads/`;
/** Content type of a tombstone object. */
const TOMBSTONE_TYPE = "application/x-filestorage-tombstone";

const MiB = 1024 * 1024;
const PROBE_TIMEOUT_MS = 5000;
const LIST_PAGE_MAX = 1000;

/** Our custom metadata keys. */
const X = {
  kind: "x-fs-kind",
  contentType: "x-fs-content-type",
  metadata: "x-fs-metadata",
  size: "x-fs-size",
  crc32c: "x-fs-crc32c",
  encoding: "x-fs-encoding",
  expiresAt: "x-fs-expires-at",
  createdAt: "x-fs-created-at",
  writtenAt: "x-fs-written-at",
  writer: "x-fs-writer",
  deleted: "x-fs-deleted",
} as const;

/**
 * SDK settings every client of this backend needs: SDK retries off (ours are
 * counted), a native CRC32C for upload and download validation (the SDK's
 * pure-JS one runs at ~200 MiB/s), and no credentials for an emulator.
 */
export function gcsStorageOptions(opts: Pick<GcsBackendOptions, "projectId" | "keyFilename" | "apiEndpoint" | "timeoutMs">) {
  return {
    projectId: opts.projectId,
    keyFilename: opts.keyFilename,
    apiEndpoint: opts.apiEndpoint,
    timeout: opts.timeoutMs,
    retryOptions: { autoRetry: false, maxRetries: 0 },
    crc32cGenerator: nativeCrc32cValidator,
  };
}

/**
 * Opens the bucket (creating it when missing and a project id is given) and
 * returns the GCS tier. When GCS cannot be reached at start-up the factory
 * still succeeds: the bucket check is repeated by probe() and the first write.
 */
/** What GcsBackend.sweep removes; times are Unix ms. */
export interface SweepLimits {
  now: number;
  tombstoneBefore: number;
  partsBefore: number;
  signal?: AbortSignal;
  /** Called for each expired object removed. */
  onExpired?: (record: ObjectRecord) => void;
}

/** The GCS tier: a Backend plus the sweep of what GCS keeps that nobody can read. */
export type GcsBackend = Backend & {
  sweep(limits: SweepLimits): Promise<{
    tombstones: number;
    expired: number;
    parts: number;
  }>;
};

export async function createGcsBackend(opts: GcsBackendOptions): Promise<GcsBackend> {
  const storage = opts.storage ?? new Storage(gcsStorageOptions(opts));
  const writer = opts.writer ?? "";
  const bucket = storage.bucket(opts.bucket);
  const threshold = opts.resumableThresholdBytes ?? 8 * MiB;
  const retry = <T>(fn: (s: AbortSignal) => Promise<T>, signal?: AbortSignal) =>
    withRetry(fn, { maxRetries: opts.maxRetries, timeoutMs: opts.timeoutMs, signal, retryable: isRetryable });

  let bucketReady: Promise<void> | undefined;
  /** Checks (once, until it succeeds) that the bucket exists, creating it when allowed. */
  const ensureBucket = (signal?: AbortSignal): Promise<void> => {
    bucketReady ??= retry(async () => {
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
    }, signal).catch((err) => {
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
    retry(() => call("stat", async () => (await bucket.file(key).getMetadata())[0], { notFound: undefined }), signal);

  /** The record (a tombstone only when asked for), or undefined. */
  const head = async (key: string, headOpts?: HeadOptions) => {
    const md = await stat(key, headOpts?.signal);
    const record = md && toRecord(key, md);
    return record?.deleted && !headOpts?.tombstones ? undefined : record;
  };

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
    // Observe the current generation before touching the source: it is the
    // precondition of the upload, and a mismatch fails before any byte moves.
    // An expired object or a tombstone is invisible, but GCS still holds it: guard on it.
    const { live, guard } = await observe(key, expected, signal);
    const origin = meta.origin ?? newOrigin(writer);
    // Up to the resumable threshold is read ahead (and kept for a replay):
    // a source that ends within it goes up in one multipart request.
    const replay = new ReplaySource(source, threshold);
    // The codec fills meta.encoding once data flows, size/crc32c at the end.
    const whole = await replay.fill(signal);
    const createdAt = live?.createdAt;
    try {
      if (whole) {
        // Everything is known: one request carries the bytes and the final metadata.
        const custom = customMetadata(meta, createdAt, origin);
        // A failed attempt is retried while the source is held (the precondition makes it safe).
        const uploaded = await withRetry(
          (attemptSignal) => uploadOnce(bucket.file(key), replay.iterate(), custom, meta.contentType, guard, false, attemptSignal, verify),
          { maxRetries: opts.maxRetries, timeoutMs: 0, signal, retryable: isRetryable },
        );
        return toRecord(key, uploaded);
      }
      return await putStreamed(key, replay, meta, origin, createdAt, guard, signal, verify);
    } catch (err) {
      if (StorageError.is(err) && err.code === Code.FailedPrecondition && err.cause !== undefined) {
        // GCS refused our observed generation: a concurrent write won.
        if (expected !== undefined) {
          const now = await head(key, { signal }).catch(() => undefined);
          throw generationMismatch(key, expected, now?.generation);
        }
        throw new StorageError(Code.Aborted, `a concurrent write to key "${key}" won; retry the write`, { cause: err });
      }
      throw err;
    }
  }

  /**
   * A source too large to hold: streamed (resumable) into a temporary object,
   * checked (verify), then composed into `key` with the metadata that only the
   * end of the stream can give (original size and CRC32C), guarded by `guard`.
   * Until the compose succeeds the key keeps its previous version; the
   * temporary object is deleted either way (a crash leaves it to the sweep).
   */
  async function putStreamed(
    key: string,
    replay: ReplaySource,
    meta: PutMeta,
    origin: WriteOrigin,
    createdAt: number | undefined,
    guard: bigint,
    signal: AbortSignal | undefined,
    verify: PutOptions["verify"],
  ): Promise<ObjectRecord> {
    const part = bucket.file(`${UPLOADS_PREFIX}${randomUUID()}`);
    try {
      const uploaded = await uploadOnce(part, replay.iterate(), { [X.kind]: "BYTES" }, "application/octet-stream", 0n, true, signal ?? new AbortController().signal, verify);
      const composed = await retry(
        () =>
          call("compose", async () => {
            const [body] = await bucket.file(key).request({
              method: "POST",
              uri: "/compose",
              json: {
                destination: { contentType: meta.contentType || undefined, metadata: customMetadata(meta, createdAt, origin) },
                sourceObjects: [{ name: part.name, generation: uploaded.generation }],
              },
              qs: { ifGenerationMatch: guard.toString() },
            });
            return body as FileMetadata;
          }),
        signal,
      );
      return toRecord(key, composed);
    } finally {
      await call("delete", () => part.delete()).catch(() => undefined);
    }
  }

  /** One upload attempt; a failing source, verify or signal destroys the write stream, so nothing is committed. */
  async function uploadOnce(
    file: File,
    chunks: AsyncIterable<Uint8Array>,
    custom: Record<string, string>,
    contentType: string,
    guard: bigint,
    resumable: boolean,
    signal: AbortSignal,
    verify: PutOptions["verify"],
  ): Promise<FileMetadata> {
    const ws = file.createWriteStream({
      resumable,
      validation: "crc32c",
      metadata: { contentType, metadata: custom },
      preconditionOpts: { ifGenerationMatch: guard.toString() },
    });
    const idle = new IdleTimer(opts.timeoutMs);
    // Failures of the source and of verify are the caller's: they pass unchanged.
    let callerError: { err: unknown } | undefined;
    async function* feed(): AsyncGenerator<Uint8Array> {
      let size = 0;
      let crc = 0;
      const it = chunks[Symbol.asyncIterator]();
      for (;;) {
        let next: IteratorResult<Uint8Array>;
        try {
          next = await it.next();
        } catch (err) {
          callerError = { err };
          throw err;
        }
        if (next.done) break;
        const chunk = next.value;
        size += chunk.length;
        crc = crc32c(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength), crc);
        // Timed only while GCS holds us up, not while we wait for a slow client.
        idle.arm();
        yield chunk;
        idle.disarm();
      }
      // Before the end of the body: a throw here abandons the upload.
      try {
        verify?.({ size, crc32c: crc >>> 0 });
      } catch (err) {
        callerError = { err };
        throw err;
      }
      idle.arm();
    }
    const both = AbortSignal.any([signal, idle.signal]);
    try {
      await pipeline(Readable.from(feed(), { objectMode: false, highWaterMark: MiB }), ws, { signal: both });
      return file.metadata;
    } catch (err) {
      if (callerError) throw callerError.err;
      if (idle.signal.aborted) throw idle.signal.reason;
      if (signal.aborted) throw cancelled(signal, err);
      throw translate("upload", err);
    } finally {
      idle.disarm();
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
        const body = await retry(
          () => openRead(bucket.file(key, { generation: record.generation.toString() }), whole ? undefined : { start: offset, end: end - 1 }),
          signal,
        );
        if (signal) bindSignal(body, signal);
        return { record, body };
      } catch (err) {
        if (err instanceof Miss && race < 3) continue;
        if (err instanceof Miss) throw new StorageError(Code.Aborted, `key "${key}" kept changing while it was read; try again`);
        throw err;
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
    const tombstone = bucket.file(key);
    try {
      await retry(
        () =>
          call("delete", () =>
            tombstone.save(Buffer.alloc(0), {
              resumable: false,
              validation: false,
              metadata: {
                contentType: TOMBSTONE_TYPE,
                metadata: { [X.deleted]: "1", [X.writtenAt]: String(origin.writtenAt), [X.writer]: origin.writer },
              },
              preconditionOpts: { ifGenerationMatch: guard.toString() },
            }),
          ),
        signal,
      );
    } catch (err) {
      if (!StorageError.is(err, Code.FailedPrecondition)) throw err;
      if (expected !== undefined) {
        const now = await head(key, { signal }).catch(() => undefined);
        throw generationMismatch(key, expected, now?.generation);
      }
      throw new StorageError(Code.Aborted, `a concurrent write to key "${key}" won over the delete; retry it`, { cause: err });
    }
    return live !== undefined;
  }

  /**
   * Removes what GCS keeps but nobody can read any more (run by the sweeper):
   * objects expired before `now` (replaced by a tombstone carrying their own
   * write's origin, so an older write replayed later cannot bring back what
   * expired), tombstones older than `tombstoneBefore` and upload parts older
   * than `partsBefore` (left by a crash). Every removal is guarded by the
   * generation seen, so a newer write survives. Unix ms; returns counts.
   */
  async function sweep(limits: SweepLimits) {
    const removed = { tombstones: 0, expired: 0, parts: 0 };
    let pageToken: string | undefined;
    do {
      const [files, next] = await retry(
        () => call("list", () => bucket.getFiles({ maxResults: LIST_PAGE_MAX, pageToken, autoPaginate: false })),
        limits.signal,
      );
      for (const f of files) {
        const md = f.metadata;
        const created = Date.parse(String(md.timeCreated ?? md.updated ?? ""));
        let kind: "tombstones" | "parts" | undefined;
        if (f.name.startsWith(RESERVED_PREFIX)) {
          if (f.name.startsWith(UPLOADS_PREFIX) && created < limits.partsBefore) kind = "parts";
        } else {
          const r = toRecord(f.name, md);
          if (r.deleted && r.origin.writtenAt / 1000 < limits.tombstoneBefore) kind = "tombstones";
          else if (!r.deleted && r.expiresAt !== undefined && r.expiresAt <= limits.now) {
            const gone = await del(r.key, { ifGenerationMatch: r.generation, origin: r.origin, signal: limits.signal }).catch((err) => {
              if (StorageError.is(err, Code.FailedPrecondition, Code.Aborted)) return false;
              throw err;
            });
            if (gone) {
              removed.expired++;
              limits.onExpired?.(r);
            }
            continue;
          }
        }
        if (kind === undefined) continue;
        const gen = String(md.generation);
        // Pinned to the generation seen (the emulator ignores ifGenerationMatch on deletes but honours the generation).
        const done = await call("delete", async () => (await bucket.file(f.name, { generation: gen }).delete({ ifGenerationMatch: gen }), true), {
          notFound: false,
        }).catch((err) => {
          if (StorageError.is(err, Code.FailedPrecondition)) return false;
          throw err;
        });
        if (done) removed[kind]++;
      }
      pageToken = (next as { pageToken?: string } | null)?.pageToken;
    } while (pageToken !== undefined);
    return removed;
  }

  async function list(listOpts: ListOptions): Promise<ListPage> {
    const { prefix = "", startAfter, limit, delimiter, signal } = listOpts;
    throwIfAborted(signal);
    if (limit <= 0) return { objects: [], prefixes: [] };
    const after = (name: string) => startAfter === undefined || compareKeys(name, startAfter) > 0;
    const objects = new Map<string, ObjectRecord>();
    const prefixes = new Set<string>();
    let pageToken: string | undefined;
    for (;;) {
      const [files, next, raw] = await retry(
        () =>
          call("list", () =>
            bucket.getFiles({
              prefix: prefix || undefined,
              delimiter,
              // startOffset is inclusive; equal names are skipped below.
              startOffset: startAfter !== undefined && compareKeys(startAfter, prefix) > 0 ? startAfter : undefined,
              maxResults: Math.min(LIST_PAGE_MAX, limit + 2),
              pageToken,
              autoPaginate: false,
            }),
          ),
        signal,
      );
      let frontier: string | undefined;
      for (const f of files) {
        if (frontier === undefined || compareKeys(f.name, frontier) > 0) frontier = f.name;
        if (f.name.startsWith(RESERVED_PREFIX)) continue;
        const rec = toRecord(f.name, f.metadata);
        if (!rec.deleted && after(rec.key)) objects.set(rec.key, rec);
      }
      for (const p of ((raw as { prefixes?: string[] } | undefined)?.prefixes ?? [])) {
        if (after(p) && !p.startsWith(RESERVED_PREFIX)) prefixes.add(p);
      }
      pageToken = (next as { pageToken?: string } | null)?.pageToken;
      // Entries up to the last object of the page are complete (the emulator
      // returns every rolled-up prefix on every page, so prefixes cannot set it).
      const complete = pageToken === undefined ? Infinity : countUpTo(objects, prefixes, frontier);
      if (complete > limit || pageToken === undefined) break;
    }
    const entries = [...[...objects.keys()].map((k) => ({ k, isPrefix: false })), ...[...prefixes].map((k) => ({ k, isPrefix: true }))];
    entries.sort((a, b) => compareKeys(a.k, b.k));
    const taken = entries.slice(0, limit);
    const more = entries.length > limit || pageToken !== undefined;
    const page: ListPage = {
      objects: taken.filter((e) => !e.isPrefix).map((e) => objects.get(e.k)!),
      prefixes: taken.filter((e) => e.isPrefix).map((e) => e.k),
    };
    if (more && taken.length > 0) page.next = taken[taken.length - 1].k;
    return page;
  }

  async function probe(signal?: AbortSignal): Promise<void> {
    const probeSignal = signal ? AbortSignal.any([signal, AbortSignal.timeout(PROBE_TIMEOUT_MS)]) : AbortSignal.timeout(PROBE_TIMEOUT_MS);
    try {
      await withRetry(async () => {
        await ensureBucket(probeSignal);
        await call("probe", () => bucket.getMetadata());
      }, { maxRetries: 0, timeoutMs: Math.min(opts.timeoutMs, PROBE_TIMEOUT_MS), signal: probeSignal });
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
    list,
    probe,
    sweep,
    // The SDK keeps no resources that need closing (its sockets are pooled and unref'd).
    close: async () => undefined,
  };
}

/** Entries known up to `frontier` (inclusive). */
function countUpTo(objects: Map<string, unknown>, prefixes: Set<string>, frontier: string | undefined): number {
  if (frontier === undefined) return 0;
  let n = 0;
  for (const k of objects.keys()) if (compareKeys(k, frontier) <= 0) n++;
  for (const p of prefixes) if (compareKeys(p, frontier) <= 0) n++;
  return n;
}

/** The custom metadata of a new version. */
function customMetadata(meta: PutMeta, createdAt: number | undefined, origin: WriteOrigin): Record<string, string> {
  const m: Record<string, string> = {
    [X.kind]: meta.kind,
    [X.contentType]: meta.contentType,
    [X.metadata]: JSON.stringify(meta.metadata ?? {}),
    [X.writtenAt]: String(origin.writtenAt),
    [X.writer]: origin.writer,
  };
  if (meta.size !== undefined) m[X.size] = String(meta.size);
  if (meta.crc32c !== undefined) m[X.crc32c] = String(meta.crc32c >>> 0);
  if (meta.encoding && Object.keys(meta.encoding).length > 0) m[X.encoding] = JSON.stringify(meta.encoding);
  if (meta.expiresAt !== undefined) m[X.expiresAt] = String(meta.expiresAt);
  // A new key's creation time is GCS's own; an overwrite keeps the first one.
  if (createdAt !== undefined) m[X.createdAt] = String(createdAt);
  return m;
}

const KINDS: readonly DataKindName[] = ["BYTES", "TEXT", "JSON"];

/** Our record of a GCS object; objects written by others read as plain BYTES. */
function toRecord(key: string, md: FileMetadata): ObjectRecord {
  const m = (md.metadata ?? {}) as Record<string, string | null | undefined>;
  const num = (v: string | null | undefined) => (v === undefined || v === null || v === "" ? undefined : Number(v));
  const storedSize = Number(md.size ?? 0);
  const gcsCrc = md.crc32c ? Buffer.from(md.crc32c, "base64").readUInt32BE(0) : 0;
  const updatedAt = Date.parse(String(md.timeCreated ?? md.updated ?? ""));
  const kind = KINDS.includes(m[X.kind] as DataKindName) ? (m[X.kind] as DataKindName) : "BYTES";
  const record: ObjectRecord = {
    key,
    generation: BigInt(md.generation ?? 0),
    kind,
    contentType: m[X.contentType] ?? md.contentType ?? "application/octet-stream",
    metadata: parseJson<JsonObject>(m[X.metadata], {}),
    size: num(m[X.size]) ?? storedSize,
    crc32c: num(m[X.crc32c]) ?? gcsCrc,
    storedSize,
    encoding: parseJson<Encoding>(m[X.encoding], {}),
    createdAt: num(m[X.createdAt]) ?? updatedAt,
    updatedAt,
    tier: "gcs",
    pendingReplication: false,
    // An object written by another tool carries no origin: its creation time stands in.
    origin: { writtenAt: num(m[X.writtenAt]) ?? updatedAt * 1000, writer: m[X.writer] ?? "" },
  };
  const expiresAt = num(m[X.expiresAt]);
  if (expiresAt !== undefined) record.expiresAt = expiresAt;
  if (m[X.deleted] === "1") record.deleted = true;
  return record;
}

function parseJson<T>(text: string | null | undefined, fallback: T): T {
  if (!text) return fallback;
  try {
    return JSON.parse(text) as T;
  } catch {
    return fallback;
  }
}

/** Thrown by openRead when the pinned generation is gone. */
class Miss extends Error {}

/** Opens a read and waits for GCS's answer, so a miss or an outage is an error here, not in the body. */
async function openRead(file: File, range: { start: number; end: number } | undefined): Promise<Readable> {
  // Whole objects are checked against GCS's CRC32C; ranges cannot be.
  const sdk = file.createReadStream(range ? { ...range, validation: false } : { validation: "crc32c" });
  await new Promise<void>((resolve, reject) => {
    const done = () => {
      sdk.off("error", fail);
      resolve();
    };
    const fail = (err: unknown) => {
      sdk.off("response", done).off("readable", done).off("end", done);
      reject(httpStatus(err) === 404 ? new Miss() : translate("read", err));
    };
    sdk.once("response", done).once("readable", done).once("end", done).once("error", fail);
  });
  const body = new PassThrough({ highWaterMark: MiB });
  sdk.on("error", (err) => body.destroy(translate("read", err)));
  body.on("close", () => sdk.destroy());
  sdk.pipe(body);
  return body;
}

function bindSignal(body: Readable, signal: AbortSignal): void {
  const onAbort = () => body.destroy(cancelled(signal));
  if (signal.aborted) {
    onAbort();
    return;
  }
  signal.addEventListener("abort", onAbort, { once: true });
  body.once("close", () => signal.removeEventListener("abort", onAbort));
}

/** Runs one SDK call, translating its failure; `notFound` is returned for a 404 when given. */
async function call<T, M = never>(what: string, fn: () => Promise<T>, miss?: { notFound: M }): Promise<T | M> {
  try {
    return await fn();
  } catch (err) {
    if (miss && httpStatus(err) === 404) return miss.notFound;
    throw translate(what, err);
  }
}

const NETWORK_CODES = new Set([
  "ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "ESOCKETTIMEDOUT", "EPIPE", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH",
  "ENETUNREACH", "ECONNABORTED", "ERR_STREAM_PREMATURE_CLOSE", "UND_ERR_SOCKET", "UND_ERR_CONNECT_TIMEOUT",
]);

/** The HTTP status of an SDK error, if it has one. */
function httpStatus(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === "number") return code;
  const status = (err as { response?: { status?: unknown; statusCode?: unknown } } | null)?.response;
  const s = status?.status ?? status?.statusCode;
  return typeof s === "number" ? s : undefined;
}

/** A StorageError for an SDK or network failure; the original is kept as `cause`. */
function translate(what: string, err: unknown): StorageError {
  if (err instanceof StorageError) return err;
  const status = httpStatus(err);
  const code = (err as { code?: unknown; type?: unknown } | null)?.code;
  const type = (err as { type?: unknown } | null)?.type;
  const fail = (c: Code, msg: string) => new StorageError(c, msg, { cause: err });
  if (code === "CONTENT_DOWNLOAD_MISMATCH") return fail(Code.DataLoss, "GCS read: the CRC32C of the data does not match the object's");
  if (code === "FILE_NO_UPLOAD" || code === "FILE_NO_UPLOAD_DELETE") return fail(Code.DataLoss, "GCS upload: the CRC32C GCS computed does not match the data sent");
  if (status === 412) return fail(Code.FailedPrecondition, `GCS ${what}: generation precondition failed`);
  if (status === 416) return fail(Code.OutOfRange, `GCS ${what}: the requested range is past the end of the object`);
  if (status === 404) return fail(Code.NotFound, `GCS ${what}: not found`);
  if (status === 401) return fail(Code.Unauthenticated, `GCS ${what}: the credentials were rejected`);
  if (status === 403) return fail(Code.PermissionDenied, `GCS ${what}: permission denied`);
  if (status === 400) return fail(Code.InvalidArgument, `GCS ${what}: the request was rejected as invalid (metadata too large?)`);
  // A throttled object (GCS allows about one write per second to one object): this caller's, not an outage.
  if (status === 429) return fail(Code.ResourceExhausted, `GCS ${what}: GCS is throttling requests for this object (HTTP 429); retry later`);
  if (status === 408 || (status !== undefined && status >= 500 && status !== 501)) {
    return fail(Code.Unavailable, `GCS ${what}: GCS answered HTTP ${status}`);
  }
  if ((typeof code === "string" && NETWORK_CODES.has(code)) || type === "system" || type === "request-timeout") {
    return fail(Code.Unavailable, `GCS ${what}: GCS is not reachable (${typeof code === "string" ? code : String(type)})`);
  }
  if (status !== undefined) return fail(Code.Internal, `GCS ${what}: unexpected HTTP ${status}`);
  // Not an answer from GCS nor a network failure: a fault on our side (a request
  // the SDK refused to build, a bug). It must not count as GCS being down.
  return fail(Code.Internal, `GCS ${what} failed: ${err instanceof Error ? err.name : "unknown error"}`);
}

/** Worth another attempt: GCS was unreachable or slow, or throttled this object (HTTP 429). */
function isRetryable(err: unknown): boolean {
  if (StorageError.is(err, Code.Unavailable, Code.DeadlineExceeded)) return true;
  return StorageError.is(err, Code.ResourceExhausted) && httpStatus(err.cause) === 429;
}

function cancelled(signal: AbortSignal, cause?: unknown): StorageError {
  if (StorageError.is(signal.reason)) return signal.reason;
  return new StorageError(Code.Cancelled, "the call was cancelled", { cause: cause ?? signal.reason });
}

function throwIfAborted(signal?: AbortSignal): void {
  if (signal?.aborted) throw cancelled(signal);
}

/** Aborts its signal when armed for longer than `ms` without being disarmed. */
class IdleTimer {
  private readonly ac = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  readonly signal = this.ac.signal;
  constructor(private readonly ms: number) {}
  arm(): void {
    if (!(this.ms > 0 && Number.isFinite(this.ms)) || this.timer) return;
    this.timer = setTimeout(() => {
      this.ac.abort(new StorageError(Code.Unavailable, `GCS made no progress for ${this.ms} ms`));
    }, this.ms);
  }
  disarm(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}

/**
 * A source that can be read again from the start while everything read so
 * far is still buffered (at most `limit` bytes). Pulls are shared, so a chunk
 * an abandoned attempt pulled is not lost to the next one, and a source
 * failure is remembered and re-thrown to every reader.
 */
class ReplaySource {
  private readonly chunks: Uint8Array[] = [];
  private buffered = 0;
  private ended = false;
  private failure: { err: unknown } | undefined;
  private pulling: Promise<void> | undefined;
  /** Chunks pulled and let go (once past the limit). */
  private dropped = 0;
  private readonly it: AsyncIterator<Uint8Array>;
  replayable = true;

  constructor(source: AsyncIterable<Uint8Array>, private readonly limit: number) {
    this.it = source[Symbol.asyncIterator]();
  }

  /** Reads ahead up to the limit; true when the whole source fit. */
  async fill(signal?: AbortSignal): Promise<boolean> {
    while (!this.ended && this.replayable) {
      throwIfAborted(signal);
      await this.pull();
    }
    return this.ended && this.replayable;
  }

  async *iterate(): AsyncGenerator<Uint8Array> {
    if (this.dropped > 0) throw new StorageError(Code.Internal, "an upload source cannot be replayed");
    for (let i = 0; ; i++) {
      while (i >= this.dropped + this.chunks.length && !this.ended) await this.pull();
      if (i >= this.dropped + this.chunks.length) return;
      const at = i - this.dropped;
      const chunk = this.chunks[at];
      if (!this.replayable) {
        // Past the replay limit: keep nothing behind the reader.
        this.chunks.splice(0, at + 1);
        this.dropped += at + 1;
      }
      yield chunk;
    }
  }

  private pull(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure.err);
    this.pulling ??= this.it.next().then(
      (r) => {
        this.pulling = undefined;
        if (r.done) {
          this.ended = true;
          return;
        }
        if (r.value.length === 0) return;
        this.chunks.push(r.value);
        this.buffered += r.value.length;
        if (this.buffered > this.limit) this.replayable = false;
      },
      (err) => {
        this.pulling = undefined;
        this.failure = { err };
        throw err;
      },
    );
    return this.pulling;
  }
}

/** The SDK's CRC32C validator on the native implementation. */
function nativeCrc32cValidator(): CRC32CValidator {
  let crc = 0;
  const toString = () => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(crc >>> 0);
    return b.toString("base64");
  };
  return {
    update: (data: Buffer) => {
      crc = crc32c(data, crc);
    },
    toString,
    validate: (value: string) => value === toString(),
  };
}
