/**
 * The one place errors become gRPC statuses. StorageError codes are gRPC
 * codes already; anything else is a bug or an untranslated platform error and
 * becomes INTERNAL with a request id, its details logged, never sent.
 */
import * as grpc from "@grpc/grpc-js";
import { randomUUID } from "node:crypto";
import { Code, StorageError } from "../storage-error.js";

export interface StatusLogger {
  error(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

/** A grpc-js status object for `err`, safe to send to a client. */
export function toStatus(err: unknown, method: string, log: StatusLogger): Partial<grpc.StatusObject> & { code: grpc.status; details: string } {
  if (err instanceof StorageError) {
    // Code uses gRPC's numbers, so the value is the status.
    const code = err.code as number as grpc.status;
    if (err.code === Code.Internal || err.code === Code.Unknown || err.code === Code.DataLoss) {
      const requestId = randomUUID();
      log.error({ requestId, method, err }, err.message);
      return { code, details: `${err.message} (request id ${requestId})` };
    }
    if (err.code === Code.Unavailable) log.warn({ method, err }, err.message);
    return { code, details: err.message };
  }
  const requestId = randomUUID();
  log.error({ requestId, method, err }, "unexpected error");
  return { code: grpc.status.INTERNAL, details: `internal error (request id ${requestId})` };
}

/** The status name ("NOT_FOUND") of a code, for metrics labels. */
export function statusName(code: grpc.status): string {
  return grpc.status[code] ?? String(code);
}
