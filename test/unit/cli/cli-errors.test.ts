/**
 * The CLI's error lines and exit codes (server/cli/cli-errors.ts): grpc-js's
 * words for a daemon that never answered become one line naming the address;
 * system errors become the documented statuses, named by the path as typed.
 */
import { FileStorageError, status } from "../../../client/src/index.js";
import { describeFailure, exitCodeOf, localFileError } from "../../../server/cli/cli-errors.js";

const sysError = (code: string, file: string) => Object.assign(new Error(`${code}: something, open '${file}'`), { code, syscall: "open", path: file });
const line = (err: unknown) => {
  const f = describeFailure(err, "127.0.0.1:50051");
  return `${f.codeName}: ${f.details}`;
};

test("a daemon that cannot be reached or does not answer is named by its address", () => {
  expect(line(new FileStorageError(status.UNAVAILABLE, "No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:50051"))).toBe(
    "UNAVAILABLE: cannot reach the daemon at 127.0.0.1:50051 (is it running? --address)",
  );
  expect(line(new FileStorageError(status.UNAVAILABLE, "No connection established. Last error: Error: 1 SSL routines:ssl3_get_record:wrong version number"))).toBe(
    "UNAVAILABLE: cannot reach the daemon at 127.0.0.1:50051 over TLS: the handshake failed (check --tls-ca, --tls-cert, --tls-server-name)",
  );
  expect(line(new FileStorageError(status.DEADLINE_EXCEEDED, "Deadline exceeded after 30.001s,LB pick: 0.001s,remote_addr=127.0.0.1:50051"))).toBe(
    "DEADLINE_EXCEEDED: the daemon at 127.0.0.1:50051 did not answer in time (is it overloaded, or the address wrong? --address)",
  );
  // The daemon's own statuses keep their words.
  expect(line(new FileStorageError(status.UNAVAILABLE, "GCS is unreachable: 1 write still pending"))).toBe("UNAVAILABLE: GCS is unreachable: 1 write still pending");
  expect(line(new FileStorageError(status.DEADLINE_EXCEEDED, "flush stopped after its timeout (1 s)"))).toBe("DEADLINE_EXCEEDED: flush stopped after its timeout (1 s)");
});

test("system errors map to the documented codes and name the path given, for reading and writing", () => {
  const cases: [string, "read" | "write", string][] = [
    ["ENOENT", "read", "NOT_FOUND: no such file ./in.bin"],
    ["ENOENT", "write", "NOT_FOUND: cannot write ./in.bin: its folder does not exist"],
    ["EACCES", "read", "PERMISSION_DENIED: permission denied reading ./in.bin"],
    ["EPERM", "write", "PERMISSION_DENIED: permission denied writing ./in.bin"],
    ["EROFS", "write", "PERMISSION_DENIED: cannot write ./in.bin: read-only file system"],
    ["EISDIR", "read", "INVALID_ARGUMENT: ./in.bin is a folder, not a file"],
    ["ENOTDIR", "write", "INVALID_ARGUMENT: ./in.bin: a part of the path is not a folder"],
    ["ENOSPC", "write", "RESOURCE_EXHAUSTED: no space left on the device writing ./in.bin"],
    ["EDQUOT", "write", "RESOURCE_EXHAUSTED: no space left on the device writing ./in.bin"],
    ["EIO", "read", "UNKNOWN: cannot read ./in.bin: EIO"],
  ];
  for (const [code, access, expected] of cases) {
    // As the client reports a failed stream: UNKNOWN with the system error as its cause, and the temp file's name in it.
    const wrapped = new FileStorageError(status.UNKNOWN, "EACCES: open './in.bin.g7.partial'", { cause: sysError(code, "./in.bin.g7.partial") });
    expect({ code, access, line: line(localFileError(wrapped, "./in.bin", access)) }).toEqual({ code, access, line: expected });
  }
  // A status the daemon chose is not a local problem.
  const dataLoss = new FileStorageError(status.DATA_LOSS, "download does not match");
  expect(localFileError(dataLoss, "./in.bin", "write")).toBe(dataLoss);
  // Anything else keeps its message and never its stack.
  expect(line(new TypeError("boom"))).toBe("UNKNOWN: boom");
});

test("exit 2 for INVALID_ARGUMENT and NOT_FOUND, 1 for every other failure", () => {
  expect([status.INVALID_ARGUMENT, status.NOT_FOUND].map(exitCodeOf)).toEqual([2, 2]);
  const others = [status.UNAVAILABLE, status.PERMISSION_DENIED, status.DATA_LOSS, status.FAILED_PRECONDITION, status.RESOURCE_EXHAUSTED, status.UNKNOWN, status.DEADLINE_EXCEEDED];
  expect(others.map(exitCodeOf)).toEqual(others.map(() => 1));
});
