/**
 * The engine: what the RPC handlers call, over one Backend (the stack that
 * server/stack.ts assembles). It adds what belongs above every backend: key
 * rules, object size limits, quotas, expiry (through expiry.ts) and page
 * tokens.
 *
 * Contract:
 * - put checks the key, refuses a declared size over maxObjectBytes before any
 *   byte, counts bytes as they pass (RESOURCE_EXHAUSTED past the limit or the
 *   quota, nothing kept), and under a quota takes its turn with the other
 *   writes and deletes of the key, so it frees exactly the size it replaces.
 *   A create-only write (if_generation_match=0) may replace an expired object
 *   the sweeper has not removed yet.
 * - get / head return only live objects (undefined for missing or expired).
 * - delete of an expired object removes it but reports false; during an
 *   outage a delete of a key only GCS holds is still taken (the chain records
 *   a tombstone) and reports true.
 * - deleteMany takes at most MAX_DELETE_MANY_KEYS keys and/or a non-empty prefix.
 * - list pages are sorted, skip expired objects, hold at most `limit` entries
 *   and stop early, with a page token, before the encoded response passes
 *   maxListResponseBytes (always at least one entry).
 */
import type { Readable } from "node:stream";
import { ReplayableSource, compareKeys, type Backend, type DeleteOptions, type GetOptions, type ObjectRecord, type PutMeta, type PutOptions } from "../backends/backend.js";
import { checkDelimiter, checkKey, checkPrefix } from "../keys.js";
import { Code, StorageError, generationMismatch, invalidArgument } from "../storage-error.js";
import { isLive as isLiveAt } from "./expiry.js";
import { withLifecycle, type LifecycleRule } from "./lifecycle.js";
import { measureUsage, type Usage, type UsageRequest } from "./usage.js";
import { decodePageToken, encodePageToken, resumeAfter, type ListEntry } from "./page-token.js";
import type { QuotaReservation, Quotas } from "./quota.js";

export type { ListEntry } from "./page-token.js";

export const DEFAULT_PAGE_SIZE = 1000;
export const MAX_PAGE_SIZE = 10000;
/** Keys in one DeleteMany (as S3's DeleteObjects; a prefix has no such limit). */
export const MAX_DELETE_MANY_KEYS = 1000;
/** Part of MAX_LIST_RESPONSE_BYTES kept for the page token and the message framing. */
const LIST_RESPONSE_RESERVE_BYTES = 8 * 1024;

/** The limits the engine enforces (validated settings). */
export interface EngineLimits {
  /** MAX_OBJECT_BYTES */
  maxObjectBytes: number;
  /** MAX_LIST_RESPONSE_BYTES */
  maxListResponseBytes: number;
}

export interface EngineOptions {
  limits: EngineLimits;
  quotas?: Quotas;
  /** LIFECYCLE_RULES: objects under a rule's prefix expire that long after their write. */
  lifecycle?: readonly LifecycleRule[];
  /**
   * The local tier's index, when the local tier is the whole store (embedded
   * mode): usage is one aggregate over it instead of a listing.
   */
  index?: { usage(prefix: string, now: number, agedOut: readonly { prefix: string; writtenBefore: number }[]): { objects: number; bytes: number; storedBytes: number } };
  log?: { warn(obj: object, msg: string): void };
}

export interface ListRequest {
  prefix: string;
  limit: number;
  pageToken: string;
  delimiter: string;
  signal?: AbortSignal;
  /** While GCS is unavailable, answer with what the local tier knows (then `partial`) instead of UNAVAILABLE. */
  allowPartial?: boolean;
  /**
   * Bytes one entry adds to the response on the wire (its key or prefix, and
   * its ObjectInfo when the caller asked for it). Default: the bytes of the
   * name plus framing.
   */
  entryBytes?: (entry: ListEntry) => number;
}

/** Options of Engine.put beyond the backend's. */
export interface EnginePutOptions extends PutOptions {
  /** A stream's declared size (its header): checked against the limits before any byte. */
  declaredSize?: number;
  /**
   * A quota reservation the caller already holds for this write's bytes (an
   * upload session's, held while its bytes arrived): used instead of taking
   * one, grown if the source turns out larger, committed when the write
   * commits, and left to the caller when it fails.
   */
  reservation?: QuotaReservation;
}

export interface Engine {
  /** Writes an object. `declaredSize` (a stream's header) is checked against limits up front. */
  put(key: string, source: AsyncIterable<Uint8Array>, meta: PutMeta, opts?: EnginePutOptions): Promise<ObjectRecord>;
  /** The live object, or undefined (missing or expired). */
  get(key: string, opts?: GetOptions): Promise<{ record: ObjectRecord; body: Readable } | undefined>;
  head(key: string, opts?: { signal?: AbortSignal }): Promise<ObjectRecord | undefined>;
  delete(key: string, opts?: DeleteOptions): Promise<boolean>;
  deleteMany(keys: string[], prefix: string, signal?: AbortSignal): Promise<number>;
  /** `partial` when a backend page came from the local tier alone (allowPartial during an outage). */
  list(req: ListRequest): Promise<{ objects: ObjectRecord[]; prefixes: string[]; nextPageToken: string; partial: boolean }>;
  /** The live objects under a prefix and their bytes (usage.ts). */
  usage(req: UsageRequest): Promise<Usage>;
}

/** RESOURCE_EXHAUSTED for an object of `size` bytes over MAX_OBJECT_BYTES (`max`). */
export function objectTooLarge(size: number, max: number): StorageError {
  return new StorageError(Code.ResourceExhausted, `object of ${size} bytes exceeds the maximum object size of ${max} bytes (MAX_OBJECT_BYTES)`);
}

export function createEngine(store: Backend, opts: EngineOptions): Engine {
  const { limits, quotas } = opts;
  const rules = opts.lifecycle ?? [];
  const isLive = (record: ObjectRecord | undefined, now = Date.now()) => isLiveAt(record, now, rules);
  const covered = (key: string) => quotas?.covers(key) ?? false;

  const tooLarge = (size: number) => objectTooLarge(size, limits.maxObjectBytes);

  async function put(key: string, source: AsyncIterable<Uint8Array>, meta: PutMeta, putOpts: EnginePutOptions = {}) {
    checkKey(key);
    const { declaredSize, reservation, ...rest } = putOpts;
    if (declaredSize !== undefined && declaredSize > limits.maxObjectBytes) throw tooLarge(declaredSize);
    if (!covered(key)) return putOnce(key, source, meta, rest, declaredSize, undefined);
    return quotas!.exclusive(key, () => putOnce(key, source, meta, rest, declaredSize, reservation));
  }

  async function putOnce(
    key: string,
    source: AsyncIterable<Uint8Array>,
    meta: PutMeta,
    putOpts: PutOptions,
    declaredSize: number | undefined,
    held: QuotaReservation | undefined,
  ) {
    const isCovered = covered(key);
    // The object this write replaces frees its bytes (an expired one too: it is still counted until swept).
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
    if (putOpts.ifGenerationMatch === 0n && current && !isLive(current)) putOpts.ifGenerationMatch = current.generation;
    const oldSize = isCovered ? (current?.size ?? 0) : 0;
    const reservation = isCovered ? (held ?? (await quotas!.reserve(key, declaredSize ?? 0, oldSize))) : undefined;
    let record: ObjectRecord;
    try {
      const limited = await limitSource(source, declaredSize ?? 0, reservation?.grow);
      record = await store.put(key, limited, meta, putOpts);
    } catch (err) {
      // A reservation the caller holds stays the caller's.
      if (held === undefined) await reservation?.release();
      throw err;
    }
    // Committed: a failure to account it must not turn an acknowledged write into an error.
    await reservation?.commit(record.size, oldSize).catch((err) => opts.log?.warn({ err, key }, "quota accounting of a committed write failed"));
    return record;
  }

  /** Counts bytes as they pass: over MAX_OBJECT_BYTES, or past the quota reservation, the write fails. */
  async function limitSource(source: AsyncIterable<Uint8Array>, reserved: number, grow?: (n: number) => Promise<void>): Promise<AsyncIterable<Uint8Array>> {
    const max = limits.maxObjectBytes;
    if (source instanceof ReplayableSource) {
      // A unary body or an upload's file: check it whole and keep it replayable for the fallback.
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

  async function get(key: string, getOpts?: GetOptions) {
    checkKey(key);
    const found = await store.get(key, getOpts);
    if (found && !isLive(found.record)) {
      found.body.destroy();
      return undefined;
    }
    return found && { record: withLifecycle(found.record, rules), body: found.body };
  }

  async function head(key: string, headOpts?: { signal?: AbortSignal }) {
    checkKey(key);
    const record = isLive(await store.head(key, headOpts));
    return record && withLifecycle(record, rules);
  }

  async function del(key: string, delOpts: DeleteOptions = {}) {
    checkKey(key);
    return covered(key) ? quotas!.exclusive(key, () => delOnce(key, delOpts)) : delOnce(key, delOpts);
  }

  async function delOnce(key: string, delOpts: DeleteOptions) {
    let before: ObjectRecord | undefined;
    try {
      before = await store.head(key, delOpts);
    } catch (err) {
      // An outage: a key only GCS holds cannot be looked at, but its delete can
      // still be recorded (a tombstone the replicator replays). What it frees is unknown.
      if (!StorageError.is(err, Code.Unavailable) || delOpts.ifGenerationMatch !== undefined) throw err;
      return store.delete(key, delOpts);
    }
    if (before && !isLive(before)) {
      // Expired: already absent to callers. Remove it now, but report no delete.
      if (delOpts.ifGenerationMatch !== undefined) throw generationMismatch(key, delOpts.ifGenerationMatch, undefined);
      if (await store.delete(key, { ...delOpts, ifGenerationMatch: before.generation }).catch(() => false)) await quotas?.released(key, before.size);
      return false;
    }
    const deleted = await store.delete(key, delOpts);
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
    const budget = limits.maxListResponseBytes - LIST_RESPONSE_RESERVE_BYTES;
    const entryBytes = req.entryBytes ?? ((e: ListEntry) => Buffer.byteLength(e.record?.key ?? e.prefix!) + 3);
    const objects: ObjectRecord[] = [];
    const prefixes: string[] = [];
    const now = Date.now();
    let taken = 0;
    let used = 0;
    let partial = false;
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
        allowPartial: req.allowPartial,
      });
      if (page.partial) partial = true;
      const entries: ListEntry[] = [...page.objects.map((record) => ({ record })), ...page.prefixes.map((prefix) => ({ prefix }))];
      entries.sort((a, b) => compareKeys(a.record?.key ?? a.prefix!, b.record?.key ?? b.prefix!));
      for (const entry of entries) {
        // An expired object is absent to callers: not returned, but passed.
        const shown = entry.prefix !== undefined || isLive(entry.record, now) !== undefined;
        const bytes = shown ? entryBytes(entry) : 0;
        if (taken > 0 && used + bytes > budget) {
          return { objects, prefixes, nextPageToken: encodePageToken(req, after!), partial };
        }
        used += bytes;
        taken++;
        if (entry.prefix !== undefined) prefixes.push(entry.prefix);
        else if (shown) objects.push(withLifecycle(entry.record!, rules));
        after = resumeAfter(entry);
      }
      if (page.next === undefined) return { objects, prefixes, nextPageToken: "", partial };
      after = page.prefixes.includes(page.next) ? resumeAfter({ prefix: page.next }) : page.next;
      // A full page, or a backend page that made no progress: the caller continues.
      if (taken >= want || after === before) return { objects, prefixes, nextPageToken: encodePageToken(req, after), partial };
    }
  }

  async function usage(req: UsageRequest): Promise<Usage> {
    checkPrefix(req.prefix);
    const index = opts.index;
    return measureUsage(
      {
        list,
        index:
          index &&
          ((prefix) => {
            const now = Date.now();
            return index.usage(prefix, now, rules.map((r) => ({ prefix: r.prefix, writtenBefore: (now - r.maxAgeSeconds * 1000) * 1000 })));
          }),
      },
      req,
    );
  }

  return { put, get, head, delete: del, deleteMany, list, usage };
}
