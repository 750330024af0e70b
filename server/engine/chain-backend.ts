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
 * - While the primary is unavailable, a key the fallback does not hold is
 *   served from `cachedCopies` (the disk cache's copies of primary objects,
 *   records marked cachedCopy) when it holds one; otherwise UNAVAILABLE.
 * - A pending copy that fails its checksum (DATA_LOSS) is handed to
 *   `repairLocalCopy`, which retires it when the primary holds the same
 *   write intact: a read that failed before its first byte (small objects,
 *   checked whole) is then served by the primary at once; one that failed
 *   at the end of its bytes has answered DATA_LOSS, and the next read is
 *   the primary's.
 * - Listing merges the primary with the fallback's pending changes; it needs
 *   the primary (a partial list would look complete), so it is UNAVAILABLE
 *   while the primary is, unless the caller allows a partial listing: then
 *   the fallback's pending changes over the cached copies, marked partial.
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
  /** Copies of primary objects kept locally (the disk cache, through its codec), read only while the primary is unavailable. */
  cachedCopies?: Backend;
  /**
   * Called when the fallback's copy of a pending key failed its checksum:
   * resolves true when it retired that copy because the primary holds the
   * same write intact (so the primary serves the key now).
   */
  repairLocalCopy?: (key: string) => Promise<boolean>;
}

const isUnavailable = (e: unknown) => StorageError.is(e, Code.Unavailable, Code.DeadlineExceeded);

export function createChainBackend(opts: ChainOptions): Backend & { readonly outbox: Outbox } {
  const { primary, fallback, breaker, cachedCopies } = opts;
  const outbox = fallback.outbox;

  /** Runs a primary call through the breaker; only unavailability trips it. */
  const onPrimary = <T>(fn: () => Promise<T>): Promise<T> => breaker.run(fn, isUnavailable);

  const noTier = (what: string, cause: unknown) =>
    unavailable(`${what}: the primary storage tier is unavailable and the local tier cannot serve it`, cause);

  async function readThrough<T>(
    key: string,
    what: string,
    fromPrimary: () => Promise<T | undefined>,
    fromFallback: () => Promise<T | undefined>,
    fromCached?: () => Promise<T | undefined>,
  ): Promise<T | undefined> {
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
      if (!isUnavailable(err)) throw err;
      if (opts.fallbackEnabled) {
        // Only pending keys are kept locally, so a miss here means "unknown", not "absent".
        const local = await fromFallback();
        if (local !== undefined) return local;
      }
      const cached = await fromCached?.();
      if (cached !== undefined) return cached;
      if (!opts.fallbackEnabled && !fromCached) throw err;
      throw noTier(`${what} of key "${key}"`, err);
    }
  }

  async function get(key: string, getOpts?: GetOptions) {
    const read = () =>
      readThrough(
        key,
        "a read",
        () => primary.get(key, getOpts),
        () => fallback.get(key, getOpts),
        cachedCopies && (() => cachedCopies.get(key, getOpts)),
      );
    const pending = outbox.get(key);
    let found: Awaited<ReturnType<Backend["get"]>>;
    try {
      found = await read();
    } catch (err) {
      // Checked whole before its first byte: when the primary holds the same write, it serves it now.
      if (pending && StorageError.is(err, Code.DataLoss) && (await repair(key))) return read();
      throw err;
    }
    if (found && pending && found.record.tier === "local" && opts.repairLocalCopy) {
      // Checked at its end: this read fails DATA_LOSS, and the repair lets the next one be the primary's.
      found.body.once("error", (err) => {
        if (StorageError.is(err, Code.DataLoss)) void repair(key);
      });
    }
    return found;
  }

  const repair = (key: string): Promise<boolean> => opts.repairLocalCopy?.(key).catch(() => false) ?? Promise.resolve(false);

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
    let page: ListPage;
    try {
      page = await onPrimary(() => primary.list(listOpts));
    } catch (err) {
      if (!isUnavailable(err)) throw err;
      if (!listOpts.allowPartial) throw noTier("listing", err);
      // What this daemon knows: its pending changes over the copies it cached.
      const none: ListPage = { objects: [], prefixes: [] };
      const cached = cachedCopies ? await cachedCopies.list(listOpts) : none;
      const local = opts.fallbackEnabled ? await fallback.list(listOpts) : none;
      return { ...mergePages(cached, local, listOpts.limit, (key) => outbox.get(key)), partial: true };
    }
    if (outbox.stats().count === 0) return page;
    const local = await fallback.list(listOpts);
    return mergePages(page, local, listOpts.limit, (key) => outbox.get(key));
  }

  return {
    name: `chain(${primary.name}, ${fallback.name})`,
    outbox,
    put,
    get,
    head: (key: string, headOpts?: { signal?: AbortSignal }) =>
      readThrough(
        key,
        "a read",
        () => primary.head(key, headOpts),
        () => fallback.head(key, headOpts),
        cachedCopies && (() => cachedCopies.head(key, headOpts)),
      ),
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
