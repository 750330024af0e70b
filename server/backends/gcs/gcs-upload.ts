/**
 * Uploads to GCS, every one carrying our CRC32C for GCS to verify (GCS
 * refuses a mismatch and keeps nothing; nothing is validated after the fact,
 * so the key never loses its version to a failed check).
 *
 * - A source held whole (at most the resumable threshold) goes up in one
 *   multipart request with its final metadata (commit-version.ts: retries).
 * - A larger one, with one part at a time (GCS_PARALLEL_UPLOAD_PARTS=1), is
 *   one resumable session (stream-upload.ts): straight into the key when the
 *   object is stored as it came (its size and CRC32C are then GCS's own, so
 *   the metadata is complete before the bytes), else into a temporary object
 *   composed into the key with the metadata only the end of the stream gives.
 * - With more parts at a time, the stream goes up as parts in parallel
 *   (upload-parts.ts), checked, then composed into the key with the final
 *   metadata. The compose is guarded like any write: until it succeeds the
 *   key keeps its previous version; temporary objects live under
 *   .filestorage/uploads/ and are deleted either way (a crash leaves them to the sweep).
 */
import { randomUUID } from "node:crypto";
import type { FileMetadata } from "@google-cloud/storage";
import { crc32c } from "@node-rs/crc32";
import type { PutOptions } from "../backend.js";
import type { WriteOrigin } from "../write-origin.js";
import { commitVersion, type Commit } from "./commit-version.js";
import type { GcsContext } from "./gcs-context.js";
import { call } from "./gcs-errors.js";
import { crc32cBase64 } from "./gcs-http.js";
import { UPLOADS_PREFIX, X } from "./object-metadata.js";
import type { ReplaySource } from "./replay-source.js";
import { uploadInOneSession } from "./stream-upload.js";
import { uploadInParts, type PartSettings } from "./upload-parts.js";

/** What an upload writes besides the bytes, and how it is guarded. */
export interface UploadTarget {
  key: string;
  contentType: string;
  /** The custom metadata; complete once the source has ended (the codec fills size and CRC32C as it streams). */
  metadata: () => Record<string, string>;
  /** True when the stored bytes are the original ones (no compression, no encryption): known once data flowed. */
  storedAsIs: () => boolean;
  origin: WriteOrigin;
  /** The caller's precondition (undefined = none: one request, see commit-version.ts). */
  expected?: bigint;
  /** The generation observed before a streamed conditional upload. */
  guard?: bigint;
  /** The key's raw metadata now, for the retries' look-up. */
  look: (signal: AbortSignal | undefined) => Promise<FileMetadata | undefined>;
}

const commitOf = (target: UploadTarget, attempt: Commit["attempt"], once = false): Commit => ({
  key: target.key,
  origin: target.origin,
  expected: target.expected,
  guard: target.guard,
  what: "the write",
  attempt,
  look: target.look,
  once,
});

/** Uploads a source held whole in `replay` in one request (retried as commit-version.ts says). */
export async function uploadWhole(ctx: GcsContext, replay: ReplaySource, target: UploadTarget, signal: AbortSignal | undefined, verify: PutOptions["verify"]): Promise<FileMetadata> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  let crc = 0;
  for await (const chunk of replay.iterate()) {
    chunks.push(chunk);
    size += chunk.byteLength;
    crc = crc32c(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength), crc);
  }
  // Before anything is sent: a throw here stores nothing.
  verify?.({ size, crc32c: crc >>> 0 });
  const resource = { contentType: target.contentType || undefined, metadata: target.metadata(), crc32c: crc32cBase64(crc) };
  return commitVersion(
    ctx,
    commitOf(target, (guard, s) => ctx.http.uploadMultipart(target.key, resource, chunks, { ifGenerationMatch: guard }, s)),
    signal,
  );
}

/** Streams `replay` to the key (see the file comment). */
export async function uploadStreamed(
  ctx: GcsContext,
  replay: ReplaySource,
  target: UploadTarget,
  settings: PartSettings,
  signal: AbortSignal | undefined,
  verify: PutOptions["verify"],
): Promise<FileMetadata> {
  const composeInto = (sources: { name: string; generation: string }[]) =>
    commitVersion(
      ctx,
      commitOf(target, (guard, s) =>
        ctx.http.compose(target.key, { contentType: target.contentType || undefined, metadata: target.metadata() }, sources, { ifGenerationMatch: guard }, s),
      ),
      signal,
    );
  if (settings.parts > 1) return uploadInParts(ctx, replay.iterate(), settings, signal, verify, composeInto);
  if (target.storedAsIs()) {
    // The metadata is complete now; the session's last request commits the key.
    const resource = { contentType: target.contentType || undefined, metadata: target.metadata() };
    return commitVersion(
      ctx,
      commitOf(target, (guard) => uploadInOneSession(ctx, replay.iterate(), { name: target.key, resource, guard }, settings.partBytes, signal, verify), true),
      signal,
    );
  }
  const part = `${UPLOADS_PREFIX}${randomUUID()}`;
  try {
    const uploaded = await uploadInOneSession(
      ctx,
      replay.iterate(),
      { name: part, resource: { contentType: "application/octet-stream", metadata: { [X.kind]: "BYTES" } } },
      settings.partBytes,
      signal,
      verify,
    );
    return await composeInto([{ name: part, generation: String(uploaded.generation) }]);
  } finally {
    await call("delete", () => ctx.bucket.file(part).delete({ ignoreNotFound: true })).catch(() => undefined);
  }
}
