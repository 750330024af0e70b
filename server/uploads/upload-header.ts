/**
 * What identifies a resumable upload beyond its id: the key and the header
 * fields of its first stream. A resume must repeat them exactly; this module
 * encodes them for the session row and names the first field a resume
 * changed (INVALID_ARGUMENT then, so bytes meant for one object never end up
 * in another).
 */
import type { DataKindName, JsonObject, JsonValue } from "../backends/backend.js";
import { invalidArgument } from "../storage-error.js";

/** An upload_id: chosen by the client, 1..128 of [A-Za-z0-9_-]. */
export const UPLOAD_ID_PATTERN = /^[A-Za-z0-9_-]{1,128}$/;

/** The header of a StoreStream that carries an upload_id, as the RPC edge checked it. */
export interface UploadHeader {
  key: string;
  kind: DataKindName;
  contentType: string;
  metadata: JsonObject;
  /** Unix ms. */
  expiresAt?: number;
  /** The header's declared total size. */
  declaredSize?: number;
  ifGenerationMatch?: bigint;
}

/** INVALID_ARGUMENT unless `id` is a valid upload_id; returns it. */
export function checkUploadId(id: string): string {
  if (!UPLOAD_ID_PATTERN.test(id)) {
    const shown = id.length > 40 ? `${JSON.stringify(id.slice(0, 40))}... (${id.length} characters)` : JSON.stringify(id);
    throw invalidArgument(`upload_id must be 1 to 128 of A-Z a-z 0-9 _ -; got ${shown}`);
  }
  return id;
}

/** The header fields a resume must repeat, by their proto names, in a stable encoding. */
function fields(h: UploadHeader): Record<string, string> {
  return {
    kind: h.kind,
    content_type: h.contentType,
    metadata: canonicalJson(h.metadata),
    size: h.declaredSize === undefined ? "" : String(h.declaredSize),
    if_generation_match: h.ifGenerationMatch === undefined ? "" : h.ifGenerationMatch.toString(),
    expires_at: h.expiresAt === undefined ? "" : String(h.expiresAt),
  };
}

/** The header fields (not the key) as stored with a session. */
export function encodeHeader(h: UploadHeader): string {
  return JSON.stringify(fields(h));
}

/** The proto name of the first header field of `h` that differs from the stored `encoded`, or undefined when none does. */
export function changedField(encoded: string, h: UploadHeader): string | undefined {
  const stored = JSON.parse(encoded) as Record<string, string>;
  const now = fields(h);
  return Object.keys(now).find((name) => stored[name] !== now[name]);
}

/** JSON with object keys sorted at every level, so equal metadata encodes equally whatever the order it came in. */
function canonicalJson(value: JsonValue): string {
  if (value === null || typeof value !== "object") return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  const keys = Object.keys(value).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k]!)}`).join(",")}}`;
}
