/** Assertions on calls through the client package that must fail. */
import * as grpc from "@grpc/grpc-js";
import { FileStorageError } from "../../client/src/index.js";

/** Awaits `p` and returns the FileStorageError it rejected with; fails the test when it resolved. */
export async function failure(p: Promise<unknown>): Promise<FileStorageError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(FileStorageError);
    return err as FileStorageError;
  }
  throw new Error("expected the call to fail");
}

/** The gRPC status name ("NOT_FOUND") the call failed with. */
export async function codeOf(p: Promise<unknown>): Promise<string> {
  return String(grpc.status[(await failure(p)).code]);
}
