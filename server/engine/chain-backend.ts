/**
 * The chain of tiers (DESIGN.md "The engine"): a primary (GCS) and a fallback
 * (local disk with an outbox). It is itself a Backend.
 *
 * - Writes go to the primary; when it is unavailable (or its breaker is open)
 *   and fallback is enabled, they land on the fallback with an outbox entry in
 *   the same local transaction. A streamed source that the primary already
 *   began to consume cannot be replayed, so such a write fails UNAVAILABLE
 *   (the caller retries and then meets the open breaker); a replayable
 *   source (a unary body, a completed upload's file) is replayed on the fallback.
 * - Reads of a key with a pending outbox entry are served by the fallback even
 *   while the primary is up (it holds the newest copy); otherwise the primary,
 *   then the fallback when the primary is unavailable. A key the primary alone
 *   holds cannot be read while it is down: UNAVAILABLE, never a false miss.
 * - A write to a key with a pending entry while the primary is up goes to the
 *   primary, guarded on the primary's copy, and retires the entry; if the
 *   replicator copied the entry meanwhile, the write is judged again.
 * - Deletes while the primary is unavailable, or of a key with a pending
 *   entry, are recorded as outbox tombstones and replayed by the replicator.
 * - Every write and delete gets its origin (write-origin.ts) here, once: the
 *   same origin goes to whichever tier takes it and travels with every copy,
 *   so the replicator's conflict rule compares writes, not copies.
 * - Listing merges the primary with the fallback's pending changes; it needs
 *   the primary (a partial list would look complete), so it is UNAVAILABLE
 *   while the primary is.
 */
import {
  ReplayableSource,
  compareKeys,
  type Backend,
  type DeleteOptions,
  type GetOptions,
  type ListOptions,
  type ListPage,
  type ObjectRecord,
  type Outbox,
  type PutMeta,
  type PutOptions,
} from "../backends/backend.js";
import { newOrigin } from "../backends/write-origin.js";
import { Code, StorageError, generationMismatch, unavailable } from "../storage-error.js";
import type { CircuitBreaker } from "./circuit-breaker.js";

export interface ChainOptions {
  primary: Backend;
  /** The local tier; must have an outbox. */
  fallback: Backend & { readonly outbox: Outbox };
  breaker: CircuitBreaker;
  fallbackEnabled: boolean;
  /** This daemon's writer id, stamped on the origin of every write and delete. */
  writer: string;
  /** Called after a write or delete landed on the fallback instead of the primary. */
  onFallback?: (op: "put" | "delete") => void;
  /** Called when a write on the primary superseded a pending local copy. */
  onSuperseded?: () => void;
}

const isUnavailable = (e: unknown) => StorageError.is(e, Code.Unavailable, Code.DeadlineExceeded);

export function createChainBackend(opts: ChainOptions): Backend & { readonly outbox: Outbox } {
  const { primary, fallback, breaker } = opts;
  const outbox = fallback.outbox;

  /** Runs a primary call through the breaker; only unavailability trips it. */
  const onPrimary = <T>(fn: () => Promise<T>): Promise<T> => breaker.run(fn, isUnavailable);

  const noTier = (what: string, cause: unknown) =>
    unavailable(`${what}: the primary storage tier is unavailable and the local tier cannot serve it`, cause);

  async function readThrough<T>(key: string, what: string, fromPrimary: () => Promise<T | undefined>, fromFallback: () => Promise<T | undefined>): Promise<T | undefined> {
    const pending = outbox.get(key);
    if (pending) {
      const local = await fromFallback();
      // A miss is the answer (a tombstone) unless the replicator completed the
      // entry meanwhile and dropped the local copy: then the primary has it.
      if (local !== undefined || outbox.get(key)?.seq === pending.seq) return local;
    }
    try {
      return await onPrimary(fromPrimary);
    } catch (err) {
      if (!isUnavailable(err) || !opts.fallbackEnabled) throw err;
      // Only pending keys are kept locally, so a miss here means "unknown", not "absent".
      const local = await fromFallback();
      if (local === undefined) throw noTier(`${what} of key "${key}"`, err);
      return local;
    }
  }

  async function put(key: string, source: AsyncIterable<Uint8Array>, givenMeta: PutMeta, putOpts: PutOptions = {}): Promise<ObjectRecord> {
    // One origin for the write, whichever tier takes it (a retry of the same write keeps it).
    const meta = givenMeta.origin ? givenMeta : { ...givenMeta, origin: newOrigin(opts.writer) };
    for (let attempt = 1; ; attempt++) {
      try {
        return await putOnce(key, source, meta, putOpts);
      } catch (err) {
        if (!(err instanceof PendingRace) || attempt >= PENDING_RACE_ATTEMPTS) throw err instanceof PendingRace ? err.cause : err;
      }
    }
  }

  async function putOnce(key: string, source: AsyncIterable<Uint8Array>, meta: PutMeta, putOpts: PutOptions): Promise<ObjectRecord> {
    const pending = outbox.get(key);
    if (pending && putOpts.ifGenerationMatch !== undefined) {
      // The local copy is the newest one; the caller's precondition speaks of it.
      const local = await fallback.head(key, putOpts);
      const actual = local?.generation;
      if ((actual ?? 0n) !== putOpts.ifGenerationMatch) throw generationMismatch(key, putOpts.ifGenerationMatch, actual);
    }
    let consumed = false;
    const tracked: AsyncIterable<Uint8Array> = {
      [Symbol.asyncIterator]() {
        consumed = true;
        return source[Symbol.asyncIterator]();
      },
    };
    try {
      const record = await onPrimary(async () => {
        let primaryOpts = putOpts;
        if (pending) {
          // The primary still holds the pre-outage copy (or none): guard on it.
          const current = await primary.head(key, putOpts);
          primaryOpts = { ...putOpts, ifGenerationMatch: current?.generation ?? 0n };
        }
        return primary.put(key, tracked, meta, primaryOpts);
      });
      if (pending) {
        // The new primary copy supersedes the local one; drop it so reads move on.
        if (outbox.complete(pending, { dropLocalCopy: true })) opts.onSuperseded?.();
      }
      return record;
    } catch (err) {
      const replayable = source instanceof ReplayableSource || !consumed;
      const raced = putOpts.ifGenerationMatch === undefined || outbox.get(key)?.seq !== pending?.seq;
      if (pending && replayable && raced && StorageError.is(err, Code.FailedPrecondition, Code.Aborted)) {
        // The primary copy we guarded on changed under us (the replicator
        // copied the pending entry, or another writer): judge the write again.
        throw new PendingRace(err);
      }
      if (!isUnavailable(err) || !opts.fallbackEnabled) throw err;
      if (!replayable) throw unavailable("the primary storage tier failed during the upload; retry it", err);
      if (putOpts.ifGenerationMatch !== undefined && !pending) {
        // Without the primary we cannot know the current generation.
        throw noTier(`a write with if_generation_match to key "${key}"`, err);
      }
      const record = await fallback.put(key, source, meta, { ...putOpts, pending: true });
      opts.onFallback?.("put");
      return record;
    }
  }

  async function del(key: string, givenOpts: DeleteOptions = {}): Promise<boolean> {
    const delOpts = givenOpts.origin ? givenOpts : { ...givenOpts, origin: newOrigin(opts.writer) };
    const pending = outbox.get(key);
    if (pending) {
      // A pending local change is the newest state: record the delete after it.
      const existed = await fallback.delete(key, { ...delOpts, pending: true });
      opts.onFallback?.("delete");
      return existed;
    }
    try {
      return await onPrimary(() => primary.delete(key, delOpts));
    } catch (err) {
      if (!isUnavailable(err) || !opts.fallbackEnabled) throw err;
      if (delOpts.ifGenerationMatch !== undefined) throw noTier(`a delete with if_generation_match of key "${key}"`, err);
      // Whether the primary had it is unknown; the tombstone replays either way.
      await fallback.delete(key, { ...delOpts, pending: true });
      opts.onFallback?.("delete");
      return true;
    }
  }

  async function list(listOpts: ListOptions): Promise<ListPage> {
    const page = await onPrimary(() => primary.list(listOpts)).catch((err) => {
      if (isUnavailable(err)) throw noTier("listing", err);
      throw err;
    });
    if (outbox.stats().count === 0) return page;
    const local = await fallback.list(listOpts);
    return mergePages(page, local, listOpts.limit, (key) => outbox.get(key));
  }

  return {
    name: `chain(${primary.name}, ${fallback.name})`,
    outbox,
    put,
    get: (key: string, getOpts?: GetOptions) =>
      readThrough(key, "a read", () => primary.get(key, getOpts), () => fallback.get(key, getOpts)),
    head: (key: string, headOpts?: { signal?: AbortSignal }) =>
      readThrough(key, "a read", () => primary.head(key, headOpts), () => fallback.head(key, headOpts)),
    delete: del,
    list,
    async probe(signal?: AbortSignal) {
      try {
        await onPrimary(() => primary.probe(signal));
      } catch (err) {
        // The daemon's own check of the whole tier: its failure is an outage for everyone.
        if (isUnavailable(err) && breaker.state === "closed") breaker.trip();
        if (!opts.fallbackEnabled) throw err;
        await fallback.probe(signal);
      }
    },
    async close() {
      await primary.close();
      await fallback.close();
    },
  };
}

/** A write guarded on the primary copy lost a race with the replicator; `cause` is what the primary said. */
class PendingRace extends Error {
  constructor(override readonly cause: unknown) {
    super("the pending entry changed during the write");
  }
}

const PENDING_RACE_ATTEMPTS = 3;

/**
 * Merges a primary page with the fallback's page of the same request: keys
 * with a pending entry take the fallback's state (its record, or absence for a
 * tombstone). Both pages start after the same key, so the merged page is the
 * first `limit` names of their union; `next` resumes after the last one.
 */
export function mergePages(
  primary: ListPage,
  local: ListPage,
  limit: number,
  pendingOf: (key: string) => { op: "put" | "delete" } | undefined,
): ListPage {
  type Item = { name: string; record?: ObjectRecord };
  const items = new Map<string, Item>();
  for (const p of primary.prefixes) items.set(p, { name: p });
  for (const r of primary.objects) if (!pendingOf(r.key)) items.set(r.key, { name: r.key, record: r });
  for (const p of local.prefixes) items.set(p, { name: p });
  for (const r of local.objects) if (pendingOf(r.key)?.op === "put") items.set(r.key, { name: r.key, record: r });
  const sorted = [...items.values()].sort((a, b) => compareKeys(a.name, b.name));
  // A side that stopped early bounds what we may show: past its last name it
  // may hold more that we have not seen.
  let bound: string | undefined;
  for (const side of [primary, local]) {
    if (side.next !== undefined && (bound === undefined || compareKeys(side.next, bound) < 0)) bound = side.next;
  }
  const visible = bound === undefined ? sorted : sorted.filter((i) => compareKeys(i.name, bound!) <= 0);
  const taken = visible.slice(0, limit);
  const more = visible.length > taken.length || bound !== undefined;
  return {
    objects: taken.filter((i) => i.record).map((i) => i.record!),
    prefixes: taken.filter((i) => !i.record).map((i) => i.name),
    next: more && taken.length > 0 ? taken[taken.length - 1]!.name : more ? bound : undefined,
  };
}
