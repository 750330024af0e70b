/**
 * Decides, for each call, who the caller is and whether it may do what it
 * asks. A caller is the entry of the tokens file matched by its bearer token
 * (`authorization: Bearer <token>`, compared by SHA-256 digest in constant
 * time) or, with mutual TLS, by the common name of its verified client
 * certificate. When a call carries both, the bearer token decides (an unknown
 * token is refused even with a good certificate): the token is the more
 * specific credential, and a shared client certificate must not widen it.
 *
 * With no tokens file, auth is off and every call is allowed (with mutual TLS
 * on, the transport has already refused clients without a certificate of the
 * client CA).
 */
import type { Metadata } from "@grpc/grpc-js";
import type { PeerCertificate } from "node:tls";
import { timingSafeEqual } from "node:crypto";
import { Code, StorageError } from "../storage-error.js";
import type { Right } from "./rights.js";
import { sha256, type AccessEntry, type TokenFile } from "./token-file.js";

/** The parts of a grpc-js server call the authorizer reads. */
export interface AuthCall {
  metadata: Metadata;
  /** grpc-js: the peer certificate, present only when TLS verified it. */
  getAuthContext(): { sslPeerCertificate?: PeerCertificate } | null;
}

/** What a call touches: one key, or every key under a prefix (ListKeys, DeleteMany). */
export type Scope = { key: string } | { prefix: string };

export interface Authorizer {
  /** False when the daemon runs without a tokens file. */
  readonly enabled: boolean;
  /**
   * Allows the call or throws: UNAUTHENTICATED when it carries no known
   * credential, PERMISSION_DENIED when its entry lacks `right` or a scope
   * lies outside the entry's prefixes. A key is inside a prefix it starts
   * with; a prefix is inside one it starts with (listing "" is inside only "").
   */
  check(call: AuthCall, right: Right, ...scopes: Scope[]): void;
  /**
   * The name of the caller's entry, or ANONYMOUS with auth off: what per-caller
   * limits count and upload ids are scoped by. UNAUTHENTICATED like check().
   */
  callerName(call: AuthCall): string;
  /** Swaps in a newly loaded tokens file; calls already checked are unaffected. */
  replace(file: TokenFile): void;
}

/** Every caller's name with auth off. */
export const ANONYMOUS = "anonymous";

export function createAuthorizer(file: TokenFile | undefined): Authorizer {
  let entries = file?.entries ?? [];
  return {
    enabled: file !== undefined,
    check(call, right, ...scopes) {
      if (file === undefined) return;
      const entry = identify(entries, call);
      const who = describe(entry);
      if (!entry.rights.has(right)) {
        throw new StorageError(Code.PermissionDenied, `${who} lacks the "${right}" right`);
      }
      for (const scope of scopes) {
        const [what, value] = "key" in scope ? ["key", scope.key] : ["prefix", scope.prefix];
        if (!entry.prefixes.some((p) => value.startsWith(p))) {
          throw new StorageError(Code.PermissionDenied, `${what} ${JSON.stringify(value)} is outside the prefixes of ${who}`);
        }
      }
    },
    callerName(call) {
      return file === undefined ? ANONYMOUS : identify(entries, call).name;
    },
    replace(next) {
      entries = next.entries;
    },
  };
}

function identify(entries: readonly AccessEntry[], call: AuthCall): AccessEntry {
  const header = call.metadata.get("authorization")[0];
  if (header !== undefined) {
    const match = typeof header === "string" ? /^Bearer\s+(\S+)\s*$/i.exec(header.trim()) : null;
    if (!match) throw new StorageError(Code.Unauthenticated, 'the authorization header must read "Bearer <token>"');
    const entry = byToken(entries, sha256(match[1]!));
    if (!entry) throw new StorageError(Code.Unauthenticated, "unknown token");
    return entry;
  }
  const commonName = certificateName(call);
  if (commonName !== undefined) {
    const entry = entries.find((e) => e.credential.kind === "client-cn" && e.credential.commonName === commonName);
    if (!entry) {
      throw new StorageError(Code.Unauthenticated, `the client certificate ${JSON.stringify(commonName)} has no entry in the tokens file`);
    }
    return entry;
  }
  throw new StorageError(Code.Unauthenticated, 'missing credentials: send "authorization: Bearer <token>"');
}

/** Compares the digest with every token entry, without stopping at a match, so timing says nothing. */
function byToken(entries: readonly AccessEntry[], digest: Buffer): AccessEntry | undefined {
  let found: AccessEntry | undefined;
  for (const e of entries) {
    if (e.credential.kind === "token" && timingSafeEqual(e.credential.sha256, digest) && found === undefined) found = e;
  }
  return found;
}

/** The common name of a certificate TLS verified; undefined without one (or with several CNs). */
function certificateName(call: AuthCall): string | undefined {
  const cn = call.getAuthContext()?.sslPeerCertificate?.subject?.CN as string | string[] | undefined;
  return typeof cn === "string" && cn !== "" ? cn : undefined;
}

function describe(entry: AccessEntry): string {
  return `${entry.credential.kind === "token" ? "token" : "client certificate"} ${JSON.stringify(entry.name)}`;
}
