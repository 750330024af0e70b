/**
 * Usage (GetUsage): the live objects under a prefix, counted with their
 * original and stored bytes. In the embedded mode the local tier is the whole
 * store and its index answers in one aggregate, exact; otherwise the store is
 * listed (what ListKeys shows, tiers merged, expired objects left out), a
 * page at a time, so a caller can cap each call and show progress.
 */
import type { ObjectRecord } from "../backends/backend.js";
import { invalidArgument } from "../storage-error.js";

export interface Usage {
  objectCount: number;
  totalBytes: number;
  storedBytes: number;
  /** "" when the count is complete; else where the next call continues. */
  nextPageToken: string;
  fromIndex: boolean;
}

export interface UsageRequest {
  prefix: string;
  pageToken: string;
  /** At most this many objects in this call; 0 = all. */
  maxObjects: number;
  signal?: AbortSignal;
}

/** What usage needs of the engine: its listing, and the index when the local tier is the whole store. */
export interface UsageSources {
  list(req: { prefix: string; limit: number; pageToken: string; delimiter: string; signal?: AbortSignal }): Promise<{
    objects: ObjectRecord[];
    nextPageToken: string;
  }>;
  index?: (prefix: string) => { objects: number; bytes: number; storedBytes: number };
}

const PAGE = 1000;

export async function measureUsage(from: UsageSources, req: UsageRequest): Promise<Usage> {
  if (!Number.isSafeInteger(req.maxObjects) || req.maxObjects < 0) {
    throw invalidArgument(`max_objects must be 0 (count all) or a positive number; got ${req.maxObjects}`);
  }
  if (from.index && req.pageToken === "") {
    const u = from.index(req.prefix);
    return { objectCount: u.objects, totalBytes: u.bytes, storedBytes: u.storedBytes, nextPageToken: "", fromIndex: true };
  }
  const usage: Usage = { objectCount: 0, totalBytes: 0, storedBytes: 0, nextPageToken: req.pageToken, fromIndex: false };
  do {
    const room = req.maxObjects === 0 ? PAGE : Math.min(PAGE, req.maxObjects - usage.objectCount);
    const page = await from.list({ prefix: req.prefix, limit: room, pageToken: usage.nextPageToken, delimiter: "", signal: req.signal });
    for (const r of page.objects) {
      usage.objectCount++;
      usage.totalBytes += r.size;
      usage.storedBytes += r.storedSize;
    }
    usage.nextPageToken = page.nextPageToken;
  } while (usage.nextPageToken !== "" && (req.maxObjects === 0 || usage.objectCount < req.maxObjects));
  return usage;
}
