/**
 * Eviction order and byte accounting of the disk cache (bazel-remote's
 * lru.go in spirit), in memory: the index row of each entry holds its last
 * access time for the next start, written lazily. Entries are ordered least
 * recently used first; fills in progress hold reservations, so the bound
 * counts the bytes they will add before they add them.
 */

/** A fill's claim on cache space: grown as bytes are promised, released or turned into an entry. */
export interface Reservation {
  readonly bytes: number;
}

export class ByteLru {
  /** key -> stored bytes; Map order is recency, least recent first. */
  private readonly sizes = new Map<string, number>();
  private readonly claims = new Set<{ bytes: number }>();
  private usedBytes = 0;
  private reservedBytes = 0;
  /** Keys touched since the last takeTouched(), with when. */
  private touched = new Map<string, number>();

  constructor(readonly maxBytes: number) {}

  get entries(): number {
    return this.sizes.size;
  }

  /** Stored bytes of the entries held (reservations not counted). */
  get bytes(): number {
    return this.usedBytes;
  }

  /** Bytes held plus bytes promised to fills in progress. */
  get committed(): number {
    return this.usedBytes + this.reservedBytes;
  }

  has(key: string): boolean {
    return this.sizes.has(key);
  }

  /** Adds (or replaces) `key` as the most recently used entry. */
  add(key: string, bytes: number, at = Date.now()): void {
    this.remove(key);
    this.sizes.set(key, bytes);
    this.usedBytes += bytes;
    this.touched.set(key, at);
  }

  /** Marks `key` used now (most recent). */
  touch(key: string, at = Date.now()): void {
    const bytes = this.sizes.get(key);
    if (bytes === undefined) return;
    this.sizes.delete(key);
    this.sizes.set(key, bytes);
    this.touched.set(key, at);
  }

  remove(key: string): void {
    const bytes = this.sizes.get(key);
    if (bytes === undefined) return;
    this.sizes.delete(key);
    this.usedBytes -= bytes;
    this.touched.delete(key);
  }

  /** The least recently used key, or undefined when empty. */
  oldest(): string | undefined {
    return this.sizes.keys().next().value;
  }

  /** A claim on `bytes` more (counted in `committed` until released). */
  reserve(bytes: number): Reservation & { bytes: number } {
    const claim = { bytes };
    this.claims.add(claim);
    this.reservedBytes += bytes;
    return claim;
  }

  /** Grows a claim by `bytes`. */
  grow(claim: Reservation, bytes: number): void {
    const c = claim as { bytes: number };
    if (!this.claims.has(c)) return;
    c.bytes += bytes;
    this.reservedBytes += bytes;
  }

  /** Gives a claim back (idempotent). */
  release(claim: Reservation): void {
    const c = claim as { bytes: number };
    if (!this.claims.delete(c)) return;
    this.reservedBytes -= c.bytes;
  }

  /** The access times written since the last call (for the index). */
  takeTouched(): Map<string, number> {
    const taken = this.touched;
    this.touched = new Map();
    return taken;
  }
}
