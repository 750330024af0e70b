/**
 * The replicator drains the fallback's outbox into the primary, oldest entry
 * first, copying the stored bytes as they are (same encoding, no re-encode).
 *
 * Conflict rule (README "Replication"): the newest write wins, judged by write
 * time; a generation precondition makes the judgement race-free.
 * - put: if the primary holds a copy written after the local write was made
 *   (another daemon, or anyone, wrote it meanwhile), the primary's copy wins
 *   and the local one is dropped; otherwise the local copy is written with
 *   ifGenerationMatch = the primary generation just observed (0 = absent), so
 *   a write landing between the look and the copy makes ours fail and the
 *   entry is judged again on the next round.
 * - delete: replayed only against a primary copy older than the delete, with
 *   its generation as precondition; a newer primary copy survives.
 * - A primary copy this replicator wrote itself counts with the time of the
 *   local write it carried, not the time of the copy: otherwise a local write
 *   made while an older one was being copied would look older than the copy
 *   and be dropped.
 *
 * Every primary call goes through the circuit breaker when one is given: a
 * pass does not start while it is open, its first call after the reset
 * timeout is the breaker's trial, and success closes it again.
 */
import type { Backend, ObjectRecord, Outbox, OutboxEntry } from "../backends/backend.js";
import { Code, StorageError } from "../storage-error.js";
import type { CircuitBreaker } from "./circuit-breaker.js";

export interface ReplicatorOptions {
  /** The primary tier, raw (stored bytes, no codec). */
  primary: Backend;
  /** The fallback tier, raw, with its outbox. */
  fallback: Backend & { readonly outbox: Outbox };
  /** The primary's breaker, shared with the chain. */
  breaker?: CircuitBreaker;
  intervalMs: number;
  batchSize?: number;
  onReplicated?: (op: OutboxEntry["op"], outcome: "copied" | "superseded") => void;
  onError?: (err: unknown, entry: OutboxEntry) => void;
}

export interface Replicator {
  /** Runs one pass now (also used by tests); resolves when it is done. */
  drain(): Promise<{ replicated: number; remaining: number }>;
  /** Asks for a pass soon (after the primary came back). */
  kick(): void;
  stop(): Promise<void>;
}

const isOutage = (e: unknown) => StorageError.is(e, Code.Unavailable, Code.DeadlineExceeded);

export function startReplicator(opts: ReplicatorOptions): Replicator {
  const { primary, fallback, breaker } = opts;
  const outbox = fallback.outbox;
  let running: Promise<{ replicated: number; remaining: number }> | undefined;
  let stopped = false;
  /** Primary copies we made whose key has a newer entry waiting: generation and the time of the write they carried. */
  const ours = new Map<string, { generation: bigint; writtenAt: number }>();

  const onPrimary = <T>(fn: () => Promise<T>): Promise<T> => (breaker ? breaker.run(fn, isOutage) : fn());

  /** When the primary's copy was written, by the conflict rule's clock. */
  function writtenAt(remote: ObjectRecord): number {
    const mine = ours.get(remote.key);
    return mine !== undefined && mine.generation === remote.generation ? mine.writtenAt : remote.updatedAt;
  }

  /** "copied" or "superseded" when the entry is done; undefined when it changed under us (judged next round). */
  async function replicate(entry: OutboxEntry): Promise<"copied" | "superseded" | undefined> {
    const remote = await onPrimary(() => primary.head(entry.key));
    const remoteIsNewer = remote !== undefined && writtenAt(remote) > entry.createdAt;
    if (entry.op === "delete") {
      if (remote && !remoteIsNewer) await onPrimary(() => primary.delete(entry.key, { ifGenerationMatch: remote.generation }));
      if (!outbox.complete(entry, { dropLocalCopy: true })) return undefined;
      ours.delete(entry.key);
      return remoteIsNewer ? "superseded" : "copied";
    }
    if (remoteIsNewer) {
      if (!outbox.complete(entry, { dropLocalCopy: true })) return undefined;
      ours.delete(entry.key);
      return "superseded";
    }
    const local = await fallback.get(entry.key);
    if (!local) return undefined; // replaced by a newer entry since we listed it
    if (local.record.generation !== entry.generation) {
      local.body.destroy();
      return undefined;
    }
    let copy: ObjectRecord;
    try {
      copy = await onPrimary(() => primary.put(entry.key, local.body, metaOf(local.record), { ifGenerationMatch: remote?.generation ?? 0n }));
    } finally {
      local.body.destroy();
    }
    if (outbox.complete(entry, { dropLocalCopy: true })) {
      ours.delete(entry.key);
    } else {
      // A newer local write of this key arrived while we copied: it must not look older than our copy.
      ours.set(entry.key, { generation: copy.generation, writtenAt: entry.createdAt });
    }
    return "copied";
  }

  async function pass(): Promise<{ replicated: number; remaining: number }> {
    let replicated = 0;
    // An open breaker: the primary is known to be down; its reset timeout decides when to try again.
    if (breaker?.state === "open") return { replicated, remaining: outbox.stats().count };
    for (;;) {
      if (stopped) break;
      const batch = outbox.list(opts.batchSize ?? 64);
      if (batch.length === 0) break;
      let progressed = false;
      for (const entry of batch) {
        if (stopped) break;
        try {
          const outcome = await replicate(entry);
          if (outcome === undefined) continue;
          opts.onReplicated?.(entry.op, outcome);
          replicated++;
          progressed = true;
        } catch (err) {
          opts.onError?.(err, entry);
          // The primary is down: stop; a precondition race: judge it next round.
          if (isOutage(err)) return { replicated, remaining: outbox.stats().count };
        }
      }
      if (!progressed) break;
    }
    const remaining = outbox.stats().count;
    if (remaining === 0) ours.clear();
    return { replicated, remaining };
  }

  function drain() {
    running ??= pass().finally(() => {
      running = undefined;
    });
    return running;
  }

  /** A pass in the background: its failure (the local index closed under it) waits for the next tick. */
  const soon = () => void drain().catch(() => undefined);
  const timer = setInterval(() => {
    if (!stopped && outbox.stats().count > 0) soon();
  }, opts.intervalMs);
  timer.unref();

  return {
    drain,
    kick: soon,
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running;
    },
  };
}

function metaOf(r: ObjectRecord) {
  return {
    kind: r.kind,
    contentType: r.contentType,
    metadata: r.metadata,
    expiresAt: r.expiresAt,
    size: r.size,
    crc32c: r.crc32c,
    encoding: r.encoding,
  };
}
