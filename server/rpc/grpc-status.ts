/**
 * The one place errors become gRPC statuses. StorageError codes are gRPC
 * codes already; anything else is a bug or an untranslated platform error and
 * becomes INTERNAL, its details logged, never sent.
 *
 * Every failed call gets a request id: it is on the log line (error for
 * INTERNAL, UNKNOWN and DATA_LOSS; warn for UNAVAILABLE and DEADLINE_EXCEEDED;
 * debug for the caller's own mistakes) and in the trailing metadata
 * `x-request-id`, and for the server-side failures also in the message, so an
 * operator can find the log line from what a client reports.
 */
import * as grpc from "@grpc/grpc-js";
import { randomUUID } from "node:crypto";
import { Code, StorageError } from "../storage-error.js";

export interface StatusLogger {
  error(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  debug?(obj: object, msg: string): void;
}

/** Trailing metadata key carrying the request id of a failed call. */
export const REQUEST_ID_METADATA = "x-request-id";

// Failures of the server or its data: logged as errors, the id goes in the message.
const SERVER_FAULTS = new Set([Code.Internal, Code.Unknown, Code.DataLoss]);
// Failures of a dependency or of time: worth a warning.
const DEGRADED = new Set([Code.Unavailable, Code.DeadlineExceeded]);

/** A grpc-js status object for `err`, safe to send to a client. */
export function toStatus(
  err: unknown,
  method: string,
  log: StatusLogger,
  /** The call's id when it has one already (a traced call carries it on its span). */
  requestId: string = randomUUID(),
): Partial<grpc.StatusObject> & { code: grpc.status; details: string } {
  const metadata = new grpc.Metadata();
  metadata.set(REQUEST_ID_METADATA, requestId);
  if (!(err instanceof StorageError)) {
    log.error({ requestId, method, err }, "unexpected error");
    return { code: grpc.status.INTERNAL, details: `internal error (request id ${requestId})`, metadata };
  }
  // Code uses gRPC's numbers, so the value is the status.
  const code = err.code as number as grpc.status;
  const fields = { requestId, method, code: statusName(code), err };
  if (SERVER_FAULTS.has(err.code)) {
    log.error(fields, err.message);
    return { code, details: `${err.message} (request id ${requestId})`, metadata };
  }
  if (DEGRADED.has(err.code)) log.warn(fields, err.message);
  else log.debug?.(fields, err.message);
  return { code, details: err.message, metadata };
}

/** The status name ("NOT_FOUND") of a code, for metrics labels. */
export function statusName(code: grpc.status): string {
  return grpc.status[code] ?? String(code);
}
