/**
 * The one error type of the storage layers. Codes use gRPC's numbers so the
 * RPC edge maps them without a table; everything below the edge throws only
 * StorageError (platform errors are translated where they arise and kept as
 * `cause`). Messages are safe for clients: never paths, bucket names or stacks.
 */
export enum Code {
  Cancelled = 1,
  Unknown = 2,
  InvalidArgument = 3,
  DeadlineExceeded = 4,
  NotFound = 5,
  AlreadyExists = 6,
  PermissionDenied = 7,
  ResourceExhausted = 8,
  FailedPrecondition = 9,
  Aborted = 10,
  OutOfRange = 11,
  Unimplemented = 12,
  Internal = 13,
  Unavailable = 14,
  DataLoss = 15,
  Unauthenticated = 16,
}

export class StorageError extends Error {
  override readonly name = "StorageError";

  constructor(
    readonly code: Code,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  /** True when `err` is a StorageError with one of `codes`. */
  static is(err: unknown, ...codes: Code[]): err is StorageError {
    return err instanceof StorageError && (codes.length === 0 || codes.includes(err.code));
  }
}

/** The one rule for "the tier was unreachable or too slow; try again": UNAVAILABLE, DEADLINE_EXCEEDED. */
export const isTransient = (e: unknown): boolean => StorageError.is(e, Code.Unavailable, Code.DeadlineExceeded);

/** Shorthands for the errors every layer raises. */
export const invalidArgument = (msg: string) => new StorageError(Code.InvalidArgument, msg);
export const failedPrecondition = (msg: string) => new StorageError(Code.FailedPrecondition, msg);
export const unavailable = (msg: string, cause?: unknown) =>
  new StorageError(Code.Unavailable, msg, { cause });
export const dataLoss = (msg: string, cause?: unknown) => new StorageError(Code.DataLoss, msg, { cause });

/** The precondition failure every backend reports the same way. */
export function generationMismatch(key: string, expected: bigint, actual: bigint | undefined): StorageError {
  const now = actual === undefined ? "the object does not exist" : `its generation is ${actual}`;
  const want = expected === 0n ? "absent (if_generation_match=0)" : `generation ${expected}`;
  return failedPrecondition(`generation precondition failed for key "${key}": expected ${want}, but ${now}`);
}
