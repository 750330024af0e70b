/**
 * How values become bytes and back. The wire always carries bytes; the kind
 * says how to read them. Nothing is ever guessed from the bytes themselves: a
 * string that looks like JSON stays a string.
 */
import { status } from "@grpc/grpc-js";
import { DataKind } from "../../gen/filestorage/v1/file_storage_pb.js";
import { FileStorageError } from "./file-storage-error.js";

/** The kinds callers name: bytes (Buffer), text (string), json (any JSON value). */
export type DataKindName = "bytes" | "text" | "json";

/** A value and the kind it will be stored as. */
export interface EncodedValue {
  bytes: Uint8Array;
  kind: DataKind;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Encodes `data` for Store. Without `kind`: string -> TEXT (UTF-8),
 * Uint8Array/Buffer -> BYTES, ArrayBuffer -> BYTES, anything else JSON can
 * represent (object, array, number, boolean, null) -> JSON.
 * With `kind`: a Uint8Array is sent as it is (already-encoded text or JSON,
 * the daemon checks it); "text" and "bytes" take a string as UTF-8; "json"
 * serializes any other value, a string included (it comes back a string).
 * Throws FileStorageError INVALID_ARGUMENT for what cannot be encoded
 * (undefined, functions, symbols, bigint, cycles).
 */
export function encodeValue(data: unknown, kind?: DataKindName): EncodedValue {
  const binary = asBytes(data);
  const target = kind === undefined ? inferKind(data, binary) : dataKindOf(kind);
  if (binary) return { bytes: binary, kind: target };
  if (target === DataKind.JSON) return { bytes: Buffer.from(toJson(data), "utf8"), kind: target };
  if (typeof data === "string") return { bytes: Buffer.from(data, "utf8"), kind: target };
  throw invalid(`kind "${kindName(target)}" needs a string or bytes, got ${describe(data)}`);
}

/**
 * Decodes stored bytes by kind: TEXT -> string, JSON -> the parsed value,
 * BYTES (and UNSPECIFIED) -> a Buffer over the same memory.
 */
export function decodeValue(bytes: Uint8Array, kind: DataKind): unknown {
  switch (kind) {
    case DataKind.TEXT:
      return utf8.decode(bytes);
    case DataKind.JSON:
      return JSON.parse(utf8.decode(bytes)) as unknown;
    default:
      return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
}

/** The wire enum for a kind name; throws INVALID_ARGUMENT for anything else. */
export function dataKindOf(name: string): DataKind {
  switch (name) {
    case "bytes":
      return DataKind.BYTES;
    case "text":
      return DataKind.TEXT;
    case "json":
      return DataKind.JSON;
    default:
      throw invalid(`kind must be "bytes", "text" or "json", got "${name}"`);
  }
}

/** The name of a wire kind; UNSPECIFIED reads as "bytes". */
export function kindName(kind: DataKind): DataKindName {
  return kind === DataKind.TEXT ? "text" : kind === DataKind.JSON ? "json" : "bytes";
}

function inferKind(data: unknown, binary: Uint8Array | undefined): DataKind {
  if (binary) return DataKind.BYTES;
  if (typeof data === "string") return DataKind.TEXT;
  return DataKind.JSON;
}

function asBytes(data: unknown): Uint8Array | undefined {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  return undefined;
}

function toJson(data: unknown): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(data);
  } catch (err) {
    throw invalid(`value cannot be stored as JSON: ${(err as Error).message}`);
  }
  if (text === undefined) throw invalid(`value cannot be stored as JSON: ${describe(data)}`);
  return text;
}

function describe(data: unknown): string {
  return data === null ? "null" : Array.isArray(data) ? "an array" : typeof data;
}

function invalid(message: string): FileStorageError {
  return new FileStorageError(status.INVALID_ARGUMENT, message);
}
