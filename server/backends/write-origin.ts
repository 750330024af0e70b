/**
 * Where a version of an object comes from: when it was written (by the
 * writer's clock, in microseconds since the Unix epoch) and by which daemon.
 * Every copy of a version carries the origin of the write that made it: the
 * local row, its outbox entry, the GCS object's custom metadata. Replication
 * copies it unchanged, so the conflict rule (the newest write wins) compares
 * writes, never the times their copies were made, and survives restarts.
 *
 * Imports nothing: it is part of the backend contract.
 */

/** The write a version (or a deletion) came from. */
export interface WriteOrigin {
  /** Microseconds since the Unix epoch, by the writer's clock. */
  writtenAt: number;
  /** The writing daemon's id (persisted per storage folder); "" when unknown (written by another tool). */
  writer: string;
}

/**
 * Orders two origins: negative when `a` is older than `b`, positive when newer,
 * 0 only for the same write. Ties in time break by writer id (byte order), so
 * every daemon picks the same winner.
 */
export function compareOrigins(a: WriteOrigin, b: WriteOrigin): number {
  if (a.writtenAt !== b.writtenAt) return a.writtenAt < b.writtenAt ? -1 : 1;
  return a.writer === b.writer ? 0 : a.writer < b.writer ? -1 : 1;
}

let last = 0;

/**
 * Microseconds since the epoch, strictly rising within this process. The
 * wall clock gives the time (so daemons on synchronised clocks agree); the
 * monotonic clock adds the microseconds within the current millisecond, so
 * writes a fraction of a millisecond apart stay ordered.
 */
export function nowMicros(): number {
  const wall = Date.now() * 1000;
  const fine = Math.floor((performance.timeOrigin + performance.now()) * 1000);
  // Trust the fine clock only within the current wall-clock millisecond (it does not follow clock steps).
  const t = fine >= wall && fine < wall + 1000 ? fine : wall;
  last = t > last ? t : last + 1;
  return last;
}

/** A new origin for a write made now by `writer`. */
export function newOrigin(writer: string): WriteOrigin {
  return { writtenAt: nowMicros(), writer };
}
