/**
 * Expiry, owned here: an object whose expiresAt has passed is absent to every
 * caller at once (isLive, used by the engine on every read); the sweeper
 * removes it later. Backends keep, read and list expired objects like any
 * other, so the sweeper can find them.
 *
 * The sweeper never overlaps itself. Every EXPIRY_SWEEP_SECONDS it takes the
 * local tier's expired objects from its index (never a listing of the store)
 * and deletes each through the stack, guarded by its generation so a rewrite
 * wins (with GCS in chain mode these are pending copies, whose deletes are
 * then replayed like any other). Every GCS_SWEEP_SECONDS it lists the bucket
 * (rarely: it is a listing) to replace expired objects by tombstones and drop
 * old tombstones and upload parts a crash left. Lifecycle rules
 * (lifecycle.ts) expire objects the same way: the local pass finds the
 * aged ones under each rule's prefix by the index, the bucket pass judges
 * every object it lists by the rules too. Every local sweep also deletes the
 * resumable uploads abandoned for UPLOAD_EXPIRY_SECONDS (through `uploads`,
 * which owns them).
 */
import type { Backend, ObjectRecord } from "../backends/backend.js";
import type { FsBackend } from "../backends/fs/fs-backend.js";
import type { GcsBackend } from "../backends/gcs/gcs-backend.js";
import { Code, StorageError } from "../storage-error.js";
import type { CircuitBreaker } from "./circuit-breaker.js";
import { every } from "./every.js";
import { effectiveExpiry, type LifecycleRule } from "./lifecycle.js";
import type { Quotas } from "./quota.js";

/** The record when it is live at `now` (under lifecycle `rules`), else undefined (missing or expired). */
export function isLive(record: ObjectRecord | undefined, now = Date.now(), rules: readonly LifecycleRule[] = []): ObjectRecord | undefined {
  if (record === undefined) return undefined;
  const at = rules.length === 0 ? record.expiresAt : effectiveExpiry(record, rules);
  return at === undefined || at > now ? record : undefined;
}

/** An upload part in the bucket older than this was left by a crash. */
const UPLOAD_PART_MAX_AGE_MS = 24 * 3600 * 1000;
const BATCH = 1000;

export interface ExpirySweeperOptions {
  /** The local tier, whose index lists its expired objects. */
  local: FsBackend;
  /** Deletes go through the whole stack (caches invalidate, the chain records tombstones). */
  store: Backend;
  gcs?: { backend: GcsBackend; breaker: CircuitBreaker; tombstoneRetentionMs: number };
  quotas?: Quotas;
  /** LIFECYCLE_RULES */
  lifecycle?: readonly LifecycleRule[];
  /** Resumable upload sessions: their expired ones go with each local sweep. */
  uploads?: { sweepExpired(now: number): Promise<number> };
  localIntervalMs: number;
  gcsIntervalMs: number;
  onExpired?: (count: number) => void;
  log?: { warn(obj: object, msg: string): void; info(obj: object, msg: string): void };
}

export interface ExpirySweeper {
  /** Runs a sweep now (the local tier and its abandoned uploads, and the bucket unless `gcs: false`); joins one already running. Returns the expired objects removed. */
  sweep(opts?: { gcs?: boolean }): Promise<number>;
  /** Stops the timers and waits for a sweep in progress. */
  stop(): Promise<void>;
}

export function startExpirySweeper(opts: ExpirySweeperOptions): ExpirySweeper {
  const { local, store, gcs, quotas } = opts;

  const rules = opts.lifecycle ?? [];

  /** Deletes `key` through the stack if it is still expired at `now`, guarded by the generation seen. */
  async function expire(key: string, now: number): Promise<boolean> {
    const record = await local.head(key);
    if (record === undefined || isLive(record, now, rules)) return false;
    try {
      const deleted = await store.delete(key, { ifGenerationMatch: record.generation });
      await quotas?.released(key, record.size);
      return deleted;
    } catch (err) {
      // Rewritten meanwhile (precondition) or a tier is down: next sweep.
      if (!StorageError.is(err, Code.FailedPrecondition, Code.Unavailable, Code.Aborted)) throw err;
      return false;
    }
  }

  async function sweepLocal(now: number): Promise<number> {
    let count = 0;
    const seen = new Set<string>();
    for (;;) {
      const keys = local.expired(now, BATCH).filter((k) => !seen.has(k));
      if (keys.length === 0) break;
      for (const key of keys) {
        seen.add(key);
        if (await expire(key, now)) count++;
      }
    }
    for (const rule of rules) {
      const before = (now - rule.maxAgeSeconds * 1000) * 1000;
      let after: string | undefined;
      for (;;) {
        const keys = local.writtenBefore(rule.prefix, before, after, BATCH);
        if (keys.length === 0) break;
        for (const key of keys) if (await expire(key, now)) count++;
        after = keys.at(-1);
      }
    }
    return count;
  }

  async function sweepGcs(now: number): Promise<number> {
    if (gcs === undefined || gcs.breaker.state === "open") return 0;
    const removed = await gcs.breaker.run(() =>
      gcs.backend.sweep({
        now,
        tombstoneBefore: now - gcs.tombstoneRetentionMs,
        partsBefore: now - UPLOAD_PART_MAX_AGE_MS,
        onExpired: (r) => void quotas?.released(r.key, r.size),
        expiresAt: rules.length === 0 ? undefined : (r) => effectiveExpiry(r, rules),
      }),
    );
    if (removed.tombstones + removed.parts > 0) opts.log?.info({ ...removed }, "GCS sweep removed leftovers");
    return removed.expired;
  }

  let sweeping: Promise<number> | undefined;
  function sweep(sweepOpts: { gcs?: boolean } = { gcs: true }): Promise<number> {
    sweeping ??= (async () => {
      const now = Date.now();
      let count = await sweepLocal(now);
      const uploads = await opts.uploads?.sweepExpired(now);
      if (uploads) opts.log?.info({ uploads }, "deleted abandoned resumable uploads (UPLOAD_EXPIRY_SECONDS)");
      if (sweepOpts.gcs) count += await sweepGcs(now);
      if (count > 0) opts.onExpired?.(count);
      return count;
    })().finally(() => {
      sweeping = undefined;
    });
    return sweeping;
  }

  // A tick while a sweep runs is skipped, never queued.
  const tick = (withGcs: boolean) => () => {
    if (sweeping) return;
    sweep({ gcs: withGcs }).catch((err) => opts.log?.warn({ err }, "expiry sweep failed"));
  };
  const timers = [every(opts.localIntervalMs, tick(false))];
  if (gcs) timers.push(every(opts.gcsIntervalMs, tick(true)));

  return {
    sweep,
    async stop() {
      for (const stopTimer of timers) stopTimer();
      await sweeping?.catch(() => undefined);
    },
  };
}
