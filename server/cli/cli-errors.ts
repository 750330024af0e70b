/**
 * How the `filestorage` client commands fail: always one line on stderr,
 * `filestorage: <CODE>: <message>`, where CODE is a gRPC status name, and
 * an exit code that follows it:
 *
 * | exit | when |
 * |------|------|
 * | 0    | done |
 * | 1    | any failure not below (UNAVAILABLE, PERMISSION_DENIED, DATA_LOSS, ...) |
 * | 2    | the command line was wrong (INVALID_ARGUMENT: usage, a bad flag or key) or named nothing (NOT_FOUND: a missing key or local file) |
 *
 * Problems with local files named on the command line read as the daemon's
 * statuses do (the table below) and name the path as it was typed, never a
 * temporary file (`<file>.g<N>.partial`) and never a stack trace:
 *
 * | errno | code |
 * |-------|------|
 * | ENOENT | NOT_FOUND (reading: no such file; writing: its folder does not exist) |
 * | EACCES, EPERM, EROFS | PERMISSION_DENIED |
 * | EISDIR, ENOTDIR | INVALID_ARGUMENT (a folder where a file is wanted, or the reverse) |
 * | ENOSPC, EDQUOT | RESOURCE_EXHAUSTED |
 * | any other | UNKNOWN, naming the errno code |
 */
import { FileStorageError, status } from "../../client/src/index.js";

export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

/** A usage error found by the CLI before any call: INVALID_ARGUMENT, exit 2. */
export function usageError(message: string): FileStorageError {
  return new FileStorageError(status.INVALID_ARGUMENT, message);
}

/** The exit code of a failure with `code` (see the table above). */
export function exitCodeOf(code: status): number {
  return code === status.INVALID_ARGUMENT || code === status.NOT_FOUND ? EXIT_USAGE : EXIT_FAILED;
}

type Access = "read" | "write";

/** A local file problem already described (by the path as typed). */
class LocalFileError extends FileStorageError {}

/**
 * The failure a local file operation on `file` (as the user typed it) met,
 * as a FileStorageError with the code of the errno table; `err` is kept as
 * the cause. Anything that is not a system error is returned as it is.
 */
export function localFileError(err: unknown, file: string, access: Access): unknown {
  // A status the daemon (or the client) chose stays as it is; only a raw system error, or one the client could only call UNKNOWN, is local.
  if (err instanceof LocalFileError || (err instanceof FileStorageError && err.code !== status.UNKNOWN)) return err;
  const sys = systemErrorIn(err);
  if (!sys) return err;
  const [code, message] = describeErrno(sys.code!, file, access);
  return new LocalFileError(code, message, { cause: err });
}

function describeErrno(errno: string, file: string, access: Access): [status, string] {
  switch (errno) {
    case "ENOENT":
      return access === "read" ? [status.NOT_FOUND, `no such file ${file}`] : [status.NOT_FOUND, `cannot write ${file}: its folder does not exist`];
    case "EACCES":
    case "EPERM":
      return [status.PERMISSION_DENIED, `permission denied ${access === "read" ? "reading" : "writing"} ${file}`];
    case "EROFS":
      return [status.PERMISSION_DENIED, `cannot write ${file}: read-only file system`];
    case "EISDIR":
      return [status.INVALID_ARGUMENT, `${file} is a folder, not a file`];
    case "ENOTDIR":
      return [status.INVALID_ARGUMENT, `${file}: a part of the path is not a folder`];
    case "ENOSPC":
    case "EDQUOT":
      return [status.RESOURCE_EXHAUSTED, `no space left on the device writing ${file}`];
    default:
      return [status.UNKNOWN, `cannot ${access} ${file}: ${errno}`];
  }
}

/** The first Node system error (one with a string errno `code`) in `err` or its causes. */
function systemErrorIn(err: unknown): NodeJS.ErrnoException | undefined {
  for (let e = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (typeof (e as NodeJS.ErrnoException).code === "string" && (e as NodeJS.ErrnoException).syscall !== undefined) return e as NodeJS.ErrnoException;
  }
  return undefined;
}

/** grpc-js's own words when no connection could be made (the daemon never answered). */
const NO_CONNECTION = /^(No connection established|Connection dropped|failed to connect to all addresses|Name resolution failed)/i;

/**
 * The line to print for whatever a command threw, as a FileStorageError:
 * a daemon that cannot be reached becomes `cannot reach the daemon at ADDR`,
 * a system error not mapped at its call site is named by its own path, and
 * anything else keeps its message without a stack.
 */
export function describeFailure(err: unknown, address: string): FileStorageError {
  if (err instanceof LocalFileError) return err;
  if (err instanceof FileStorageError) {
    if (err.code === status.UNAVAILABLE && NO_CONNECTION.test(err.details)) {
      const tls = /SSL|TLS|certificate|handshake/i.test(err.details) ? " over TLS: the handshake failed (check --tls-ca, --tls-cert, --tls-server-name)" : " (is it running? --address)";
      return new FileStorageError(status.UNAVAILABLE, `cannot reach the daemon at ${address}${tls}`, { cause: err });
    }
    // grpc-js's own deadline (the daemon never answered in time); the daemon's DEADLINE_EXCEEDED messages are its own words.
    if (err.code === status.DEADLINE_EXCEEDED && /^Deadline exceeded after/.test(err.details)) {
      return new FileStorageError(status.DEADLINE_EXCEEDED, `the daemon at ${address} did not answer in time (is it overloaded, or the address wrong? --address)`, { cause: err });
    }
    const sys = err.code === status.UNKNOWN ? systemErrorIn(err.cause) : undefined;
    return sys ? (localFileError(sys, sys.path ?? "a local file", "read") as FileStorageError) : err;
  }
  const sys = systemErrorIn(err);
  if (sys) return localFileError(sys, sys.path ?? "a local file", "read") as FileStorageError;
  return new FileStorageError(status.UNKNOWN, err instanceof Error ? err.message : String(err), { cause: err });
}

/** Prints `filestorage: CODE: message` for `err` and returns its exit code. */
export function reportFailure(err: unknown, address: string): number {
  const failure = describeFailure(err, address);
  process.stderr.write(`filestorage: ${failure.codeName}: ${failure.details}\n`);
  return exitCodeOf(failure.code);
}
