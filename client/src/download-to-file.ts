/**
 * Downloading an object into a file atomically and resumably: bytes go to
 * "<file>.g<generation>.partial", are checked against the object's size and
 * CRC32C, then renamed over the file. A failed download leaves the partial
 * file; a resumed one continues it from its size, provided the object still
 * has that generation (otherwise it starts over), and starts over when the
 * partial file turns out not to match the object.
 */
import * as fs from "node:fs";
import * as fsp from "node:fs/promises";
import * as path from "node:path";
import { Transform, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import * as grpc from "@grpc/grpc-js";
import type { ObjectInfo as WireObjectInfo } from "../../gen/filestorage/v1/file_storage_pb.js";
import type { DownloadOptions, DownloadToFileOptions } from "./client-options.js";
import { crc32c } from "./crc32c.js";
import { FileStorageError } from "./file-storage-error.js";
import { toObjectInfo, type ObjectInfo } from "./object-info.js";
import type { TailCheck } from "./retrieve-stream-download.js";

const MiB = 1024 * 1024;

/** What a file download needs of the client. */
export interface DownloadSource {
  stat(key: string): Promise<ObjectInfo | null>;
  openDownload(key: string, opts: DownloadOptions, check: TailCheck | undefined): Promise<{ info: WireObjectInfo; stream: Readable }>;
}

/**
 * Downloads `key` into `filePath` (see the file comment). A resumed download
 * whose partial file does not match the object (damaged on disk, or not this
 * object's bytes) is not an error: the partial file is removed and the
 * download starts over, once. A fresh download that fails its check is DATA_LOSS.
 */
export async function downloadToFile(source: DownloadSource, key: string, filePath: string, opts: DownloadToFileOptions = {}): Promise<ObjectInfo> {
  if (!opts.resume) return fetchInto(source, key, filePath, opts, undefined);
  const current = await source.stat(key);
  if (!current) throw new FileStorageError(grpc.status.NOT_FOUND, `no object under key "${key}"`);
  const partial = partialPath(filePath, current.generation);
  const have = await fsp.stat(partial).catch(() => undefined);
  if (!have || have.size > current.size) return fetchInto(source, key, filePath, opts, undefined);
  const initialCrc = await crcOfFile(partial);
  if (have.size === current.size) {
    // Already whole (an earlier call stopped before the rename): check, then rename.
    if (initialCrc === current.crc32c) {
      opts.onProgress?.(current.size, current.size);
      await finishPartial(partial, filePath);
      return current;
    }
  } else {
    try {
      return await fetchInto(source, key, filePath, opts, { offset: have.size, initialCrc, generation: current.generation });
    } catch (err) {
      if (opts.signal?.aborted || !FileStorageError.is(err, grpc.status.DATA_LOSS)) throw err;
    }
  }
  // The partial file's bytes are not the object's: start over.
  await fsp.rm(partial, { force: true });
  return fetchInto(source, key, filePath, opts, undefined);
}

/** Downloads into the partial file (from `resume.offset`, appending) and renames it over `filePath`. */
async function fetchInto(
  source: DownloadSource,
  key: string,
  filePath: string,
  opts: DownloadToFileOptions,
  resume: { offset: number; initialCrc: number; generation: bigint } | undefined,
): Promise<ObjectInfo> {
  const check: TailCheck = resume ? { offset: resume.offset, initialCrc: resume.initialCrc } : { offset: 0, initialCrc: 0 };
  const signal = opts.signal;
  const opened = await source.openDownload(key, { offset: check.offset, ifGenerationMatch: resume?.generation, signal }, check);
  const info = toObjectInfo(opened.info);
  const partial = partialPath(filePath, info.generation);
  let received = check.offset;
  const progress = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      received += chunk.length;
      opts.onProgress?.(received, info.size);
      done(null, chunk);
    },
  });
  // Pieces of 1 MiB or more keep the disk write rate near its best.
  const out = fs.createWriteStream(partial, { flags: check.offset > 0 ? "a" : "w", highWaterMark: MiB });
  try {
    await pipeline(opened.stream, progress, out, signal ? { signal } : {});
  } catch (err) {
    throw signal?.aborted ? signal.reason : FileStorageError.is(err) ? err : FileStorageError.from(err);
  }
  await finishPartial(partial, filePath);
  return info;
}

/** The partial file takes the final name, and partial files of other generations (left by failed downloads) go. */
async function finishPartial(partial: string, filePath: string): Promise<void> {
  await fsp.rename(partial, filePath);
  await removeStalePartials(filePath);
}

function partialPath(filePath: string, generation: bigint): string {
  return `${filePath}.g${generation}.partial`;
}

async function removeStalePartials(filePath: string): Promise<void> {
  const dir = path.dirname(filePath);
  const prefix = `${path.basename(filePath)}.g`;
  const names = await fsp.readdir(dir).catch(() => [] as string[]);
  await Promise.all(
    names
      .filter((name) => name.startsWith(prefix) && /^\d+\.partial$/.test(name.slice(prefix.length)))
      .map((name) => fsp.rm(path.join(dir, name), { force: true })),
  );
}

async function crcOfFile(file: string): Promise<number> {
  let crc = 0;
  for await (const chunk of fs.createReadStream(file, { highWaterMark: MiB }) as AsyncIterable<Buffer>) {
    crc = crc32c(chunk, crc);
  }
  return crc;
}
