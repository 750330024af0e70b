/**
 * The stored format of encrypted objects: headers, segment nonces and the
 * associated data (AAD) each AES-256-GCM segment is sealed with.
 *
 * Header (every encrypted object starts with one):
 *   v1  "FSE1" | 1 | key id (8) | nonce base (12) | segment size (uint32 BE)                       29 bytes
 *   v2  "FSE1" | 2 | key id (8) | nonce base (12) | segment size (uint32 BE) | object id (16)     45 bytes
 *
 * Segment i uses nonce = nonce base XOR i (in the low 8 bytes) and
 *   v1  AAD = header | i (uint64 BE) | final (1 byte)
 *   v2  AAD = header | sha256(binding) | i (uint64 BE) | final (1 byte) [| original size (uint64 BE), final segment only]
 * where the binding is the object's key, kind and compression, length-prefixed.
 * So a v2 segment opens only under the key it was written for, as the kind
 * and compression its record claims, in its place, with the object id its
 * record holds (the header is in the AAD), and its final segment only when
 * the record's original size is the one written. Nothing tier-specific
 * (generation, tier, timestamps) is bound: the replicator copies stored bytes
 * verbatim from the local tier to GCS, and the copy must still open.
 *
 * v1 objects (written before format 2) are still read; they are bound to
 * nothing but their own header, so a bucket writer can move them between keys.
 */
import { createHash, randomBytes } from "node:crypto";
import { dataLoss } from "../storage-error.js";
import { KEY_ID_BYTES } from "./keyring.js";

const MAGIC = Buffer.from("FSE1", "latin1");
/** The format new writes use. */
export const FORMAT_VERSION = 2;
const NONCE_BYTES = 12;
const OBJECT_ID_BYTES = 16;
/** Magic and version: enough to know how long the header is. */
const PREFIX_BYTES = MAGIC.length + 1;
const HEADER_V1_BYTES = PREFIX_BYTES + KEY_ID_BYTES + NONCE_BYTES + 4;
/** Bytes of the header new writes start with (format 2), also the longest header. */
export const HEADER_BYTES = HEADER_V1_BYTES + OBJECT_ID_BYTES;
/** A header claiming more is corrupt: it would make a reader buffer that much. */
const MAX_SEGMENT_BYTES = 16 * 1024 * 1024;
const BINDING_DOMAIN = Buffer.from("filestorage encrypted object v2\0", "latin1");

/**
 * The encryption part of an object's encoding record as the codec writes it:
 * format 2 adds `objectId` (32 hex chars, random per write), which must equal
 * the one in the stored header. A record without it describes a v1 object.
 */
export interface EncryptionRecord {
  keyId: string;
  objectId?: string;
}

/** The parsed header of an encrypted object. */
export interface EncryptionHeader {
  version: 1 | 2;
  keyId: string;
  nonceBase: Buffer;
  segmentBytes: number;
  /** Format 2 only: the object id (32 hex chars). */
  objectId?: string;
  /** The header bytes as stored; part of every segment's AAD. */
  raw: Buffer;
}

/** What the record says an object is; a v2 segment opens only when it matches what was written. */
export interface ObjectBinding {
  key: string;
  kind: string;
  /** The record's compression ("gzip"), undefined when uncompressed. */
  compression?: string;
}

/** A fresh object id for a write (32 hex chars). */
export function newObjectId(): string {
  return randomBytes(OBJECT_ID_BYTES).toString("hex");
}

/** A fresh nonce base for a write. */
export function newNonceBase(): Buffer {
  return randomBytes(NONCE_BYTES);
}

/** The format 2 header of a new object. */
export function encodeHeader(keyId: string, nonceBase: Buffer, segmentBytes: number, objectId: string): EncryptionHeader {
  const raw = Buffer.alloc(HEADER_BYTES);
  let at = MAGIC.copy(raw, 0);
  at = raw.writeUInt8(FORMAT_VERSION, at);
  at += Buffer.from(keyId, "hex").copy(raw, at);
  at += nonceBase.copy(raw, at);
  at = raw.writeUInt32BE(segmentBytes, at);
  Buffer.from(objectId, "hex").copy(raw, at);
  return { version: 2, keyId, nonceBase, segmentBytes, objectId, raw };
}

/**
 * The length of the header `prefix` starts (it needs at least 5 bytes, else
 * undefined); DATA_LOSS when they are not the start of an encrypted object.
 */
export function headerLength(prefix: Buffer): number | undefined {
  if (prefix.length < PREFIX_BYTES) return undefined;
  if (!prefix.subarray(0, MAGIC.length).equals(MAGIC)) {
    throw dataLoss("stored data is not in the encrypted format (bad header)");
  }
  const version = prefix.readUInt8(MAGIC.length);
  if (version === 1) return HEADER_V1_BYTES;
  if (version === 2) return HEADER_BYTES;
  throw dataLoss(`stored data uses encryption format version ${version}; this server reads versions 1 and 2`);
}

/** Parses the header at the start of `raw` (which may hold more); DATA_LOSS when it is not a valid header. */
export function parseHeader(raw: Buffer): EncryptionHeader {
  const length = headerLength(raw);
  if (length === undefined || raw.length < length) throw dataLoss("stored data failed authentication (truncated header)");
  const version = raw.readUInt8(MAGIC.length) as 1 | 2;
  let at = PREFIX_BYTES;
  const keyId = raw.toString("hex", at, at + KEY_ID_BYTES);
  at += KEY_ID_BYTES;
  const nonceBase = Buffer.from(raw.subarray(at, at + NONCE_BYTES));
  at += NONCE_BYTES;
  const segmentBytes = raw.readUInt32BE(at);
  at += 4;
  if (segmentBytes < 1 || segmentBytes > MAX_SEGMENT_BYTES) {
    throw dataLoss(`stored data has an invalid encryption segment size (${segmentBytes})`);
  }
  const header: EncryptionHeader = { version, keyId, nonceBase, segmentBytes, raw: Buffer.from(raw.subarray(0, length)) };
  if (version === 2) header.objectId = raw.toString("hex", at, at + OBJECT_ID_BYTES);
  return header;
}

/** The nonce of segment `index`. */
export function segmentNonce(base: Buffer, index: number): Buffer {
  const nonce = Buffer.from(base);
  // XOR the index into the low 8 bytes; indexes stay below 2^53.
  nonce.writeUInt32BE((nonce.readUInt32BE(4) ^ Math.floor(index / 2 ** 32)) >>> 0, 4);
  nonce.writeUInt32BE((nonce.readUInt32BE(8) ^ index) >>> 0, 8);
  return nonce;
}

/** Builds the AAD of one segment: its index, whether it is final, and (v2) the object's size. */
export type SegmentAad = (index: number, final: boolean, originalSize?: number) => Buffer;

/**
 * The AAD builder of an object with `header`. For v2 it binds `binding` and
 * needs the original size for the final segment; v1 ignores both.
 */
export function segmentAad(header: EncryptionHeader, binding: ObjectBinding): SegmentAad {
  if (header.version === 1) {
    return (index, final) => {
      const aad = Buffer.alloc(header.raw.length + 9);
      header.raw.copy(aad, 0);
      aad.writeBigUInt64BE(BigInt(index), header.raw.length);
      aad.writeUInt8(final ? 1 : 0, header.raw.length + 8);
      return aad;
    };
  }
  // A digest keeps the AAD short whatever the key's length (up to 1 KiB):
  // GHASH runs over the AAD of every 64 KiB segment.
  const digest = bindingDigest(binding);
  const fixed = Buffer.concat([header.raw, digest]);
  return (index, final, originalSize) => {
    const aad = Buffer.alloc(fixed.length + 9 + (final ? 8 : 0));
    let at = fixed.copy(aad, 0);
    at = aad.writeBigUInt64BE(BigInt(index), at);
    at = aad.writeUInt8(final ? 1 : 0, at);
    if (final) {
      if (originalSize === undefined || !Number.isSafeInteger(originalSize) || originalSize < 0) {
        throw new Error(`the final segment needs the original size, got ${originalSize}`);
      }
      aad.writeBigUInt64BE(BigInt(originalSize), at);
    }
    return aad;
  };
}

/** sha256 of the domain and the binding's fields, each length-prefixed so no two bindings encode alike. */
function bindingDigest(binding: ObjectBinding): Buffer {
  const hash = createHash("sha256").update(BINDING_DOMAIN);
  for (const field of [binding.key, binding.kind, binding.compression ?? ""]) {
    const bytes = Buffer.from(field, "utf8");
    const length = Buffer.alloc(4);
    length.writeUInt32BE(bytes.length);
    hash.update(length).update(bytes);
  }
  return hash.digest();
}
