/** Turning the client's option values into request fields. */
import * as grpc from "@grpc/grpc-js";
import type { JsonObject } from "@bufbuild/protobuf";
import { FileStorageError } from "./file-storage-error.js";

/** A generation or precondition as the int64 field wants it. */
export function optionalBigInt(value: bigint | number | undefined): bigint | undefined {
  return value === undefined ? undefined : BigInt(value);
}

/**
 * Metadata as a google.protobuf.Struct. Struct values must be JSON; a JSON
 * round trip drops undefined members the way JSON.stringify callers expect,
 * and rejects (INVALID_ARGUMENT) what JSON cannot hold.
 */
export function toStruct(metadata: Record<string, unknown> | undefined): JsonObject | undefined {
  if (metadata === undefined) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(JSON.stringify(metadata)) as unknown;
  } catch (err) {
    throw new FileStorageError(grpc.status.INVALID_ARGUMENT, `metadata must be JSON: ${(err as Error).message}`);
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    throw new FileStorageError(grpc.status.INVALID_ARGUMENT, "metadata must be a plain object");
  }
  return json as JsonObject;
}

/** A message field the daemon always sets; INTERNAL when it did not. */
export function required<T>(value: T | undefined): T {
  if (value === undefined) throw new FileStorageError(grpc.status.INTERNAL, "the daemon answered without an ObjectInfo");
  return value;
}
