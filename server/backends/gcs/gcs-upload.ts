/**
 * Uploads to GCS, every one carrying our CRC32C for GCS to verify (GCS
 * refuses a mismatch and keeps nothing; nothing is validated after the fact,
 * so the key never loses its version to a failed check).
 *
 * - A source held whole (at most the resumable threshold) goes up in one
 *   multipart request with its final metadata (commit-version.ts: retries).
 * - A larger one is streamed in parts (upload-parts.ts): buffered parts
 *   uploaded concurrently as temporary objects under .filestorage/uploads/,
 *   composed into one, checked (size and CRC32C of the whole), then composed
 *   into the key with the metadata only the end of the stream can give,
 *   guarded like any write: until then the key keeps its previous version, and
 *   the temporary objects are deleted either way (a crash leaves them to the sweep).
 */
import type { FileMetadata } from "@google-cloud/storage";
import { crc32c } from "@node-rs/crc32";
import type { PutOptions } from "../backend.js";
import type { WriteOrigin } from "../write-origin.js";
import { commitVersion } from "./commit-version.js";
import type { GcsContext } from "./gcs-context.js";
import { crc32cBase64 } from "./gcs-http.js";
import type { ReplaySource } from "./replay-source.js";
import { uploadInParts, type PartSettings } from "./upload-parts.js";

/** What an upload writes besides the bytes, and how it is guarded. */
export interface UploadTarget {
  key: string;
  contentType: string;
  /** The custom metadata; called once the source has ended (the codec fills size and CRC32C as it streams). */
  metadata: () => Record<string, string>;
  origin: WriteOrigin;
  /** The caller's precondition (undefined = none: one request, see commit-version.ts). */
  expected?: bigint;
  /** The generation observed before a streamed conditional upload. */
  guard?: bigint;
  /** The key's raw metadata now, for the retries' look-up. */
  look: (signal: AbortSignal | undefined) => Promise<FileMetadata | undefined>;
}

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
    {
      key: target.key,
      origin: target.origin,
      expected: target.expected,
      guard: target.guard,
      what: "the write",
      attempt: (guard, s) => ctx.http.uploadMultipart(target.key, resource, chunks, { ifGenerationMatch: guard }, s),
      look: target.look,
    },
    signal,
  );
}

/** Streams `replay` in parts, then composes them into the key (see the file comment). */
export async function uploadStreamed(
  ctx: GcsContext,
  replay: ReplaySource,
  target: UploadTarget,
  settings: PartSettings,
  signal: AbortSignal | undefined,
  verify: PutOptions["verify"],
): Promise<FileMetadata> {
  return uploadInParts(ctx, replay.iterate(), settings, signal, verify, (whole) =>
    commitVersion(
      ctx,
      {
        key: target.key,
        origin: target.origin,
        expected: target.expected,
        guard: target.guard,
        what: "the write",
        attempt: (guard, s) =>
          ctx.http.compose(target.key, { contentType: target.contentType || undefined, metadata: target.metadata() }, [whole], { ifGenerationMatch: guard }, s),
        look: target.look,
      },
      signal,
    ),
  );
}
