/**
 * The one error type of the client: every failed call rejects with a
 * FileStorageError carrying the gRPC status code the daemon answered (or the
 * code grpc-js chose: UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED...).
 */
import { status, type Metadata } from "@grpc/grpc-js";

export class FileStorageError extends Error {
  override readonly name = "FileStorageError";

  constructor(
    /** The gRPC status code, e.g. `status.NOT_FOUND`. */
    readonly code: status,
    /** The daemon's message, without the code name. */
    readonly details: string,
    options?: { cause?: unknown; metadata?: Metadata },
  ) {
    super(`${codeName(code)}: ${details}`, { cause: options?.cause });
    this.metadata = options?.metadata;
  }

  /** Trailing metadata of the failed call, when there was one. */
  readonly metadata: Metadata | undefined;

  /** The status name, e.g. "NOT_FOUND". */
  get codeName(): string {
    return codeName(this.code);
  }

  /** True when `err` is a FileStorageError with one of `codes` (any code when none are given). */
  static is(err: unknown, ...codes: status[]): err is FileStorageError {
    return err instanceof FileStorageError && (codes.length === 0 || codes.includes(err.code));
  }

  /**
   * Wraps a grpc-js ServiceError (or anything thrown) as a FileStorageError,
   * keeping it as `cause`. A FileStorageError is returned unchanged.
   */
  static from(err: unknown): FileStorageError {
    if (err instanceof FileStorageError) return err;
    if (isServiceError(err)) {
      return new FileStorageError(err.code, err.details ?? err.message, { cause: err, metadata: err.metadata });
    }
    const message = err instanceof Error ? err.message : String(err);
    return new FileStorageError(status.UNKNOWN, message, { cause: err });
  }
}

/** "NOT_FOUND" for 5; "CODE_99" for a number grpc does not name. */
export function codeName(code: status): string {
  return status[code] ?? `CODE_${code}`;
}

function isServiceError(err: unknown): err is Error & { code: status; details?: string; metadata?: Metadata } {
  return err instanceof Error && typeof (err as { code?: unknown }).code === "number";
}
