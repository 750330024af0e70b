/**
 * The replicator drains the fallback's outbox into the primary, oldest entry
 * first, copying the stored bytes as they are (same encoding, no re-encode).
 *
 * Conflict rule (README "Replication"): the newest write wins, where "newest"
 * compares the origins of the writes (write-origin.ts: the writer's clock in
 * microseconds, ties broken by writer id), never the times copies were made.
 * Every copy carries its write's origin (GCS custom metadata, the local row,
 * the outbox entry), so the rule gives the same answer on every daemon and
 * after any restart. Deletes are writes too: GCS keeps a tombstone with the
 * delete's origin, so an older write replayed later cannot resurrect the key.
 * - put: if the primary holds a version or tombstone from a newer write, the
 *   local copy is dropped; if it holds this very write (copied before a
 *   crash), the entry is done; otherwise the local copy is written with
 *   ifGenerationMatch = the primary generation just observed (0 = nothing
 *   there), so a write landing between the look and the copy makes ours fail
 *   and the entry is judged again on the next round.
 * - delete: the same judgement, then a tombstone with the delete's origin is
 *   written over what the primary holds (guarded the same way).
 *
 * - A put the primary already holds (same origin: copied before a crash) is
 *   done only when `checkPrimaryCopy` finds the primary's bytes intact;
 *   otherwise the local copy is written over them (a repair), guarded on
 *   their generation, before the entry is done.
 *
 * Every primary call goes through the circuit breaker when one is given: a
 * pass does not start while it is open, its first call after the reset
 * timeout is the breaker's trial, and success closes it again.
 */
import { ROOT_CONTEXT, type Tracer } from "@opentelemetry/api";
import type { Backend, Outbox, OutboxEntry, PutMeta } from "../backends/backend.js";
import { compareOrigins } from "../backends/write-origin.js";
import { Code, StorageError } from "../storage-error.js";
import { inSpan } from "../tracing/spans.js";
import type { CircuitBreaker } from "./circuit-breaker.js";

export interface ReplicatorOptions {
  /** The primary tier, raw (stored bytes, no codec), or a layer over it that keeps stored bytes (a shared cache). */
  primary: Backend;
  /** The fallback tier, raw, with its outbox. */
  fallback: Backend & { readonly outbox: Outbox };
  /** The primary's breaker, shared with the chain. */
  breaker?: CircuitBreaker;
  intervalMs: number;
  batchSize?: number;
  /** After an entry is done: the key's state on the primary changed ("copied") or the entry lost to a newer write. */
  onReplicated?: (op: OutboxEntry["op"], outcome: Outcome, key: string) => void;
  onError?: (err: unknown, entry: OutboxEntry) => void;
  /** ENABLE_TRACING: each entry replayed is a span "replicate" (a trace of its own), its tier calls its children. */
  tracer?: Tracer;
  /**
   * Whether the primary's copy of `key` at `generation` (a write it holds
   * already) reads back intact; an answer of false has it copied again.
   * Without it the primary's copy is trusted. It calls the primary through
   * the breaker itself.
   */
  checkPrimaryCopy?: (key: string, generation: bigint) => Promise<boolean>;
  /** A bad primary copy of a pending write was replaced by the local one. */
  onRepaired?: (key: string) => void;
}

export type Outcome = "copied" | "superseded";

/** What one pass did. */
export interface PassResult {
  replicated: number;
  /** Entries still in the outbox when the pass ended. */
  remaining: number;
  /** The pass stopped because the primary could not be reached (an outage, or the breaker open). */
  unreachable: boolean;
}

export interface Replicator {
  /** Runs one pass now, or joins the one running (also used by tests); resolves when it is done. */
  drain(): Promise<PassResult>;
  /** Entries done and attempts failed since the replicator started (Flush reports the difference). */
  totals(): { replicated: number; failed: number };
  /** Asks for a pass soon (after the primary came back). */
  kick(): void;
  stop(): Promise<void>;
}

const isOutage = (e: unknown) => StorageError.is(e, Code.Unavailable, Code.DeadlineExceeded);

export function startReplicator(opts: ReplicatorOptions): Replicator {
  const { primary, fallback, breaker } = opts;
  const outbox = fallback.outbox;
  let running: Promise<PassResult> | undefined;
  let stopped = false;
  const totals = { replicated: 0, failed: 0 };

  const onPrimary = <T>(fn: () => Promise<T>): Promise<T> => (breaker ? breaker.run(fn, isOutage) : fn());

  // Entries whose primary copy failed its check (seq -> that copy's generation): not read again each round.
  const badReplicas = new Map<number, bigint>();

  async function replicaIntact(entry: OutboxEntry, generation: bigint): Promise<boolean> {
    if (opts.checkPrimaryCopy === undefined) return true;
    if (badReplicas.get(entry.seq) === generation) return false;
    // It goes through the breaker itself.
    const intact = await opts.checkPrimaryCopy(entry.key, generation);
    if (!intact) badReplicas.set(entry.seq, generation);
    return intact;
  }

  /** The outcome when the entry is done; undefined when it changed under us (judged next round). */
  async function replicate(entry: OutboxEntry): Promise<Outcome | undefined> {
    const remote = await onPrimary(() => primary.head(entry.key, { tombstones: true }));
    const order = remote === undefined ? -1 : compareOrigins(remote.origin, entry.origin);
    // The primary holds this very write (copied before a crash): trusted once it reads back intact.
    const badReplica = order === 0 && entry.op === "put" && !remote!.deleted && !(await replicaIntact(entry, remote!.generation));
    if (order >= 0 && !badReplica) {
      // The primary already holds this write or a newer one.
      return outbox.complete(entry, { dropLocalCopy: true }) ? (order === 0 ? "copied" : "superseded") : undefined;
    }
    const guard = remote?.generation ?? 0n;
    if (entry.op === "delete") {
      await onPrimary(() => primary.delete(entry.key, { ifGenerationMatch: guard, origin: entry.origin }));
      return outbox.complete(entry, { dropLocalCopy: true }) ? "copied" : undefined;
    }
    const local = await fallback.get(entry.key);
    if (!local) return undefined; // replaced by a newer entry since we listed it
    if (local.record.generation !== entry.generation) {
      local.body.destroy();
      return undefined;
    }
    try {
      await onPrimary(() => primary.put(entry.key, local.body, metaOf(local.record), { ifGenerationMatch: guard }));
    } finally {
      local.body.destroy();
    }
    if (badReplica) {
      badReplicas.delete(entry.seq);
      opts.onRepaired?.(entry.key);
    }
    // A newer local write of the key arrived meanwhile: its own entry stays and carries its own origin.
    outbox.complete(entry, { dropLocalCopy: true });
    return "copied";
  }

  const traced = (entry: OutboxEntry): Promise<Outcome | undefined> =>
    opts.tracer
      ? inSpan(opts.tracer, "replicate", { parent: ROOT_CONTEXT, attributes: { "filestorage.key": entry.key, "filestorage.op": entry.op } }, async (span) => {
          const outcome = await replicate(entry);
          span.setAttribute("filestorage.outcome", outcome ?? "retry");
          return outcome;
        })
      : replicate(entry);

  async function pass(): Promise<PassResult> {
    let replicated = 0;
    const result = (unreachable: boolean) => ({ replicated, remaining: outbox.stats().count, unreachable });
    // An open breaker: the primary is known to be down; its reset timeout decides when to try again.
    if (breaker?.state === "open") return result(true);
    for (;;) {
      if (stopped) break;
      const batch = outbox.list(opts.batchSize ?? 64);
      if (batch.length === 0) break;
      let progressed = false;
      for (const entry of batch) {
        if (stopped) break;
        try {
          const outcome = await traced(entry);
          if (outcome === undefined) continue;
          opts.onReplicated?.(entry.op, outcome, entry.key);
          replicated++;
          totals.replicated++;
          progressed = true;
        } catch (err) {
          totals.failed++;
          opts.onError?.(err, entry);
          // The primary is down: stop; a precondition race: judge it next round.
          if (isOutage(err)) return result(true);
        }
      }
      if (!progressed) break;
    }
    return result(false);
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
    totals: () => ({ ...totals }),
    kick: soon,
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running;
    },
  };
}

/** The record's description of the write, for a copy of it on another tier: same bytes, same origin. */
export function metaOf(r: import("../backends/backend.js").ObjectRecord): PutMeta {
  return {
    kind: r.kind,
    contentType: r.contentType,
    metadata: r.metadata,
    expiresAt: r.expiresAt,
    size: r.size,
    crc32c: r.crc32c,
    encoding: r.encoding,
    origin: r.origin,
  };
}
