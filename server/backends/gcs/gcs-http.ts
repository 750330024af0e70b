/**
 * The GCS JSON API requests of the hot paths (media reads, object stats,
 * uploads, compose) made over node:http(s) with a keep-alive agent, and
 * authorised by the SDK's own auth client (no credentials for an emulator,
 * as the SDK does). Why not through the SDK: its request stack (retry-request,
 * teeny-request, node-fetch, stream shims) costs ~0.8 ms of CPU per request,
 * several times the request itself (16 KiB media GET on the emulator: ~1100/s
 * through the SDK, ~4500/s over node:http, same process, same emulator), and
 * the daemon makes every client call through one of these. The SDK keeps the
 * rest: bucket checks, listings, deletes, the sweep.
 *
 * Failures are StorageErrors (translated by gcs-errors.ts, the HTTP error kept
 * as cause). A request whose socket makes no progress for `timeoutMs` fails as
 * UNAVAILABLE; a media body, once its headers arrived, is bounded by the
 * caller's signal only (a slow consumer pauses it, which must not look like a
 * dead GCS).
 */
import { randomBytes } from "node:crypto";
import * as http from "node:http";
import * as https from "node:https";
import type { FileMetadata, Storage } from "@google-cloud/storage";
import { Code, StorageError } from "../../storage-error.js";
import { abortError } from "../../signals.js";
import { translate } from "./gcs-errors.js";

/** An HTTP answer of GCS that is not a success: its status and GCS's message. */
export class GcsHttpError extends Error {
  override readonly name = "GcsHttpError";
  constructor(
    /** The HTTP status (gcs-errors.ts reads it as `code`, like the SDK's errors). */
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

/** What a media GET answered. */
export type MediaAnswer =
  | { status: 200 | 206; headers: http.IncomingHttpHeaders; body: http.IncomingMessage }
  | { status: 404 }
  /** The range starts at or past the end; the headers may describe the object (GCS's and the emulator's do). */
  | { status: 416; headers: http.IncomingHttpHeaders };

/** Preconditions and pins of one request. */
export interface RequestGuards {
  /** ifGenerationMatch (0 = only if absent). */
  ifGenerationMatch?: bigint;
}

export interface GcsHttp {
  /** The object's metadata (a tombstone's too), or undefined when there is none. */
  stat(name: string, signal?: AbortSignal): Promise<FileMetadata | undefined>;
  /** Opens a media read of `name` (of `generation` when given), whole or of `range` (inclusive end; open when absent). */
  media(name: string, opts: { generation?: bigint; range?: { start: number; end?: number } }, signal?: AbortSignal): Promise<MediaAnswer>;
  /** One multipart request: the object resource (with its crc32c, which GCS verifies) and the bytes. */
  uploadMultipart(name: string, resource: ObjectResource, body: readonly Uint8Array[], guards: RequestGuards, signal?: AbortSignal): Promise<FileMetadata>;
  /** A resumable upload of bytes held in memory: the session request, then one PUT carrying the CRC32C (x-goog-hash). */
  uploadResumable(name: string, resource: ObjectResource, body: readonly Uint8Array[], guards: RequestGuards, signal?: AbortSignal): Promise<FileMetadata>;
  /** Starts a resumable upload session for `name` (the object appears when its last request succeeds); its URL. */
  startSession(name: string, resource: ObjectResource, guards: RequestGuards, signal?: AbortSignal): Promise<URL>;
  /**
   * Sends `body` at `offset` of a session: a middle request (a multiple of
   * 256 KiB) answers with the bytes GCS holds; the final one (`final`: the
   * total size and the CRC32C of everything, which GCS verifies) with the object.
   */
  putChunk(session: URL, body: readonly Uint8Array[], offset: number, final: { total: number; crc32c: string } | undefined, signal?: AbortSignal): Promise<{ persisted: number } | { object: FileMetadata }>;
  /** Composes `sources` (in order) into `name` with the destination's resource. */
  compose(name: string, destination: ObjectResource, sources: readonly { name: string; generation: string }[], guards: RequestGuards, signal?: AbortSignal): Promise<FileMetadata>;
  close(): void;
}

/** The parts of an object resource we write. */
export interface ObjectResource {
  contentType?: string;
  metadata?: Record<string, string>;
  /** Base64 of the big-endian CRC32C of the bytes: GCS refuses the upload when its own differs. */
  crc32c?: string;
}

/** Largest JSON answer read (object resources are a few KiB). */
const MAX_JSON_BYTES = 4 * 1024 * 1024;

/** The request client of one bucket, sharing the SDK client's endpoint and credentials. */
export function createGcsHttp(storage: Storage, bucket: string, timeoutMs: number): GcsHttp {
  // The SDK's own URLs: the JSON API under baseUrl, uploads under the endpoint.
  const jsonBase = new URL(`${storage.baseUrl.replace(/\/+$/, "")}/b/${encodeURIComponent(bucket)}/o`);
  const uploadBase = new URL(`${storage.apiEndpoint.replace(/\/+$/, "")}/upload/storage/v1/b/${encodeURIComponent(bucket)}/o`);
  const secure = jsonBase.protocol === "https:";
  const agent = secure ? new https.Agent({ keepAlive: true, scheduling: "lifo" }) : new http.Agent({ keepAlive: true, scheduling: "lifo" });
  // An emulator behind a custom endpoint takes no credentials, unless the SDK was told otherwise.
  const authorised = !storage.customEndpoint || storage.useAuthWithCustomEndpoint === true;

  const objectUrl = (name: string, query: Record<string, string | undefined>, suffix = "") => {
    const url = new URL(`${jsonBase.pathname}/${encodeURIComponent(name)}${suffix}`, jsonBase);
    for (const [k, v] of Object.entries(query)) if (v !== undefined) url.searchParams.set(k, v);
    return url;
  };
  const guardQuery = (g: RequestGuards) => ({ ifGenerationMatch: g.ifGenerationMatch?.toString() });

  async function headersFor(url: URL, extra: http.OutgoingHttpHeaders): Promise<http.OutgoingHttpHeaders> {
    const headers: http.OutgoingHttpHeaders = { "user-agent": "filestorage", ...extra };
    if (authorised) Object.assign(headers, await storage.authClient.getRequestHeaders(url.href));
    return headers;
  }

  /** Sends one request; resolves with the response once its headers arrived. */
  async function send(what: string, method: string, url: URL, extra: http.OutgoingHttpHeaders, body: readonly Uint8Array[] | undefined, signal: AbortSignal | undefined) {
    const headers = await headersFor(url, extra);
    if (body) headers["content-length"] = body.reduce((n, c) => n + c.byteLength, 0);
    return new Promise<http.IncomingMessage>((resolve, reject) => {
      const req = (secure ? https : http).request(url, { method, headers, agent, signal, timeout: timeoutMs > 0 && Number.isFinite(timeoutMs) ? timeoutMs : undefined });
      req.on("timeout", () => req.destroy(new StorageError(Code.Unavailable, `GCS ${what}: GCS made no progress for ${timeoutMs} ms`)));
      req.on("error", (err) => reject(signal?.aborted ? abortError(signal, err) : translate(what, err)));
      req.on("response", (res) => {
        // From here on the caller reads the body (and bounds it).
        req.setTimeout(0);
        resolve(res);
      });
      if (body) for (const chunk of body) req.write(chunk);
      req.end();
    });
  }

  /** Reads a JSON answer; a failure status is a GcsHttpError carrying GCS's message. */
  async function json<T>(what: string, res: http.IncomingMessage): Promise<T> {
    const text = await readText(what, res);
    const status = res.statusCode ?? 0;
    if (status < 200 || status > 299) throw translate(what, new GcsHttpError(status, errorMessage(text, status)));
    try {
      return JSON.parse(text) as T;
    } catch (err) {
      throw new StorageError(Code.Internal, `GCS ${what}: the answer was not JSON`, { cause: err });
    }
  }

  async function readText(what: string, res: http.IncomingMessage): Promise<string> {
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      for await (const chunk of res as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (size > MAX_JSON_BYTES) throw new StorageError(Code.Internal, `GCS ${what}: the answer is over ${MAX_JSON_BYTES} bytes`);
        chunks.push(chunk);
      }
    } catch (err) {
      throw translate(what, err);
    }
    return Buffer.concat(chunks).toString("utf8");
  }

  async function startSession(name: string, resource: ObjectResource, guards: RequestGuards, signal?: AbortSignal): Promise<URL> {
    const url = new URL(uploadBase);
    url.searchParams.set("uploadType", "resumable");
    url.searchParams.set("name", name);
    const g = guardQuery(guards).ifGenerationMatch;
    if (g !== undefined) url.searchParams.set("ifGenerationMatch", g);
    const payload = Buffer.from(JSON.stringify({ name, ...resource }));
    const res = await send("upload", "POST", url, { "content-type": "application/json; charset=UTF-8" }, [payload], signal);
    const location = res.headers.location;
    if ((res.statusCode ?? 0) >= 300 || !location) {
      await json("upload", res);
      throw new StorageError(Code.Internal, "GCS upload: no session URL in the answer");
    }
    res.resume();
    return new URL(location);
  }

  return {
    async stat(name, signal) {
      const res = await send("stat", "GET", objectUrl(name, {}), { accept: "application/json" }, undefined, signal);
      if (res.statusCode === 404) {
        res.resume();
        return undefined;
      }
      return json<FileMetadata>("stat", res);
    },

    async media(name, opts, signal) {
      const url = objectUrl(name, { alt: "media", generation: opts.generation?.toString() });
      // Identity only: the bytes as stored, so lengths and CRC32C are those of the object.
      const extra: http.OutgoingHttpHeaders = { "accept-encoding": "identity" };
      if (opts.range) extra.range = `bytes=${opts.range.start}-${opts.range.end ?? ""}`;
      const res = await send("read", "GET", url, extra, undefined, signal);
      const status = res.statusCode ?? 0;
      if (status === 200 || status === 206) return { status, headers: res.headers, body: res };
      if (status === 404) {
        res.resume();
        return { status: 404 };
      }
      if (status === 416) {
        res.resume();
        return { status: 416, headers: res.headers };
      }
      throw translate("read", new GcsHttpError(status, errorMessage(await readText("read", res), status)));
    },

    async uploadMultipart(name, resource, body, guards, signal) {
      const url = new URL(uploadBase);
      url.searchParams.set("uploadType", "multipart");
      const g = guardQuery(guards).ifGenerationMatch;
      if (g !== undefined) url.searchParams.set("ifGenerationMatch", g);
      const boundary = randomBytes(16).toString("hex");
      const head = Buffer.from(
        `--${boundary}\r\ncontent-type: application/json; charset=UTF-8\r\n\r\n${JSON.stringify({ name, ...resource })}\r\n` +
          `--${boundary}\r\ncontent-type: ${resource.contentType || "application/octet-stream"}\r\n\r\n`,
      );
      const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
      const res = await send("upload", "POST", url, { "content-type": `multipart/related; boundary=${boundary}` }, [head, ...body, tail], signal);
      return json<FileMetadata>("upload", res);
    },

    async uploadResumable(name, resource, body, guards, signal) {
      const session = await startSession(name, resource, guards, signal);
      const size = body.reduce((n, c) => n + c.byteLength, 0);
      const extra: http.OutgoingHttpHeaders = { "content-range": size > 0 ? `bytes 0-${size - 1}/${size}` : "bytes */0" };
      if (resource.crc32c) extra["x-goog-hash"] = `crc32c=${resource.crc32c}`;
      const res = await send("upload", "PUT", session, extra, body, signal);
      return json<FileMetadata>("upload", res);
    },

    startSession,

    async putChunk(session, body, offset, final, signal) {
      const size = body.reduce((n, c) => n + c.byteLength, 0);
      const total = final ? String(final.total) : "*";
      const extra: http.OutgoingHttpHeaders = { "content-range": size > 0 ? `bytes ${offset}-${offset + size - 1}/${total}` : `bytes */${total}` };
      if (final) extra["x-goog-hash"] = `crc32c=${final.crc32c}`;
      const res = await send("upload", "PUT", session, extra, body, signal);
      if (res.statusCode === 308) {
        res.resume();
        // "bytes=0-N": GCS holds N + 1 bytes (no Range: none yet).
        const held = /^bytes=0-(\d+)$/.exec(String(res.headers.range ?? ""));
        return { persisted: held ? Number(held[1]) + 1 : 0 };
      }
      return { object: await json<FileMetadata>("upload", res) };
    },

    async compose(name, destination, sources, guards, signal) {
      const url = objectUrl(name, guardQuery(guards), "/compose");
      const payload = Buffer.from(JSON.stringify({ destination, sourceObjects: sources }));
      const res = await send("compose", "POST", url, { "content-type": "application/json; charset=UTF-8" }, [payload], signal);
      return json<FileMetadata>("compose", res);
    },

    close: () => agent.destroy(),
  };
}

/** GCS's message from a JSON error answer (or the start of a non-JSON one), for the cause. */
function errorMessage(text: string, status: number): string {
  try {
    const parsed = JSON.parse(text) as { error?: { message?: unknown } };
    if (typeof parsed.error?.message === "string") return parsed.error.message;
  } catch {
    // Not JSON (an XML error of the media path, a proxy's page).
  }
  return text.slice(0, 200) || `HTTP ${status}`;
}

/** The base64 of a CRC32C as GCS writes it (big-endian). */
export function crc32cBase64(crc: number): string {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(crc >>> 0);
  return b.toString("base64");
}
