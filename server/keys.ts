/**
 * Key rules (DESIGN.md "Keys", GCS's object-name rules): 1..1024 bytes of
 * UTF-8, no NUL/CR/LF, no "." or ".." segment, no leading "/", not under
 * ".well-known/acme-challenge/", not under the daemon's own ".filestorage/".
 * Backends never derive a path from a key, so these rules are about
 * portability to GCS and least surprise, not safety.
 */
import { invalidArgument } from "./storage-error.js";

export const MAX_KEY_BYTES = 1024;
/** A ListKeys delimiter is at most this long (GCS's limit for a delimiter is the key length). */
export const MAX_DELIMITER_BYTES = 1024;
const ACME_PREFIX = ".well-known/acme-challenge/";

/**
 * Keys under this prefix are the daemon's own objects in the bucket (cache
 * key, upload parts): callers can neither name them nor list or delete by a
 * prefix under it.
 */
export const RESERVED_PREFIX = ".filestorage/";

/** True for a name under RESERVED_PREFIX (the daemon's own objects). */
export function isReservedKey(name: string): boolean {
  return name.startsWith(RESERVED_PREFIX);
}

/** Throws INVALID_ARGUMENT naming the broken rule; returns the key. */
export function checkKey(key: string, what = "key"): string {
  if (key.length === 0) throw invalidArgument(`${what} must not be empty`);
  const bytes = Buffer.byteLength(key, "utf8");
  if (bytes > MAX_KEY_BYTES) {
    throw invalidArgument(`${what} is ${bytes} bytes of UTF-8; the limit is ${MAX_KEY_BYTES}`);
  }
  checkCharacters(key, what);
  if (key.startsWith("/")) throw invalidArgument(`${what} must not start with "/"`);
  for (const segment of key.split("/")) {
    if (segment === "." || segment === "..") {
      throw invalidArgument(`${what} must not contain a "." or ".." path segment`);
    }
  }
  if (key.startsWith(ACME_PREFIX)) {
    throw invalidArgument(`${what} must not start with "${ACME_PREFIX}" (reserved by GCS)`);
  }
  checkNotReserved(key, what);
  return key;
}

/** A list or DeleteMany prefix may be empty; otherwise the character rules apply, and it must not reach into RESERVED_PREFIX. */
export function checkPrefix(prefix: string, what = "prefix"): string {
  if (Buffer.byteLength(prefix, "utf8") > MAX_KEY_BYTES) {
    throw invalidArgument(`${what} is longer than ${MAX_KEY_BYTES} bytes of UTF-8`);
  }
  checkCharacters(prefix, what);
  checkNotReserved(prefix, what);
  return prefix;
}

/** A ListKeys delimiter: empty (none), or 1..MAX_DELIMITER_BYTES bytes of UTF-8 without NUL, CR or LF. */
export function checkDelimiter(delimiter: string): string {
  if (Buffer.byteLength(delimiter, "utf8") > MAX_DELIMITER_BYTES) {
    throw invalidArgument(`delimiter is longer than ${MAX_DELIMITER_BYTES} bytes of UTF-8`);
  }
  checkCharacters(delimiter, "delimiter");
  return delimiter;
}

function checkNotReserved(s: string, what: string): void {
  if (isReservedKey(s)) {
    throw invalidArgument(`${what} must not start with "${RESERVED_PREFIX}" (reserved for the daemon's own objects)`);
  }
}

function checkCharacters(s: string, what: string): void {
  if (s.includes("\0")) throw invalidArgument(`${what} must not contain NUL`);
  if (s.includes("\r") || s.includes("\n")) throw invalidArgument(`${what} must not contain CR or LF`);
  // A lone surrogate cannot be encoded as UTF-8: it would silently become U+FFFD.
  if (!s.isWellFormed()) throw invalidArgument(`${what} must be valid UTF-8`);
}
