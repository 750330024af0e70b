/**
 * AUTH_TOKENS_FILE: who may call the daemon, on which key prefixes, with
 * which rights. The file is a JSON list of entries
 *
 *   {"name": "ci", "sha256": "<64 hex digits>", "prefixes": ["builds/"], "rights": ["read", "write"]}
 *
 * where `sha256` is the hex SHA-256 of the bearer token (the file never holds
 * a token), or `client_cn` names the common name of a verified client
 * certificate instead (mutual TLS). The older form `{"<token>": [prefixes]}`
 * still loads, each token with every right but admin; it is flagged
 * `legacyForm` so the daemon can warn. A file with no entries is refused:
 * an empty file must never mean "authentication off".
 *
 * Error messages name the entry (index, and its name when it has one) and the
 * field, never a value from the file: in the older form the keys are tokens.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import { z } from "zod";
import { LEGACY_RIGHTS, RIGHTS, type Right } from "./rights.js";

/** How a caller proves it is an entry: a bearer token's digest, or a client certificate's common name. */
export type Credential = { kind: "token"; sha256: Buffer } | { kind: "client-cn"; commonName: string };

/** One entry of the file: a named caller, its key prefixes ("" = every key) and rights. */
export interface AccessEntry {
  name: string;
  credential: Credential;
  prefixes: readonly string[];
  rights: ReadonlySet<Right>;
}

/** A validated tokens file. */
export interface TokenFile {
  entries: readonly AccessEntry[];
  /** True for the older `{"token": [prefixes]}` form. */
  legacyForm: boolean;
}

export interface TokenFileOptions {
  /** Mutual TLS is on (TLS_CLIENT_CA_FILE): `client_cn` entries can match. Without it they are refused. */
  clientCertificates: boolean;
}

/** A tokens file that cannot be used. The message is one line, without any value from the file. */
export class TokenFileError extends Error {
  override readonly name = "TokenFileError";
}

const FIELD_WORDS: Record<string, string> = {
  name: "expected a non-empty string naming the caller (it appears in logs and error messages)",
  sha256:
    'expected 64 hex digits: the SHA-256 of the token (e.g. `printf %s "$TOKEN" | sha256sum`), never the token itself',
  client_cn: "expected a non-empty string: the common name of a client certificate",
  prefixes: 'expected a list of key prefixes (strings; "" = every key)',
  rights: `expected a non-empty list of rights, each one of ${RIGHTS.join(", ")}`,
};

const FIELDS = "name, sha256 or client_cn, prefixes, rights";

const entrySchema = z.strictObject({
  name: z.string().trim().min(1),
  sha256: z.string().regex(/^[0-9a-fA-F]{64}$/).optional(),
  client_cn: z.string().trim().min(1).optional(),
  prefixes: z.array(z.string()),
  rights: z.array(z.enum(RIGHTS)).min(1),
});

const legacySchema = z.array(z.string());

/** Reads and validates the file at `file`. Throws TokenFileError. */
export function readTokenFile(file: string, opts: TokenFileOptions): TokenFile {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (err) {
    throw new TokenFileError(`cannot read it (${(err as NodeJS.ErrnoException).code ?? "read failed"})`);
  }
  return parseTokenFile(text, opts);
}

/** Validates the text of a tokens file. Throws TokenFileError. */
export function parseTokenFile(text: string, opts: TokenFileOptions): TokenFile {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    // JSON.parse's message quotes the text, which may hold a token.
    throw new TokenFileError("it is not valid JSON");
  }
  if (Array.isArray(json)) return { entries: parseEntries(json, opts), legacyForm: false };
  if (json !== null && typeof json === "object") return { entries: parseLegacy(json as Record<string, unknown>), legacyForm: true };
  throw new TokenFileError(`expected a JSON list of entries {${FIELDS}}`);
}

function parseEntries(list: unknown[], opts: TokenFileOptions): AccessEntry[] {
  if (list.length === 0) throw emptyFile();
  const entries = list.map((raw, i) => {
    const at = entryLabel(i, raw);
    const result = entrySchema.safeParse(raw);
    if (!result.success) {
      const issue = result.error.issues[0]!;
      if (issue.path.length === 0) {
        const words = issue.code === "unrecognized_keys" ? "has a field that is not one of" : "expected an object of";
        throw new TokenFileError(`${at} ${words} ${FIELDS}`);
      }
      const field = String(issue.path[0]);
      throw new TokenFileError(`${at}, field "${field}": ${FIELD_WORDS[field] ?? "is not allowed"}`);
    }
    const e = result.data;
    if ((e.sha256 === undefined) === (e.client_cn === undefined)) {
      throw new TokenFileError(`${at}: give exactly one of "sha256" (a bearer token's digest) and "client_cn" (a client certificate)`);
    }
    if (e.client_cn !== undefined && !opts.clientCertificates) {
      throw new TokenFileError(`${at}, field "client_cn": needs mutual TLS (TLS_CLIENT_CA_FILE), which is off`);
    }
    const credential: Credential =
      e.sha256 !== undefined
        ? { kind: "token", sha256: Buffer.from(e.sha256, "hex") }
        : { kind: "client-cn", commonName: e.client_cn! };
    return { name: e.name, credential, prefixes: e.prefixes, rights: new Set(e.rights) };
  });
  checkUnique(entries, "name", (e) => e.name);
  checkUnique(entries, "sha256", (e) => (e.credential.kind === "token" ? e.credential.sha256.toString("hex") : undefined));
  checkUnique(entries, "client_cn", (e) => (e.credential.kind === "client-cn" ? e.credential.commonName : undefined));
  return entries;
}

function parseLegacy(map: Record<string, unknown>): AccessEntry[] {
  const tokens = Object.entries(map);
  if (tokens.length === 0) throw emptyFile();
  return tokens.map(([token, prefixes], i) => {
    const at = `entry ${i} of the older {"token": [prefixes]} form (token not shown)`;
    if (token === "") throw new TokenFileError(`${at}: the token is empty`);
    const result = legacySchema.safeParse(prefixes);
    if (!result.success) throw new TokenFileError(`${at}: ${FIELD_WORDS.prefixes}`);
    return {
      name: `legacy-${i + 1}`,
      credential: { kind: "token", sha256: sha256(token) },
      prefixes: result.data,
      rights: new Set(LEGACY_RIGHTS),
    };
  });
}

/** The SHA-256 digest of a bearer token, as the file's `sha256` holds it (hex-decoded). */
export function sha256(token: string): Buffer {
  return createHash("sha256").update(token, "utf8").digest();
}

function emptyFile(): TokenFileError {
  return new TokenFileError(
    "it holds no entries; an empty file would turn authentication off: add entries, or unset AUTH_TOKENS_FILE to run without authentication",
  );
}

/** "entry 2" or, when the raw entry has a usable name, 'entry 2 ("ci")'. */
function entryLabel(i: number, raw: unknown): string {
  const name = raw !== null && typeof raw === "object" ? (raw as { name?: unknown }).name : undefined;
  return typeof name === "string" && name.trim() !== "" ? `entry ${i} (${JSON.stringify(name.trim().slice(0, 64))})` : `entry ${i}`;
}

function checkUnique(entries: AccessEntry[], field: string, value: (e: AccessEntry) => string | undefined): void {
  const seen = new Map<string, number>();
  entries.forEach((e, i) => {
    const v = value(e);
    if (v === undefined) return;
    const first = seen.get(v);
    if (first !== undefined) {
      throw new TokenFileError(`entry ${i} (${JSON.stringify(e.name)}), field "${field}": the same as entry ${first}'s; each must be unique`);
    }
    seen.set(v, i);
  });
}
