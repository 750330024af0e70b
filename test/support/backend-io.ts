/**
 * Calling a Backend from a test: sources in chunks, whole bodies, and the
 * StorageError a call must fail with. Shared by the conformance suite and the
 * unit tests of the backends and layers.
 */
import type { Readable } from "node:stream";
import { Code, StorageError } from "../../server/storage-error.js";

/** Yields `data` in slices of `chunkSize` bytes (fresh copies, like a network source). */
export async function* chunked(data: Uint8Array, chunkSize = 64 * 1024): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < data.length; at += chunkSize) {
    yield Buffer.from(data.subarray(at, Math.min(at + chunkSize, data.length)));
  }
}

/** Reads a whole body (test-only: fine to hold it in memory). */
export async function readBody(body: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of body) parts.push(Buffer.from(chunk as Uint8Array));
  return Buffer.concat(parts);
}

/** Awaits `promise` and returns the StorageError it rejected with; fails when it resolved. */
export async function expectStorageError(promise: Promise<unknown>, ...codes: Code[]): Promise<StorageError> {
  let resolved = false;
  try {
    await promise;
    resolved = true;
  } catch (err) {
    if (!(err instanceof StorageError)) throw new Error(`expected a StorageError, got: ${String(err)}`, { cause: err });
    if (codes.length > 0 && !codes.includes(err.code)) {
      throw new Error(`expected code ${codes.map((c) => Code[c]).join("|")}, got ${Code[err.code]}: ${err.message}`);
    }
    return err;
  }
  if (resolved) throw new Error(`expected a StorageError ${codes.map((c) => Code[c]).join("|")}, but it resolved`);
  throw new Error("unreachable");
}
