/**
 * The backend contract: one tier that keeps objects (local disk, GCS) or a
 * layer that wraps one (codec, chain, cache) and is itself a Backend. It
 * imports nothing from the project but the error type.
 *
 * Rules every implementation follows (the conformance suite checks them):
 * - A miss is `undefined` / `false`, never an error.
 * - Failures are StorageError: FAILED_PRECONDITION for a generation mismatch,
 *   UNAVAILABLE when the tier cannot be reached, DATA_LOSS for a checksum
 *   mismatch, INVALID_ARGUMENT / OUT_OF_RANGE for bad ranges.
 * - A put is atomic: readers see the old object or the new one, never a mix;
 *   a put whose source errors (or whose `verify` throws, or whose signal
 *   aborts) leaves the previous version untouched and nothing behind.
 * - A whole get (no range) is checked against the stored bytes' size and
 *   CRC32C: corrupt bytes fail the body with DATA_LOSS, never end it cleanly.
 * - Generations rise on every write of a key (also across delete/re-create).
 * - list() is sorted by the UTF-8 bytes of the keys.
 * - A tier may keep tombstones of deleted keys (GCS does, so a replayed older
 *   write cannot resurrect a key deleted later by another daemon); they are
 *   invisible to get, list and head unless `tombstones: true` asks for them.
 *   A precondition `ifGenerationMatch: 0n` holds on a tombstoned key (it is
 *   absent), and so does one naming the tombstone's own generation.
 */
import type { Readable } from "node:stream";
import { invalidArgument } from "../storage-error.js";
import type { WriteOrigin } from "./write-origin.js";

export type { WriteOrigin } from "./write-origin.js";

export type DataKindName = "BYTES" | "TEXT" | "JSON";
export type TierName = "gcs" | "local";

/** A JSON value as kept in object metadata (google.protobuf.Struct). */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [k: string]: JsonValue };
export type JsonObject = { [k: string]: JsonValue };

/** How the stored bytes were transformed from the original bytes. */
export interface Encoding {
  /** "gzip" when the stored bytes are gzip-compressed. */
  compression?: "gzip";
  /** Present when the stored bytes are encrypted (see server/codec): the key's id and, from
   * format 2 on, the random id of this version that its segments are bound to. */
  encryption?: { keyId: string; objectId?: string };
}

/** What a caller says about an object when writing it. */
export interface PutMeta {
  kind: DataKindName;
  contentType: string;
  metadata: JsonObject;
  /** Unix milliseconds; the object is invisible from then on. */
  expiresAt?: number;
  /** Original size and CRC32C; set by the codec layer. A raw backend without
   * them records the stored size and CRC32C as the original ones. */
  size?: number;
  crc32c?: number;
  encoding?: Encoding;
  /** The write this version comes from; a backend stamps a new one (now, itself) when absent.
   * The chain stamps it once per write and the replicator copies it, so every copy agrees. */
  origin?: WriteOrigin;
}

/** Everything known about one stored object. */
export interface ObjectRecord {
  key: string;
  generation: bigint;
  kind: DataKindName;
  contentType: string;
  metadata: JsonObject;
  /** Original bytes. */
  size: number;
  /** CRC32C of the original bytes. */
  crc32c: number;
  /** Bytes at rest. */
  storedSize: number;
  /** CRC32C of the bytes at rest, as the tier knows it (and checks whole reads against); absent when it keeps none. */
  storedCrc32c?: number;
  encoding: Encoding;
  /** Unix milliseconds. */
  createdAt: number;
  updatedAt: number;
  expiresAt?: number;
  /** The tier holding this copy. */
  tier: TierName;
  /** True while this copy waits in the outbox for the primary tier. */
  pendingReplication: boolean;
  /** The write this version comes from (the conflict rule compares these). */
  origin: WriteOrigin;
  /** Only on records asked for with `tombstones: true`: the key was deleted by the write `origin`. */
  deleted?: true;
  /**
   * A disk-cache copy of a primary (GCS) object, served while the primary is
   * unavailable: `tier` is then "local", and the copy may be older than the
   * primary's if another daemon wrote the key meanwhile.
   */
  cachedCopy?: true;
}

export interface HeadOptions {
  signal?: AbortSignal;
  /** Also return a tombstone (a record with `deleted: true`) where a tier keeps one for a deleted key. */
  tombstones?: boolean;
}

export interface PutOptions {
  /** Commit only if the current generation equals this; 0n = only if absent. */
  ifGenerationMatch?: bigint;
  signal?: AbortSignal;
  /** Called once the source has ended, with what was received, before the
   * commit; throwing aborts the put (trailer and declared-size checks). */
  verify?: (received: { size: number; crc32c: number }) => void;
  /** Record an outbox entry in the same transaction (backends with `outbox`). */
  pending?: boolean;
}

export interface GetOptions {
  /** A byte range of the stored bytes; length undefined = to the end. */
  range?: { offset: number; length?: number };
  ifGenerationMatch?: bigint;
  signal?: AbortSignal;
  /**
   * The record a head of this same backend returned just before, of the
   * generation `ifGenerationMatch` pins (the codec's ranged reads pass
   * theirs): a layer that would look the object up again before reading it
   * may take this as the current answer instead, so the read is as of that
   * head. Ignored without a matching ifGenerationMatch.
   */
  confirmed?: ObjectRecord;
}

export interface DeleteOptions {
  ifGenerationMatch?: bigint;
  signal?: AbortSignal;
  /** The delete this is (the replicator replays one); a backend stamps a new one when absent. */
  origin?: WriteOrigin;
  /** Record an outbox entry (a tombstone) in the same transaction, even when
   * the key is absent here (backends with `outbox`). */
  pending?: boolean;
}

export interface ListOptions {
  prefix?: string;
  /** Exclusive lower bound: only keys (and rolled-up prefixes) after this. */
  startAfter?: string;
  /** At most this many keys plus prefixes. */
  limit: number;
  delimiter?: string;
  signal?: AbortSignal;
  /** While the primary tier is unavailable, list what the local tier knows (marked `partial`) instead of failing UNAVAILABLE. */
  allowPartial?: boolean;
}

export interface ListPage {
  /** Sorted by UTF-8 bytes. */
  objects: ObjectRecord[];
  /** Rolled-up prefixes (with delimiter), sorted. */
  prefixes: string[];
  /** Pass as startAfter for the next page; undefined on the last page. */
  next?: string;
  /** The primary tier was unavailable (and `allowPartial` asked for this): keys only it holds are missing. */
  partial?: true;
}

/** One pending change for the primary tier. At most one per key: a newer
 * change of the same key replaces the older entry and takes a new seq. */
export interface OutboxEntry {
  seq: number;
  key: string;
  op: "put" | "delete";
  /** The local generation the entry was recorded for. */
  generation: bigint;
  /** Unix milliseconds. */
  createdAt: number;
  /** The write or delete the entry replays. */
  origin: WriteOrigin;
}

/** The outbox of a fallback tier: changes waiting for the primary. */
export interface Outbox {
  /** The pending entry of a key, if any. */
  get(key: string): OutboxEntry | undefined;
  /** Oldest first. */
  list(limit: number): OutboxEntry[];
  /** Removes the entry if it is still the one given (same seq); for a put,
   * also drops the local copy when `dropLocalCopy`. Returns false when a newer
   * entry replaced it meanwhile. */
  complete(entry: OutboxEntry, opts?: { dropLocalCopy?: boolean }): boolean;
  stats(): { count: number; oldestCreatedAt?: number };
}

export interface Backend {
  readonly name: string;
  /** Writes `source` under `key` atomically and returns the new record. */
  put(key: string, source: AsyncIterable<Uint8Array>, meta: PutMeta, opts?: PutOptions): Promise<ObjectRecord>;
  /** The record and a stream of the stored bytes (or of the range), or undefined. */
  get(key: string, opts?: GetOptions): Promise<{ record: ObjectRecord; body: Readable } | undefined>;
  head(key: string, opts?: HeadOptions): Promise<ObjectRecord | undefined>;
  /** True when something was deleted. */
  delete(key: string, opts?: DeleteOptions): Promise<boolean>;
  list(opts: ListOptions): Promise<ListPage>;
  /** Resolves when the tier can take a write now; throws UNAVAILABLE otherwise. */
  probe(signal?: AbortSignal): Promise<void>;
  close(): Promise<void>;
  /** Present on a tier that can hold writes for another (the local fallback). */
  readonly outbox?: Outbox;
}

/** INVALID_ARGUMENT unless `range` has a non-negative safe-integer offset and, when given, length. */
export function checkRange(range: { offset: number; length?: number }): void {
  if (!Number.isSafeInteger(range.offset) || range.offset < 0) {
    throw invalidArgument(`range offset must be a non-negative integer, got ${range.offset}`);
  }
  if (range.length !== undefined && (!Number.isSafeInteger(range.length) || range.length < 0)) {
    throw invalidArgument(`range length must be a non-negative integer, got ${range.length}`);
  }
}

/** Compares keys by their UTF-8 bytes, the order GCS and SQLite use. */
export function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
}

/**
 * A source of known length that can be read again from its start, each
 * iteration yielding the same bytes: a layer may replay it on another tier
 * after a failed attempt (the chain does, on the fallback), and limits can be
 * checked on its length before any byte is read.
 */
export abstract class ReplayableSource implements AsyncIterable<Uint8Array> {
  abstract readonly byteLength: number;
  abstract [Symbol.asyncIterator](): AsyncIterator<Uint8Array>;
}

/**
 * A replayable source whose bytes are exactly the first `byteLength` bytes
 * of a local file that is never written below that length again (a completed
 * upload session's). A tier on the same disk may keep that file itself (a
 * hard link) instead of a copy, once it has read the bytes through, so every
 * layer's check (kind, size, CRC32C, verify) still sees them; a layer that
 * would store other bytes (compressed, encrypted) passes something else down.
 */
export abstract class FileBackedSource extends ReplayableSource {
  abstract readonly file: string;
}

/** A source held in memory (a unary body): it can be read more than once, so
 * a layer may replay it on another tier after a failed attempt. */
export class BufferedSource extends ReplayableSource {
  constructor(readonly chunks: readonly Uint8Array[]) {
    super();
  }

  get byteLength(): number {
    return this.chunks.reduce((n, c) => n + c.byteLength, 0);
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    yield* this.chunks;
  }
}
