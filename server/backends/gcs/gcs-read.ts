/**
 * Reading an object from GCS in one request: the media answer's headers
 * carry the generation, stored size, CRC32C and custom metadata, so the
 * record comes from them, not from a metadata request before the read (a
 * header GCS may have encoded differently costs one stat, see
 * object-metadata.ts). The answer is awaited before the body is handed out, so
 * a miss or an outage is an error of the call, not of the body. A tombstone
 * reads as a miss; an expired object is returned (the engine hides it).
 *
 * Bytes come as stored (no transcoding). A read that delivers the whole
 * object is checked against its CRC32C (natively); a range cannot be. Reads of
 * at least `parallelThresholdBytes` continue in parallel parts
 * (parallel-read.ts), pinned to the generation the first answer named.
 */
import type { IncomingHttpHeaders } from "node:http";
import { Readable, Transform, type TransformCallback } from "node:stream";
import type { FileMetadata } from "@google-cloud/storage";
import { crc32c } from "@node-rs/crc32";
import type { GetOptions, ObjectRecord } from "../backend.js";
import { Code, StorageError, generationMismatch } from "../../storage-error.js";
import { bindSignal } from "../../signals.js";
import type { GcsContext } from "./gcs-context.js";
import { translate } from "./gcs-errors.js";
import { crc32cBase64, type MediaAnswer } from "./gcs-http.js";
import { resourceFromHeaders, toRecord } from "./object-metadata.js";
import { parallelBody } from "./parallel-read.js";

const MiB = 1024 * 1024;
/** How often a read starts over when the object keeps changing under it. */
const MAX_RACES = 3;

/** When large reads go in parallel parts. */
export interface ParallelReadSettings {
  /** Reads of at least this many bytes (whole objects or ranges) go in parts. */
  thresholdBytes: number;
  /** Parts in flight; 1 = one request, never in parts. */
  parts: number;
  partBytes: number;
}

/** The record and body of `key` (of `opts.range`), or undefined for a missing or deleted key. */
export async function readObject(
  ctx: GcsContext,
  key: string,
  opts: GetOptions,
  parallel: ParallelReadSettings,
  stat: (key: string, signal?: AbortSignal) => Promise<FileMetadata | undefined>,
): Promise<{ record: ObjectRecord; body: Readable } | undefined> {
  const { signal, range, ifGenerationMatch: expected } = opts;
  const offset = range?.offset ?? 0;
  const whole = offset === 0 && range?.length === undefined;
  /** The live record now (a stat), for the answers that need one. */
  const liveNow = async () => {
    const md = await stat(key, signal);
    const record = md && toRecord(key, md);
    return record?.deleted ? undefined : record;
  };

  if (range?.length === 0) {
    // No bytes wanted: the record alone (one stat).
    const record = await liveNow();
    if (!record) return undefined;
    if (expected !== undefined && record.generation !== expected) throw generationMismatch(key, expected, record.generation);
    if (offset > record.storedSize) throw pastTheEnd(key, offset, record.storedSize);
    return { record, body: Readable.from([]) };
  }

  for (let race = 0; ; race++) {
    if (race >= MAX_RACES) throw new StorageError(Code.Aborted, `key "${key}" kept changing while it was read; try again`);
    const end = range?.length === undefined ? undefined : offset + range.length - 1;
    const answer: MediaAnswer = await ctx.retry(
      // Pinned to the caller's generation: another one answers 404.
      (attempt) => ctx.http.media(key, { generation: expected, range: whole ? undefined : { start: offset, end } }, attempt),
      signal,
    );
    if (answer.status === 404) {
      if (expected === undefined) return undefined;
      const record = await liveNow();
      if (!record) return undefined;
      if (record.generation === expected) continue; // written just now
      throw generationMismatch(key, expected, record.generation);
    }
    if (answer.status === 416) {
      // The range starts at or past the end.
      const md = resourceFromHeaders(answer.headers);
      const record = md ? toRecord(key, md) : await liveNow();
      if (!record || record.deleted) return undefined;
      if (expected !== undefined && record.generation !== expected) throw generationMismatch(key, expected, record.generation);
      if (offset > record.storedSize) throw pastTheEnd(key, offset, record.storedSize);
      return { record, body: Readable.from([]) };
    }
    const { body, headers } = answer;
    let md = resourceFromHeaders(headers);
    if (!md) {
      md = await stat(key, signal).catch((err: unknown) => {
        body.destroy();
        throw err;
      });
      if (!md || String(md.generation) !== headers["x-goog-generation"]) {
        body.destroy();
        continue;
      }
    }
    const record = toRecord(key, md);
    if (record.deleted) {
      body.destroy();
      return undefined;
    }
    const span = delivered(answer.status, headers, offset, record.storedSize);
    // Only the whole object can be checked against its CRC32C.
    const crc = span.start === 0 && span.end === record.storedSize ? md.crc32c : undefined;
    const length = span.end - span.start;
    if (parallel.parts > 1 && length >= parallel.thresholdBytes && length > parallel.partBytes) {
      const parts = parallelBody({
        first: body,
        start: span.start,
        end: span.end,
        partBytes: parallel.partBytes,
        parts: parallel.parts,
        crc32c: crc,
        fetch: (s, e, partSignal) => fetchPart(ctx, key, record.generation, s, e, partSignal),
      });
      return { record, body: bindSignal(parts, signal) };
    }
    return { record, body: bindSignal(checked(body, length, crc), signal) };
  }
}

/** The bytes [start, end) an answer carries (206: its Content-Range). */
function delivered(status: number, headers: IncomingHttpHeaders, offset: number, size: number): { start: number; end: number } {
  if (status === 200) return { start: 0, end: size };
  const m = /^bytes (\d+)-(\d+)\//.exec(String(headers["content-range"] ?? ""));
  if (!m) throw new StorageError(Code.Internal, "GCS read: a partial answer without a valid Content-Range");
  const start = Number(m[1]);
  if (start !== offset) throw new StorageError(Code.Internal, `GCS read: asked for bytes from ${offset}, got them from ${start}`);
  return { start, end: Number(m[2]) + 1 };
}

/** Reads [s, e) of `generation` whole, retried from the part's start. */
function fetchPart(ctx: GcsContext, key: string, generation: bigint, s: number, e: number, signal: AbortSignal): Promise<Buffer[]> {
  return ctx.retry(async (attempt) => {
    const answer = await ctx.http.media(key, { generation, range: { start: s, end: e - 1 } }, attempt);
    if (answer.status !== 206 && answer.status !== 200) {
      // The generation read so far is gone: the bytes delivered cannot be continued.
      if (answer.status === 404) throw new StorageError(Code.Aborted, `key "${key}" was replaced while it was read; read it again`);
      throw new StorageError(Code.Internal, `GCS read: a part of key "${key}" answered HTTP ${answer.status}`);
    }
    const span = delivered(answer.status, answer.headers, answer.status === 200 ? 0 : s, Number(answer.headers["x-goog-stored-content-length"]));
    if (span.start !== s || span.end < e) {
      answer.body.destroy();
      throw new StorageError(Code.Internal, `GCS read: a part of key "${key}" came back as bytes ${span.start}-${span.end}`);
    }
    const chunks: Buffer[] = [];
    let need = e - s;
    try {
      for await (const chunk of answer.body as AsyncIterable<Buffer>) {
        const piece = chunk.length > need ? chunk.subarray(0, need) : chunk;
        chunks.push(piece);
        need -= piece.length;
        if (need === 0) break;
      }
    } catch (err) {
      throw translate("read", err);
    } finally {
      answer.body.destroy();
    }
    if (need > 0) throw new StorageError(Code.Unavailable, "GCS read: a part ended early");
    return chunks;
  }, signal);
}

/** The body of one answer, checked for its length and, when given, the object's CRC32C. */
function checked(body: Readable, length: number, crc: string | undefined): Readable {
  const out = new CheckedBody(length, crc);
  body.on("error", (err) => out.destroy(translate("read", err)));
  out.on("close", () => body.destroy());
  body.pipe(out);
  return out;
}

class CheckedBody extends Transform {
  private crc = 0;
  private received = 0;
  constructor(
    private readonly length: number,
    private readonly expectedCrc: string | undefined,
  ) {
    super({ readableHighWaterMark: MiB });
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.received += chunk.length;
    if (this.expectedCrc !== undefined) this.crc = crc32c(chunk, this.crc);
    cb(null, chunk);
  }
  override _flush(cb: TransformCallback): void {
    if (this.received !== this.length) {
      cb(new StorageError(Code.Unavailable, `GCS read: the answer ended after ${this.received} of ${this.length} bytes`));
    } else if (this.expectedCrc !== undefined && crc32cBase64(this.crc) !== this.expectedCrc) {
      cb(new StorageError(Code.DataLoss, "GCS read: the CRC32C of the data does not match the object's"));
    } else {
      cb();
    }
  }
}

function pastTheEnd(key: string, offset: number, size: number): StorageError {
  return new StorageError(Code.OutOfRange, `offset ${offset} is past the end of key "${key}" (${size} bytes)`);
}
