/**
 * ListKeys page tokens: opaque to callers, they hold the key to continue
 * after, bound to the listing they came from so a token cannot be replayed
 * against another prefix or delimiter.
 */
import type { ObjectRecord } from "../backends/backend.js";
import { invalidArgument } from "../storage-error.js";

/** One entry of a listing: an object, or a prefix rolled up at the delimiter. */
export type ListEntry = { record: ObjectRecord; prefix?: undefined } | { prefix: string; record?: undefined };

interface PageToken {
  v: 1;
  after: string;
  prefix: string;
  delimiter: string;
}

/** The listing a token belongs to. */
export interface Listing {
  prefix: string;
  delimiter: string;
  pageToken: string;
}

/**
 * Where a listing continues after `entry`: past a rolled-up prefix, after
 * everything under it (U+10FFFF sorts after every other character in UTF-8
 * byte order); past an object, after its key.
 */
export function resumeAfter(entry: ListEntry): string {
  return entry.prefix !== undefined ? `${entry.prefix}\u{10FFFF}` : entry.record.key;
}

export function encodePageToken(listing: Omit<Listing, "pageToken">, after: string): string {
  const token: PageToken = { v: 1, after, prefix: listing.prefix, delimiter: listing.delimiter };
  return Buffer.from(JSON.stringify(token)).toString("base64url");
}

/** The key to continue after, or undefined for a first page; INVALID_ARGUMENT for a foreign token. */
export function decodePageToken(listing: Listing): string | undefined {
  if (!listing.pageToken) return undefined;
  let token: PageToken;
  try {
    token = JSON.parse(Buffer.from(listing.pageToken, "base64url").toString("utf8")) as PageToken;
  } catch {
    throw invalidArgument("page_token is not a next_page_token from an earlier response (ListKeys, GetUsage)");
  }
  if (token?.v !== 1 || typeof token.after !== "string") {
    throw invalidArgument("page_token is not a next_page_token from an earlier response (ListKeys, GetUsage)");
  }
  if (token.prefix !== listing.prefix || token.delimiter !== listing.delimiter) {
    throw invalidArgument("page_token belongs to a listing with another prefix or delimiter");
  }
  return token.after;
}
