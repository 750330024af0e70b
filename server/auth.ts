/**
 * Bearer-token auth (AUTH_TOKENS_FILE): each token may touch keys under its
 * listed prefixes ("" = everything). With no tokens configured auth is off.
 */
import type { Metadata } from "@grpc/grpc-js";
import { timingSafeEqual, createHash } from "node:crypto";
import { Code, StorageError } from "./storage-error.js";

export interface Authorizer {
  readonly enabled: boolean;
  /** The prefixes the call may touch; throws UNAUTHENTICATED. */
  authenticate(metadata: Metadata): string[] | undefined;
  /** Throws PERMISSION_DENIED unless `key` (or a prefix) is inside `allowed`. */
  authorize(allowed: string[] | undefined, key: string): void;
}

export function createAuthorizer(tokens: Record<string, string[]>): Authorizer {
  // Compare digests so neither the token's length nor content leaks by timing.
  const digest = (s: string) => createHash("sha256").update(s).digest();
  const known = Object.entries(tokens).map(([token, prefixes]) => ({ digest: digest(token), prefixes }));
  const enabled = known.length > 0;
  return {
    enabled,
    authenticate(metadata) {
      if (!enabled) return undefined;
      const header = metadata.get("authorization")[0];
      const match = typeof header === "string" ? /^Bearer (.+)$/i.exec(header.trim()) : null;
      if (!match) throw new StorageError(Code.Unauthenticated, 'missing credentials: send "authorization: Bearer <token>"');
      const d = digest(match[1]!);
      const entry = known.find((k) => timingSafeEqual(k.digest, d));
      if (!entry) throw new StorageError(Code.Unauthenticated, "invalid token");
      return entry.prefixes;
    },
    authorize(allowed, key) {
      if (allowed === undefined) return;
      if (!allowed.some((p) => key.startsWith(p))) {
        throw new StorageError(Code.PermissionDenied, `key "${key}" is outside the prefixes this token may use`);
      }
    },
  };
}
