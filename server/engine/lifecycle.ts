/**
 * Lifecycle rules (LIFECYCLE_RULES), like GCS's age condition: an object
 * under a rule's prefix expires `maxAgeSeconds` after its write. The time of
 * the write is its origin's (write-origin.ts), which every copy of it carries
 * on every tier, so each daemon and each tier agree on when it expires; a
 * replicated copy is not younger than the write it copies.
 *
 * An object's effective expiry is the earliest of its own expiresAt and the
 * ages of the rules it falls under. From then on it is absent to callers
 * (expiry.ts isLive) and the sweeper removes it from both tiers.
 */
import type { ObjectRecord } from "../backends/backend.js";

export interface LifecycleRule {
  /** Keys starting with it (byte for byte); "" is every key. */
  prefix: string;
  maxAgeSeconds: number;
}

/** When `record` stops being live under `rules` (Unix ms), or undefined when never. */
export function effectiveExpiry(record: ObjectRecord, rules: readonly LifecycleRule[]): number | undefined {
  let at = record.expiresAt;
  for (const rule of rules) {
    if (!record.key.startsWith(rule.prefix)) continue;
    const aged = Math.floor(record.origin.writtenAt / 1000) + rule.maxAgeSeconds * 1000;
    if (at === undefined || aged < at) at = aged;
  }
  return at;
}

/** The record as callers see it: expiresAt is the effective expiry (unchanged when no rule applies). */
export function withLifecycle(record: ObjectRecord, rules: readonly LifecycleRule[]): ObjectRecord {
  if (rules.length === 0) return record;
  const at = effectiveExpiry(record, rules);
  return at === record.expiresAt ? record : { ...record, expiresAt: at };
}
