/**
 * The replicator drains the fallback's outbox into the primary, oldest entry
 * first, copying the stored bytes as they are (same encoding, no re-encode).
 *
 * Conflict rule (README "Replication"): the newest write wins, judged by write
 * time; a generation precondition makes the judgement race-free.
 * - put: if the primary holds a copy updated after the local write was made
 *   (another daemon wrote it meanwhile), the primary's copy wins and the local
 *   one is dropped; otherwise the local copy is written with
 *   ifGenerationMatch = the primary generation just observed (0 = absent), so
 *   a write landing between the look and the copy makes ours fail and the
 *   entry is judged again on the next round.
 * - delete: replayed only against a primary copy older than the delete, with
 *   its generation as precondition; a newer primary copy survives.
 */
import type { Backend, ObjectRecord, Outbox, OutboxEntry } from "../backends/backend.js";
import { Code, StorageError } from "../storage-error.js";

export interface ReplicatorOptions {
  /** The primary tier, raw (stored bytes, no codec). */
  primary: Backend;
  /** The fallback tier, raw, with its outbox. */
  fallback: Backend & { readonly outbox: Outbox };
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

export function startReplicator(opts: ReplicatorOptions): Replicator {
  const { primary, fallback } = opts;
  const outbox = fallback.outbox;
  let running: Promise<{ replicated: number; remaining: number }> | undefined;
  let stopped = false;

  async function replicate(entry: OutboxEntry): Promise<"copied" | "superseded"> {
    const remote = await primary.head(entry.key);
    const remoteIsNewer = remote !== undefined && remote.updatedAt > entry.createdAt;
    if (entry.op === "delete") {
      if (remote && !remoteIsNewer) await primary.delete(entry.key, { ifGenerationMatch: remote.generation });
      outbox.complete(entry, { dropLocalCopy: true });
      return remoteIsNewer ? "superseded" : "copied";
    }
    if (remoteIsNewer) {
      outbox.complete(entry, { dropLocalCopy: true });
      return "superseded";
    }
    const local = await fallback.get(entry.key);
    if (!local) {
      // Replaced by a newer entry (or dropped) since we listed it.
      return "superseded";
    }
    if (local.record.generation !== entry.generation) {
      local.body.destroy();
      return "superseded";
    }
    await primary.put(entry.key, local.body, metaOf(local.record), { ifGenerationMatch: remote?.generation ?? 0n });
    outbox.complete(entry, { dropLocalCopy: true });
    return "copied";
  }

  async function pass(): Promise<{ replicated: number; remaining: number }> {
    let replicated = 0;
    for (;;) {
      if (stopped) break;
      const batch = outbox.list(opts.batchSize ?? 64);
      if (batch.length === 0) break;
      let progressed = false;
      for (const entry of batch) {
        if (stopped) break;
        try {
          const outcome = await replicate(entry);
          opts.onReplicated?.(entry.op, outcome);
          replicated++;
          progressed = true;
        } catch (err) {
          opts.onError?.(err, entry);
          // The primary is down: stop; a precondition race: judge it next round.
          if (StorageError.is(err, Code.Unavailable, Code.DeadlineExceeded)) {
            return { replicated, remaining: outbox.stats().count };
          }
        }
      }
      if (!progressed) break;
    }
    return { replicated, remaining: outbox.stats().count };
  }

  function drain() {
    running ??= pass().finally(() => {
      running = undefined;
    });
    return running;
  }

  const timer = setInterval(() => {
    if (outbox.stats().count > 0) void drain();
  }, opts.intervalMs);
  timer.unref();

  return {
    drain,
    kick: () => void drain(),
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
