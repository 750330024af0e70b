/** AUTH_TOKENS_FILE contents for tests: entries hold token digests, as the real file does. */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";

export type RightName = "read" | "write" | "delete" | "list" | "admin";
export const ALL_RIGHTS: RightName[] = ["read", "write", "delete", "list", "admin"];

/** One entry of the file's list form. */
export type TokenEntry =
  | { name: string; sha256: string; prefixes: string[]; rights: RightName[] }
  | { name: string; client_cn: string; prefixes: string[]; rights: RightName[] };

/** The hex SHA-256 of `token`, as the file holds it. */
export function digest(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}

/** An entry for a bearer token. */
export function tokenEntry(name: string, token: string, prefixes: string[], rights: RightName[]): TokenEntry {
  return { name, sha256: digest(token), prefixes, rights };
}

/** Writes `content` (JSON unless a string) to `dir/name` and returns the path. */
export function writeTokenFile(dir: string, name: string, content: unknown): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, typeof content === "string" ? content : JSON.stringify(content));
  return file;
}
