/**
 * What a bucket holds, read with the SDK the way the daemon sees it: a
 * deleted key keeps a tombstone (a zero-byte object with x-fs-deleted=1, see
 * server/backends/gcs/), which is absence; objects under
 * `.filestorage/` are the daemon's own.
 */
import type { Bucket } from "@google-cloud/storage";

/** True when `key` holds a live object (not a tombstone). */
export async function hasLiveObject(bucket: Bucket, key: string): Promise<boolean> {
  try {
    const [md] = await bucket.file(key).getMetadata();
    return md.metadata?.["x-fs-deleted"] !== "1";
  } catch (err) {
    if ((err as { code?: unknown }).code === 404) return false;
    throw err;
  }
}

/** True when `key` holds a tombstone. */
export async function hasTombstone(bucket: Bucket, key: string): Promise<boolean> {
  try {
    const [md] = await bucket.file(key).getMetadata();
    return md.metadata?.["x-fs-deleted"] === "1";
  } catch (err) {
    if ((err as { code?: unknown }).code === 404) return false;
    throw err;
  }
}

/** Names of the live objects under `prefix` (tombstones and the daemon's own objects left out), sorted. */
export async function liveNames(bucket: Bucket, prefix = ""): Promise<string[]> {
  const [files] = await bucket.getFiles({ prefix });
  return files
    .filter((f) => f.metadata.metadata?.["x-fs-deleted"] !== "1" && !f.name.startsWith(".filestorage/"))
    .map((f) => f.name)
    .sort();
}
