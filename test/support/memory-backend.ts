/**
 * A Map-based Backend for the layer tests (codec, cache): the Backend
 * contract (generations, preconditions, ranges of the stored bytes, sorted
 * listing) over whole objects in memory, plus hooks to look at and damage the
 * stored bytes. Several backends may share one MemoryBucket, like daemons
 * sharing one GCS bucket. Test-only: it holds every object in memory.
 */
import { newOrigin } from "../../server/backends/write-origin.js";
import { crc32c } from "@node-rs/crc32";
import { Readable } from "node:stream";
import { compareKeys, type Backend, type ObjectRecord } from "../../server/backends/backend.js";
import { Code, StorageError, generationMismatch, invalidArgument } from "../../server/storage-error.js";

/** The shared state: objects by key and the generation counter. */
export interface MemoryBucket {
  objects: Map<string, { record: ObjectRecord; bytes: Buffer; /** CRC32C of `bytes` when they were put (a later change to them is corruption). */ storedCrc32c?: number }>;
  generation: bigint;
}

/** An empty bucket. */
export function createMemoryBucket(): MemoryBucket {
  return { objects: new Map(), generation: 0n };
}

export interface MemoryBackend extends Backend {
  /** How many get() calls reached this backend (to see what a cache answered). */
  readonly calls: { get: number };
  /** The stored bytes of `key` (a live view: changing it changes the object). */
  stored(key: string): Buffer | undefined;
  /** Replaces the stored bytes of `key`, keeping its record and updating the tier's own checksum (deliberate tampering the codec must catch). */
  replaceStored(key: string, bytes: Buffer): void;
  /** Bodies handed out by get() that were destroyed or ended (to check readers release them). */
  readonly closedBodies: number;
  readonly openedBodies: number;
  /** Bytes that get() bodies have produced so far. */
  readonly servedBytes: number;
}

/** Bodies are served in slices of this many bytes, like a network stream. */
const BODY_CHUNK_BYTES = 48 * 1024 + 7;

export function createMemoryBackend(bucket: MemoryBucket = createMemoryBucket()): MemoryBackend {
  const objects = bucket.objects;
  const calls = { get: 0 };
  let openedBodies = 0;
  let closedBodies = 0;
  let servedBytes = 0;

  const check = (key: string, expected: bigint | undefined) => {
    if (expected === undefined) return;
    const actual = objects.get(key)?.record.generation;
    if ((expected === 0n && actual !== undefined) || (expected !== 0n && actual !== expected)) {
      throw generationMismatch(key, expected, actual);
    }
  };

  /** The bytes as a body; with `expectedCrc` (a whole read) it fails DATA_LOSS at its end when they do not match, as the fs tier's does. */
  function body(bytes: Buffer, expectedCrc?: number): Readable {
    async function* slices() {
      for (let at = 0; at < bytes.length; at += BODY_CHUNK_BYTES) {
        servedBytes += Math.min(BODY_CHUNK_BYTES, bytes.length - at);
        yield Buffer.from(bytes.subarray(at, Math.min(at + BODY_CHUNK_BYTES, bytes.length)));
      }
      if (expectedCrc !== undefined && crc32c(bytes) !== expectedCrc) throw new StorageError(Code.DataLoss, "the stored object is corrupt: its checksum does not match");
    }
    openedBodies++;
    const stream = Readable.from(slices(), { objectMode: false });
    stream.once("close", () => closedBodies++);
    return stream;
  }

  return {
    name: "memory",
    calls,
    get openedBodies() {
      return openedBodies;
    },
    get closedBodies() {
      return closedBodies;
    },
    get servedBytes() {
      return servedBytes;
    },
    stored: (key) => objects.get(key)?.bytes,
    replaceStored(key, bytes) {
      const found = objects.get(key);
      if (found === undefined) throw new Error(`no object ${key}`);
      // Someone who rewrites the stored bytes keeps the tier's own checksum consistent
      // (the codec must catch it); a byte changed in place (stored(key)[i] = ...) is rot the tier catches.
      found.bytes = bytes;
      found.storedCrc32c = crc32c(bytes);
      found.record.storedCrc32c = found.storedCrc32c;
    },

    async put(key, source, meta, opts = {}) {
      const chunks: Buffer[] = [];
      for await (const chunk of source) {
        if (opts.signal?.aborted) throw new StorageError(Code.Cancelled, "put aborted");
        chunks.push(Buffer.from(chunk));
      }
      const bytes = Buffer.concat(chunks);
      const crc = crc32c(bytes);
      opts.verify?.({ size: bytes.length, crc32c: crc });
      check(key, opts.ifGenerationMatch);
      const now = Date.now();
      // Read after the source ended: the codec sets them while it streams.
      const record: ObjectRecord = {
        key,
        generation: ++bucket.generation,
        kind: meta.kind,
        contentType: meta.contentType,
        metadata: meta.metadata,
        size: meta.size ?? bytes.length,
        crc32c: meta.crc32c ?? crc,
        storedSize: bytes.length,
        storedCrc32c: crc,
        encoding: meta.encoding ?? {},
        createdAt: now,
        updatedAt: now,
        expiresAt: meta.expiresAt,
        tier: "local",
        pendingReplication: false,
        origin: meta.origin ?? newOrigin("memory"),
      };
      objects.set(key, { record, bytes, storedCrc32c: crc });
      return { ...record };
    },

    async get(key, opts = {}) {
      calls.get++;
      const found = objects.get(key);
      if (found === undefined) return undefined;
      check(key, opts.ifGenerationMatch);
      const offset = opts.range?.offset ?? 0;
      const length = opts.range?.length;
      if (offset < 0 || (length !== undefined && length < 0)) throw invalidArgument("bad range");
      if (offset > found.bytes.length) throw new StorageError(Code.OutOfRange, "offset past the end");
      const end = length === undefined ? undefined : offset + length;
      // Like every tier, a whole read is checked against the stored bytes' CRC32C (DATA_LOSS otherwise).
      const whole = offset === 0 && (end === undefined || end >= found.bytes.length);
      return { record: { ...found.record }, body: body(found.bytes.subarray(offset, end), whole ? found.storedCrc32c : undefined) };
    },

    async head(key) {
      const found = objects.get(key);
      return found && { ...found.record };
    },

    async delete(key, opts = {}) {
      check(key, opts.ifGenerationMatch);
      return objects.delete(key);
    },

    async list(opts) {
      const prefix = opts.prefix ?? "";
      const entries: { key: string; prefix?: string }[] = [];
      const keys = [...objects.keys()].filter((k) => k.startsWith(prefix)).sort(compareKeys);
      for (const key of keys) {
        const cut = opts.delimiter ? key.indexOf(opts.delimiter, prefix.length) : -1;
        const rolled = cut >= 0 ? key.slice(0, cut + opts.delimiter!.length) : undefined;
        const name = rolled ?? key;
        if (opts.startAfter !== undefined && compareKeys(name, opts.startAfter) <= 0) continue;
        if (entries.at(-1)?.key === name) continue;
        entries.push({ key: name, prefix: rolled });
      }
      const page = entries.slice(0, opts.limit);
      return {
        objects: page.filter((e) => e.prefix === undefined).map((e) => ({ ...objects.get(e.key)!.record })),
        prefixes: page.filter((e) => e.prefix !== undefined).map((e) => e.key),
        next: entries.length > page.length ? page.at(-1)!.key : undefined,
      };
    },

    async probe() {},
    async close() {},
  };
}
