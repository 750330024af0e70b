/**
 * The shared-cache namespace of a store: a prefix of every Redis key the
 * daemons of one store use, derived from what identifies the store, so
 * deployments sharing one Redis never look at each other's entries.
 * - GCS store: the bucket name (every daemon on the bucket shares the cache);
 * - local-only store: the storage folder's persistent id.
 * The name is hashed: Redis never sees the bucket name, and the prefix has a
 * fixed length whatever the identity. Frames are authenticated as well
 * (cache-frame.ts), so a collision or a copied frame is a miss, never
 * another store's object.
 */
import { createHash } from "node:crypto";

export type StoreIdentity = { bucket: string } | { storeId: string };

/** `fs:<first 16 hex digits of sha256 of the identity>`. */
export function cacheNamespace(identity: StoreIdentity): string {
  const name = "bucket" in identity ? `gcs:${identity.bucket}` : `local:${identity.storeId}`;
  return `fs:${createHash("sha256").update(name, "utf8").digest("hex").slice(0, 16)}`;
}
