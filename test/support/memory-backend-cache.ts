/**
 * A small Map-based Backend for the cache tests. Several backends can share
 * one MapBucket, like daemons sharing one GCS bucket. Test-only: it holds
 * whole objects in memory.
 */
import { Readable } from "node:stream";
import { compareKeys, type Backend, type ObjectRecord } from "../../server/backends/backend.js";
import { Code, StorageError, generationMismatch } from "../../server/storage-error.js";
import { crc32c } from "@node-rs/crc32";

/** The shared state: objects by key and the generation counter. */
export interface MapBucket {
  objects: Map<string, { record: ObjectRecord; bytes: Buffer }>;
  generation: bigint;
}

/** An empty bucket. */
export function createMapBucket(): MapBucket {
  return { objects: new Map(), generation: 0n };
}

/** A Backend over `bucket`; `calls` counts inner gets (to see what the cache answered). */
export function createMapBackend(bucket: MapBucket = createMapBucket()): Backend & { calls: { get: number } } {
  const calls = { get: 0 };
  const live = (key: string) => {
    const found = bucket.objects.get(key);
    if (found?.record.expiresAt !== undefined && found.record.expiresAt <= Date.now()) return undefined;
    return found;
  };
  const check = (key: string, expected: bigint | undefined) => {
    if (expected === undefined) return;
    const actual = live(key)?.record.generation;
    if ((expected === 0n && actual !== undefined) || (expected !== 0n && actual !== expected)) {
      throw generationMismatch(key, expected, actual);
    }
  };
  return {
    name: "map",
    calls,
    async put(key, source, meta, opts = {}) {
      const chunks: Buffer[] = [];
      for await (const chunk of source) chunks.push(Buffer.from(chunk));
      const bytes = Buffer.concat(chunks);
      const crc = crc32c(bytes);
      opts.verify?.({ size: bytes.length, crc32c: crc });
      check(key, opts.ifGenerationMatch);
      const now = Date.now();
      const record: ObjectRecord = {
        key,
        generation: ++bucket.generation,
        kind: meta.kind,
        contentType: meta.contentType,
        metadata: meta.metadata,
        size: meta.size ?? bytes.length,
        crc32c: meta.crc32c ?? crc,
        storedSize: bytes.length,
        encoding: meta.encoding ?? {},
        createdAt: now,
        updatedAt: now,
        expiresAt: meta.expiresAt,
        tier: "local",
        pendingReplication: false,
      };
      bucket.objects.set(key, { record, bytes });
      return { ...record };
    },
    async get(key, opts = {}) {
      calls.get++;
      const found = live(key);
      if (!found) return undefined;
      check(key, opts.ifGenerationMatch);
      const offset = opts.range?.offset ?? 0;
      if (offset > found.bytes.length) throw new StorageError(Code.OutOfRange, "offset past the end");
      const end = opts.range?.length === undefined ? undefined : offset + opts.range.length;
      return { record: { ...found.record }, body: Readable.from([found.bytes.subarray(offset, end)], { objectMode: false }) };
    },
    async head(key) {
      const found = live(key);
      return found && { ...found.record };
    },
    async delete(key, opts = {}) {
      check(key, opts.ifGenerationMatch);
      return bucket.objects.delete(key);
    },
    async list(opts) {
      const keys = [...bucket.objects.keys()]
        .filter((k) => k.startsWith(opts.prefix ?? "") && (opts.startAfter === undefined || compareKeys(k, opts.startAfter) > 0))
        .sort(compareKeys);
      const page = keys.slice(0, opts.limit);
      return {
        objects: page.map((k) => ({ ...bucket.objects.get(k)!.record })),
        prefixes: [],
        next: keys.length > page.length ? page[page.length - 1] : undefined,
      };
    },
    async probe() {},
    async close() {},
  };
}
