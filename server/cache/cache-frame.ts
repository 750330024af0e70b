/**
 * The authenticated frame one shared-cache entry is kept in (Redis value).
 *
 *   [1 byte version = 1][32 bytes HMAC-SHA256][8 bytes big-endian cachedUntil, Unix ms]
 *   [4 bytes big-endian JSON length][record JSON, generation as a string][raw bytes]
 *
 * The HMAC, keyed with the store's cache key (cache-key.ts), covers the Redis
 * key the frame is stored under (length-prefixed; it holds the store's
 * namespace and the object key) and every byte of the frame except the MAC
 * itself. So a frame is served only if a daemon of the same store wrote it
 * under that very key: a frame planted by someone who can only reach Redis,
 * altered, truncated, moved to another key or copied from another store's
 * namespace fails. `cachedUntil` is authenticated too, so a replayed old frame
 * is refused once its cache lifetime is over, even if Redis was told to keep it.
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import { recordFromJson, recordToJson, type CachedObject } from "./cache-store.js";

const VERSION = 1;
const MAC_BYTES = 32;
const HEADER_BYTES = 1 + MAC_BYTES + 8 + 4;

/** Why a frame was not accepted; a rejected frame is a miss. */
export type FrameVerdict =
  | { ok: true; entry: CachedObject }
  | { ok: false; reason: "expired" }
  | { ok: false; reason: "malformed" | "bad-mac" | "wrong-key" };

/** The frame of `entry`, stored under `redisKey` and valid until `cachedUntil` (Unix ms). */
export function encodeFrame(entry: CachedObject, opts: { key: Buffer; redisKey: string; cachedUntil: number }): Buffer {
  const json = Buffer.from(recordToJson(entry.record), "utf8");
  const header = Buffer.alloc(HEADER_BYTES);
  header.writeUInt8(VERSION, 0);
  header.writeBigUInt64BE(BigInt(Math.max(0, Math.floor(opts.cachedUntil))), 1 + MAC_BYTES);
  header.writeUInt32BE(json.length, 1 + MAC_BYTES + 8);
  const frame = Buffer.concat([header, json, entry.bytes], HEADER_BYTES + json.length + entry.bytes.length);
  mac(opts.key, opts.redisKey, frame).copy(frame, 1);
  return frame;
}

/**
 * Checks and opens a frame read from `redisKey` for object key `key`. Never
 * throws: anything but an authentic, unexpired frame of this key is a verdict
 * with ok false. The bytes of an accepted entry are a view of `frame`.
 */
export function decodeFrame(frame: Buffer, opts: { key: Buffer; redisKey: string; objectKey: string; now?: number }): FrameVerdict {
  if (frame.length < HEADER_BYTES || frame.readUInt8(0) !== VERSION) return { ok: false, reason: "malformed" };
  const jsonLength = frame.readUInt32BE(1 + MAC_BYTES + 8);
  if (jsonLength > frame.length - HEADER_BYTES) return { ok: false, reason: "malformed" };
  if (!timingSafeEqual(frame.subarray(1, 1 + MAC_BYTES), mac(opts.key, opts.redisKey, frame))) return { ok: false, reason: "bad-mac" };
  // Authentic from here on: a daemon of this store wrote exactly this.
  const cachedUntil = Number(frame.readBigUInt64BE(1 + MAC_BYTES));
  if (cachedUntil <= (opts.now ?? Date.now())) return { ok: false, reason: "expired" };
  let entry: CachedObject;
  try {
    const record = recordFromJson(frame.subarray(HEADER_BYTES, HEADER_BYTES + jsonLength).toString("utf8"));
    entry = { record, bytes: frame.subarray(HEADER_BYTES + jsonLength) };
  } catch {
    return { ok: false, reason: "malformed" };
  }
  if (entry.record.key !== opts.objectKey) return { ok: false, reason: "wrong-key" };
  return { ok: true, entry };
}

/** HMAC-SHA256 over the Redis key and the frame without its MAC field. */
function mac(key: Buffer, redisKey: string, frame: Buffer): Buffer {
  const name = Buffer.from(redisKey, "utf8");
  const length = Buffer.alloc(4);
  length.writeUInt32BE(name.length, 0);
  return createHmac("sha256", key)
    .update(length)
    .update(name)
    .update(frame.subarray(0, 1))
    .update(frame.subarray(1 + MAC_BYTES))
    .digest();
}
