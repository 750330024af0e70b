/**
 * GCS SDK failures translated where they arise: a StorageError per HTTP
 * status or network failure, the SDK's error kept as `cause`, messages
 * without the bucket name. UNAVAILABLE only for what says "GCS cannot be
 * reached" (network failures, HTTP 5xx and 408, timeouts), because the
 * breaker counts those: a request's own 4xx, a throttled object (429 is
 * RESOURCE_EXHAUSTED) or a fault on our side (INTERNAL) must not make GCS
 * look down for everybody.
 */
import { Code, StorageError, isTransient } from "../../storage-error.js";

const NETWORK_CODES = new Set([
  "ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "ESOCKETTIMEDOUT", "EPIPE", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH",
  "ENETUNREACH", "ECONNABORTED", "ERR_STREAM_PREMATURE_CLOSE", "UND_ERR_SOCKET", "UND_ERR_CONNECT_TIMEOUT",
]);

/** The HTTP status of an SDK error, if it has one. */
export function httpStatus(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === "number") return code;
  const status = (err as { response?: { status?: unknown; statusCode?: unknown } } | null)?.response;
  const s = status?.status ?? status?.statusCode;
  return typeof s === "number" ? s : undefined;
}

/** A StorageError for an SDK or network failure during `what`; the original is kept as `cause`. */
export function translate(what: string, err: unknown): StorageError {
  if (err instanceof StorageError) return err;
  const status = httpStatus(err);
  const code = (err as { code?: unknown; type?: unknown } | null)?.code;
  const type = (err as { type?: unknown } | null)?.type;
  const fail = (c: Code, msg: string) => new StorageError(c, msg, { cause: err });
  if (code === "CONTENT_DOWNLOAD_MISMATCH") return fail(Code.DataLoss, "GCS read: the CRC32C of the data does not match the object's");
  if (code === "FILE_NO_UPLOAD" || code === "FILE_NO_UPLOAD_DELETE") return fail(Code.DataLoss, "GCS upload: the CRC32C GCS computed does not match the data sent");
  // GCS refuses an upload whose CRC32C (sent with it) differs from its own: nothing was stored.
  if (status === 400 && /crc32c/i.test(err instanceof Error ? err.message : "")) {
    return fail(Code.DataLoss, `GCS ${what}: the CRC32C GCS computed does not match the one sent; nothing was stored`);
  }
  if (status === 412) return fail(Code.FailedPrecondition, `GCS ${what}: generation precondition failed`);
  if (status === 416) return fail(Code.OutOfRange, `GCS ${what}: the requested range is past the end of the object`);
  if (status === 404) return fail(Code.NotFound, `GCS ${what}: not found`);
  if (status === 401) return fail(Code.Unauthenticated, `GCS ${what}: the credentials were rejected`);
  if (status === 403) return fail(Code.PermissionDenied, `GCS ${what}: permission denied`);
  if (status === 400) return fail(Code.InvalidArgument, `GCS ${what}: the request was rejected as invalid (metadata too large?)`);
  // A throttled object (GCS allows about one write per second to one object): this caller's, not an outage.
  if (status === 429) return fail(Code.ResourceExhausted, `GCS ${what}: GCS is throttling requests for this object (HTTP 429); retry later`);
  if (status === 408 || (status !== undefined && status >= 500 && status !== 501)) {
    return fail(Code.Unavailable, `GCS ${what}: GCS answered HTTP ${status}`);
  }
  if ((typeof code === "string" && NETWORK_CODES.has(code)) || type === "system" || type === "request-timeout") {
    return fail(Code.Unavailable, `GCS ${what}: GCS is not reachable (${typeof code === "string" ? code : String(type)})`);
  }
  if (status !== undefined) return fail(Code.Internal, `GCS ${what}: unexpected HTTP ${status}`);
  // Not an answer from GCS nor a network failure: a fault on our side (a request
  // the SDK refused to build, a bug). It must not count as GCS being down.
  return fail(Code.Internal, `GCS ${what} failed: ${err instanceof Error ? err.name : "unknown error"}`);
}

/** Runs one SDK call, translating its failure; `miss.notFound` is returned for a 404 when given. */
export async function call<T, M = never>(what: string, fn: () => Promise<T>, miss?: { notFound: M }): Promise<T | M> {
  try {
    return await fn();
  } catch (err) {
    if (miss && httpStatus(err) === 404) return miss.notFound;
    throw translate(what, err);
  }
}

/** Worth another attempt: GCS was unreachable or slow, or throttled this object (HTTP 429). */
export function isRetryable(err: unknown): boolean {
  if (isTransient(err)) return true;
  return StorageError.is(err, Code.ResourceExhausted) && httpStatus(err.cause) === 429;
}
