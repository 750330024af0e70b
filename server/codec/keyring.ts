/**
 * The AES-256 keys of the codec. New writes use the primary key; reads find
 * the key by the id stored with the object, so keys can rotate: make the new
 * key primary and keep the old ones as `previous` until nothing uses them.
 * A key id is derived from the key and reveals nothing about it.
 */
import { createHash } from "node:crypto";
import { invalidArgument } from "../storage-error.js";

/** AES-256 needs exactly this many key bytes. */
export const KEY_BYTES = 32;

/** Bytes of a key id as stored in the encryption header (16 hex chars). */
export const KEY_ID_BYTES = 8;

/** The keys the codec encrypts and decrypts with; key bytes never leave it in messages. */
export interface Keyring {
  /** The key new writes use, with its id. */
  readonly primary: { readonly id: string; readonly key: Buffer };
  /** The key with this id, or undefined when the keyring lacks it. */
  get(id: string): Buffer | undefined;
}

/** The id of a key: the first 16 hex chars of sha256("filestorage-key-id" + key). */
export function deriveKeyId(key: Buffer): string {
  return createHash("sha256")
    .update("filestorage-key-id")
    .update(key)
    .digest("hex")
    .slice(0, KEY_ID_BYTES * 2);
}

/**
 * A keyring of a primary key and older keys still readable. Every key must be
 * 32 bytes (INVALID_ARGUMENT otherwise; the message never shows key bytes).
 * The keys are copied, so later changes to the caller's buffers do not leak in.
 */
export function createKeyring(keys: { primary: Buffer; previous?: Buffer[] }): Keyring {
  const byId = new Map<string, Buffer>();
  const add = (key: Buffer, which: string): string => {
    if (key.length !== KEY_BYTES) {
      throw invalidArgument(`${which} encryption key must be ${KEY_BYTES} bytes, got ${key.length}`);
    }
    const id = deriveKeyId(key);
    if (!byId.has(id)) byId.set(id, Buffer.from(key));
    return id;
  };
  (keys.previous ?? []).forEach((key, i) => add(key, `previous[${i}]`));
  const primaryId = add(keys.primary, "primary");
  const primary = { id: primaryId, key: byId.get(primaryId)! };
  return {
    primary,
    get: (id) => byId.get(id),
  };
}
