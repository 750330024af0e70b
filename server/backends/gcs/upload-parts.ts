/**
 * A large upload as parts uploaded concurrently (the parallel composite
 * upload of gcloud): the stream is cut into parts of `partBytes`, each held
 * in memory while it uploads (so a failed part is retried from its start) as
 * a temporary object under .filestorage/uploads/<id>/ carrying its CRC32C
 * for GCS to verify; at most `parts` upload at once, and the stream is not read
 * further while they do, so memory stays at (parts + 1) x partBytes whatever
 * the size. At the end the parts (composed in a tree when there are more than
 * the 32 sources one compose takes) are checked to be the whole stream: the
 * CRC32C GCS verified for each, combined in order, must be the stream's, and
 * their sizes add up; only then is `commit` called to compose them into the
 * key. Every temporary object is deleted afterwards, whatever happened (a
 * crash leaves them to the sweep).
 */
import { randomUUID } from "node:crypto";
import type { FileMetadata } from "@google-cloud/storage";
import { crc32c } from "@node-rs/crc32";
import type { PutOptions } from "../backend.js";
import { Code, StorageError } from "../../storage-error.js";
import { throwIfAborted } from "../../signals.js";
import type { GcsContext } from "./gcs-context.js";
import { call, isRetryable } from "./gcs-errors.js";
import { crc32cCombine } from "./crc32c-combine.js";
import { crc32cBase64, type ObjectResource } from "./gcs-http.js";
import { UPLOADS_PREFIX, X } from "./object-metadata.js";
import { withRetry } from "./retry.js";

/** GCS composes at most this many sources in one request. */
const MAX_COMPOSE_SOURCES = 32;

export interface PartSettings {
  partBytes: number;
  /** Parts uploading at once. */
  parts: number;
  /** Parts of at least this many bytes go up resumably (a session, then one PUT); smaller ones in one multipart request. */
  resumableThresholdBytes: number;
}

/** A temporary object, as a compose source (`generation`), with what GCS holds of it. */
export interface Source {
  name: string;
  generation: string;
  size: number;
  /** Base64, as GCS gives it. */
  crc32c: string;
}

const PART_RESOURCE: ObjectResource = { contentType: "application/octet-stream", metadata: { [X.kind]: "BYTES" } };

/** Uploads `source` in parts and hands the verified whole to `commit` (see the file comment). */
export async function uploadInParts(
  ctx: GcsContext,
  source: AsyncIterable<Uint8Array>,
  settings: PartSettings,
  signal: AbortSignal | undefined,
  verify: PutOptions["verify"],
  commit: (sources: { name: string; generation: string }[]) => Promise<FileMetadata>,
): Promise<FileMetadata> {
  const prefix = `${UPLOADS_PREFIX}${randomUUID()}/`;
  const made: string[] = [];
  const ac = new AbortController();
  const partSignal = signal ? AbortSignal.any([signal, ac.signal]) : ac.signal;
  const uploads: Promise<Source>[] = [];
  const inFlight = new Set<Promise<unknown>>();
  let current: Buffer[] = [];
  let currentBytes = 0;
  let total = 0;
  let crc = 0;

  const flush = async () => {
    const body = current;
    current = [];
    currentBytes = 0;
    // The window: the stream is not read further until a part is done.
    while (inFlight.size >= settings.parts) await Promise.race(inFlight);
    const name = `${prefix}part-${uploads.length}`;
    made.push(name);
    const upload = uploadPart(ctx, name, body, settings, partSignal);
    const tracked = upload.finally(() => inFlight.delete(tracked));
    tracked.catch(() => undefined);
    inFlight.add(tracked);
    uploads.push(upload);
  };

  try {
    for await (const chunk of source) {
      let rest = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      total += rest.length;
      crc = crc32c(rest, crc);
      while (rest.length > 0) {
        const piece = rest.subarray(0, settings.partBytes - currentBytes);
        current.push(piece);
        currentBytes += piece.length;
        rest = rest.subarray(piece.length);
        if (currentBytes === settings.partBytes) await flush();
      }
    }
    throwIfAborted(signal);
    if (currentBytes > 0 || uploads.length === 0) await flush();
    // The whole stream was received: a throw here (declared size, trailer) stores nothing.
    verify?.({ size: total, crc32c: crc >>> 0 });
    const sources = await reduce(ctx, await Promise.all(uploads), prefix, made, settings.parts, partSignal);
    checkWhole(sources, total, crc);
    return await commit(sources.map(({ name, generation }) => ({ name, generation })));
  } catch (err) {
    ac.abort();
    throw err;
  } finally {
    await Promise.allSettled(inFlight);
    await eachLimited(made, settings.parts, (name) => call("delete", () => ctx.bucket.file(name).delete({ ignoreNotFound: true })).then(() => undefined, () => undefined));
  }
}

/** One part, retried from its start (it is held in memory). */
async function uploadPart(ctx: GcsContext, name: string, body: Buffer[], settings: PartSettings, signal: AbortSignal): Promise<Source> {
  let size = 0;
  let crc = 0;
  for (const b of body) {
    size += b.length;
    crc = crc32c(b, crc);
  }
  const resource = { ...PART_RESOURCE, crc32c: crc32cBase64(crc) };
  const md = await withRetry(
    (attempt) =>
      size >= settings.resumableThresholdBytes
        ? ctx.http.uploadResumable(name, resource, body, {}, attempt)
        : ctx.http.uploadMultipart(name, resource, body, {}, attempt),
    // An upload has an idle timeout (the socket's), not a deadline per attempt.
    { maxRetries: ctx.maxRetries, timeoutMs: 0, signal, retryable: isRetryable },
  );
  return sourceOf(name, md);
}

const sourceOf = (name: string, md: FileMetadata): Source => ({ name, generation: String(md.generation), size: Number(md.size), crc32c: String(md.crc32c) });

/** At most 32 sources holding `parts` in order: composed in a tree of temporary objects when there are more. */
async function reduce(ctx: GcsContext, parts: Source[], prefix: string, made: string[], concurrency: number, signal: AbortSignal): Promise<Source[]> {
  let level = parts;
  for (let depth = 0; level.length > MAX_COMPOSE_SOURCES; depth++) {
    const groups: Source[][] = [];
    for (let i = 0; i < level.length; i += MAX_COMPOSE_SOURCES) groups.push(level.slice(i, i + MAX_COMPOSE_SOURCES));
    const next: Source[] = new Array<Source>(groups.length);
    await eachLimited(groups.map((g, i) => [g, i] as const), concurrency, async ([group, i]) => {
      const name = `${prefix}compose-${depth}-${i}`;
      made.push(name);
      const md = await ctx.retry((attempt) => ctx.http.compose(name, PART_RESOURCE, group.map(({ name: n, generation }) => ({ name: n, generation })), {}, attempt), signal);
      next[i] = sourceOf(name, md);
    });
    level = next;
  }
  return level;
}

/** DATA_LOSS unless `sources`, in order, hold `size` bytes whose CRC32C is `crc` (nothing is committed then). */
function checkWhole(sources: Source[], size: number, crc: number): void {
  let held = 0;
  let combined = 0;
  for (const s of sources) {
    combined = crc32cCombine(combined, Buffer.from(s.crc32c, "base64").readUInt32BE(0), s.size);
    held += s.size;
  }
  if (held !== size || combined !== crc >>> 0) {
    throw new StorageError(
      Code.DataLoss,
      `GCS upload: the parts hold ${held} bytes with CRC32C ${crc32cBase64(combined)}, the stream was ${size} bytes with ${crc32cBase64(crc)}; nothing was stored`,
    );
  }
}

/** Runs `fn` over `items` with at most `limit` at once; the first failure is thrown once all started ones settled. */
async function eachLimited<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { err: unknown } | undefined;
  const worker = async () => {
    while (next < items.length && !failure) {
      try {
        await fn(items[next++]);
      } catch (err) {
        failure ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure) throw failure.err;
}
