/**
 * Listing the bucket: pages of our records in UTF-8 byte order (GCS's own),
 * with tombstones and the daemon's own objects (.filestorage/) left out; and
 * the sweep, which lists everything to remove what nobody can read any more.
 */
import type { DeleteOptions, ListOptions, ListPage, ObjectRecord } from "../backend.js";
import { compareKeys } from "../backend.js";
import { Code, StorageError } from "../../storage-error.js";
import { throwIfAborted } from "../../signals.js";
import { RESERVED_PREFIX } from "../../keys.js";
import type { GcsContext } from "./gcs-context.js";
import { call } from "./gcs-errors.js";
import { UPLOADS_PREFIX, toRecord } from "./object-metadata.js";

const LIST_PAGE_MAX = 1000;

/** What sweepBucket removes; times are Unix ms. */
export interface SweepLimits {
  now: number;
  tombstoneBefore: number;
  partsBefore: number;
  signal?: AbortSignal;
  /** Called for each expired object removed. */
  onExpired?: (record: ObjectRecord) => void;
  /** When an object expires (Unix ms; lifecycle rules included); default its own expiresAt. */
  expiresAt?: (record: ObjectRecord) => number | undefined;
}

export async function listPage(ctx: GcsContext, listOpts: ListOptions): Promise<ListPage> {
  const { prefix = "", startAfter, limit, delimiter, signal } = listOpts;
  throwIfAborted(signal);
  if (limit <= 0) return { objects: [], prefixes: [] };
  const after = (name: string) => startAfter === undefined || compareKeys(name, startAfter) > 0;
  const objects = new Map<string, ObjectRecord>();
  const prefixes = new Set<string>();
  let pageToken: string | undefined;
  for (;;) {
    const [files, next, raw] = await ctx.retry(
      () =>
        call("list", () =>
          ctx.bucket.getFiles({
            prefix: prefix || undefined,
            delimiter,
            // startOffset is inclusive; equal names are skipped below.
            startOffset: startAfter !== undefined && compareKeys(startAfter, prefix) > 0 ? startAfter : undefined,
            maxResults: Math.min(LIST_PAGE_MAX, limit + 2),
            pageToken,
            autoPaginate: false,
          }),
        ),
      signal,
    );
    let frontier: string | undefined;
    for (const f of files) {
      if (frontier === undefined || compareKeys(f.name, frontier) > 0) frontier = f.name;
      if (f.name.startsWith(RESERVED_PREFIX)) continue;
      const rec = toRecord(f.name, f.metadata);
      if (!rec.deleted && after(rec.key)) objects.set(rec.key, rec);
    }
    for (const p of ((raw as { prefixes?: string[] } | undefined)?.prefixes ?? [])) {
      if (after(p) && !p.startsWith(RESERVED_PREFIX)) prefixes.add(p);
    }
    pageToken = (next as { pageToken?: string } | null)?.pageToken;
    // Entries up to the last object of the page are complete (the emulator
    // returns every rolled-up prefix on every page, so prefixes cannot set it).
    const complete = pageToken === undefined ? Infinity : countUpTo(objects, prefixes, frontier);
    if (complete > limit || pageToken === undefined) break;
  }
  const entries = [...[...objects.keys()].map((k) => ({ k, isPrefix: false })), ...[...prefixes].map((k) => ({ k, isPrefix: true }))];
  entries.sort((a, b) => compareKeys(a.k, b.k));
  const taken = entries.slice(0, limit);
  const more = entries.length > limit || pageToken !== undefined;
  const page: ListPage = {
    objects: taken.filter((e) => !e.isPrefix).map((e) => objects.get(e.k)!),
    prefixes: taken.filter((e) => e.isPrefix).map((e) => e.k),
  };
  if (more && taken.length > 0) page.next = taken[taken.length - 1].k;
  return page;
}

/**
 * Removes what GCS keeps but nobody can read any more (run by the sweeper):
 * objects expired before `now` (replaced by a tombstone carrying their own
 * write's origin, so an older write replayed later cannot bring back what
 * expired), tombstones older than `tombstoneBefore` and upload parts older
 * than `partsBefore` (left by a crash). Every removal is guarded by the
 * generation seen, so a newer write survives. Unix ms; returns counts.
 */
export async function sweepBucket(ctx: GcsContext, limits: SweepLimits, del: (key: string, opts: DeleteOptions) => Promise<boolean>) {
  const removed = { tombstones: 0, expired: 0, parts: 0 };
  const isExpired = (r: ObjectRecord) => {
    const at = limits.expiresAt ? limits.expiresAt(r) : r.expiresAt;
    return at !== undefined && at <= limits.now;
  };
  let pageToken: string | undefined;
  do {
    const [files, next] = await ctx.retry(
      () => call("list", () => ctx.bucket.getFiles({ maxResults: LIST_PAGE_MAX, pageToken, autoPaginate: false })),
      limits.signal,
    );
    for (const f of files) {
      const md = f.metadata;
      const created = Date.parse(String(md.timeCreated ?? md.updated ?? ""));
      let kind: "tombstones" | "parts" | undefined;
      if (f.name.startsWith(RESERVED_PREFIX)) {
        if (f.name.startsWith(UPLOADS_PREFIX) && created < limits.partsBefore) kind = "parts";
      } else {
        const r = toRecord(f.name, md);
        if (r.deleted && r.origin.writtenAt / 1000 < limits.tombstoneBefore) kind = "tombstones";
        else if (!r.deleted && isExpired(r)) {
          const gone = await del(r.key, { ifGenerationMatch: r.generation, origin: r.origin, signal: limits.signal }).catch((err) => {
            if (StorageError.is(err, Code.FailedPrecondition, Code.Aborted)) return false;
            throw err;
          });
          if (gone) {
            removed.expired++;
            limits.onExpired?.(r);
          }
          continue;
        }
      }
      if (kind === undefined) continue;
      const gen = String(md.generation);
      // Pinned to the generation seen (the emulator ignores ifGenerationMatch on deletes but honours the generation).
      const done = await call("delete", async () => (await ctx.bucket.file(f.name, { generation: gen }).delete({ ifGenerationMatch: gen }), true), {
        notFound: false,
      }).catch((err) => {
        if (StorageError.is(err, Code.FailedPrecondition)) return false;
        throw err;
      });
      if (done) removed[kind]++;
    }
    pageToken = (next as { pageToken?: string } | null)?.pageToken;
  } while (pageToken !== undefined);
  return removed;
}

/** Entries known up to `frontier` (inclusive). */
function countUpTo(objects: Map<string, unknown>, prefixes: Set<string>, frontier: string | undefined): number {
  if (frontier === undefined) return 0;
  let n = 0;
  for (const k of objects.keys()) if (compareKeys(k, frontier) <= 0) n++;
  for (const p of prefixes) if (compareKeys(p, frontier) <= 0) n++;
  return n;
}
