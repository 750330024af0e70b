/**
 * Key rules (DESIGN.md "Keys", GCS's object-name rules): 1..1024 bytes of
 * UTF-8, no NUL/CR/LF, no "." or ".." segment, no leading "/", not under
 * ".well-known/acme-challenge/". Backends never derive a path from a key, so
 * these rules are about portability to GCS and least surprise, not safety.
 */
import { invalidArgument } from "./storage-error.js";

export const MAX_KEY_BYTES = 1024;
const ACME_PREFIX = ".well-known/acme-challenge/";

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
  return key;
}

/** A list prefix may be empty; otherwise the character rules apply. */
export function checkPrefix(prefix: string, what = "prefix"): string {
  if (Buffer.byteLength(prefix, "utf8") > MAX_KEY_BYTES) {
    throw invalidArgument(`${what} is longer than ${MAX_KEY_BYTES} bytes of UTF-8`);
  }
  checkCharacters(prefix, what);
  return prefix;
}

function checkCharacters(s: string, what: string): void {
  if (s.includes("\0")) throw invalidArgument(`${what} must not contain NUL`);
  if (s.includes("\r") || s.includes("\n")) throw invalidArgument(`${what} must not contain CR or LF`);
  // A lone surrogate cannot be encoded as UTF-8: it would silently become U+FFFD.
  if (!s.isWellFormed()) throw invalidArgument(`${what} must be valid UTF-8`);
}
