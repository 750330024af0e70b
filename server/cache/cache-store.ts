/**
 * What the cache layer keeps per key and the small store interface behind
 * it (in-memory LRU or shared Redis), plus the record <-> JSON codec both
 * stores use (the generation is a bigint, so it travels as a decimal string).
 */
import type { ObjectRecord } from "../backends/backend.js";

/** One cached object: its record and the bytes its inner `get` returned. */
export interface CachedObject {
  record: ObjectRecord;
  bytes: Buffer;
}

/** Where cached objects live. Misses and store failures on reads are `undefined`. */
export interface CacheStore {
  get(key: string): Promise<CachedObject | undefined>;
  /** Keeps `entry` for at most `ttlMs`, unless the store knows of a write of
   * `key` newer than `entry` (shared stores: the floor generation). Best effort:
   * a full or failing store simply does not keep it. */
  set(key: string, entry: CachedObject, ttlMs: number): Promise<void>;
  /** After a committed write of `generation` (or a delete / a write of unknown
   * outcome: `undefined`): drops the entry and refuses older fills. Throws
   * UNAVAILABLE when a shared store cannot be told. */
  invalidate(key: string, generation: bigint | undefined): Promise<void>;
  /** Entries and bytes this process holds (see each store for what counts). */
  stats(): { entries: number; bytes: number };
  close(): Promise<void>;
}

/** The record as JSON text, generation as a decimal string. */
export function recordToJson(record: ObjectRecord): string {
  return JSON.stringify({ ...record, generation: record.generation.toString() });
}

/** The inverse of recordToJson. */
export function recordFromJson(text: string): ObjectRecord {
  const parsed = JSON.parse(text) as Omit<ObjectRecord, "generation"> & { generation: string };
  return { ...parsed, generation: BigInt(parsed.generation) };
}

/** What an entry costs in memory: its bytes plus an estimate of the record
 * (its JSON size, doubled for JS object overhead) and the key. */
export function entryCost(key: string, entry: CachedObject): number {
  return entry.bytes.length + 2 * Buffer.byteLength(recordToJson(entry.record)) + 2 * key.length + 64;
}
