/**
 * Resumable-upload calls at the wire level, for tests that must control each
 * stream exactly (its header, offset, chunks, trailer, and whether it
 * half-closes or breaks), plus a look into the storage folder's uploads/.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import * as grpc from "@grpc/grpc-js";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  DataKind,
  QueryUploadRequestSchema,
  StoreStreamHeaderSchema,
  StoreStreamRequestSchema,
  StoreStreamTrailerSchema,
  type QueryUploadResponse,
  type StoreStreamResponse,
} from "../../gen/filestorage/v1/file_storage_pb.js";
import { crc32c } from "../../client/src/index.js";
import { rawClient, unaryCall, type RawClient } from "./raw-client.js";

export interface StreamSpec {
  key: string;
  uploadId: string;
  writeOffset?: number;
  /** The header's declared size. */
  size?: number;
  kind?: DataKind;
  contentType?: string;
  metadata?: Record<string, unknown>;
  ifGenerationMatch?: bigint;
  expiresAt?: number;
  chunks?: Buffer[];
  /** Sent after the chunks when the stream half-closes. */
  trailer?: { crc32c?: number; size?: number };
  token?: string;
}

export interface OpenStream {
  /** How the call ended. */
  result: Promise<{ err: grpc.ServiceError | null; res?: StoreStreamResponse }>;
  /** Resolves once every chunk was handed to the transport. */
  written: Promise<void>;
  /** Sends the trailer (if any) and half-closes. */
  end(): void;
  /** Breaks the stream (what a dropped connection does to it). */
  cancel(): void;
}

const metadataOf = (token?: string) => {
  const md = new grpc.Metadata();
  if (token) md.set("authorization", `Bearer ${token}`);
  return md;
};

/** Opens a StoreStream with `spec`'s header and chunks, and leaves it open. */
export function openStream(client: RawClient, spec: StreamSpec): OpenStream {
  let call!: grpc.ClientWritableStream<unknown>;
  const result = new Promise<{ err: grpc.ServiceError | null; res?: StoreStreamResponse }>((resolve) => {
    call = client.storeStream(metadataOf(spec.token), {}, (err, res) => resolve({ err, res })) as grpc.ClientWritableStream<unknown>;
  });
  call.on("error", () => undefined);
  const header = create(StoreStreamHeaderSchema, {
    key: spec.key,
    kind: spec.kind ?? DataKind.BYTES,
    contentType: spec.contentType ?? "",
    metadata: spec.metadata as never,
    size: spec.size === undefined ? undefined : BigInt(spec.size),
    ifGenerationMatch: spec.ifGenerationMatch,
    expiresAt: spec.expiresAt === undefined ? undefined : timestampFromMs(spec.expiresAt),
    uploadId: spec.uploadId,
    writeOffset: BigInt(spec.writeOffset ?? 0),
  });
  // Each write's callback runs once grpc-js has taken the message (and so waits for flow control).
  const write = (payload: unknown) => new Promise<void>((resolve) => void call.write(create(StoreStreamRequestSchema, { payload } as never), () => resolve()));
  const written = (async () => {
    await write({ case: "header", value: header });
    for (const chunk of spec.chunks ?? []) await write({ case: "chunk", value: chunk });
  })();
  return {
    result,
    written,
    end() {
      void written.then(async () => {
        if (spec.trailer) {
          const t = spec.trailer;
          await write({ case: "trailer", value: create(StoreStreamTrailerSchema, { crc32c: t.crc32c, size: t.size === undefined ? undefined : BigInt(t.size) }) });
        }
        call.end();
      });
    },
    cancel: () => call.cancel(),
  };
}

/** One whole stream of `spec`: header, chunks, trailer, half-close. */
export async function sendStream(address: string, spec: StreamSpec): Promise<{ err: grpc.ServiceError | null; res?: StoreStreamResponse }> {
  const client = rawClient(address);
  try {
    const s = openStream(client, spec);
    s.end();
    return await s.result;
  } finally {
    client.close();
  }
}

/** QueryUpload as it is on the wire. */
export async function queryUpload(address: string, uploadId: string, token?: string): Promise<{ err: grpc.ServiceError | null; res?: QueryUploadResponse }> {
  const client = rawClient(address);
  try {
    return await unaryCall(client.queryUpload, client, create(QueryUploadRequestSchema, { uploadId }), metadataOf(token));
  } finally {
    client.close();
  }
}

/** The files in the storage folder's uploads/ with their sizes. */
export async function uploadFiles(storagePath: string): Promise<{ name: string; size: number }[]> {
  const dir = path.join(storagePath, "uploads");
  const names = await fs.readdir(dir);
  return Promise.all(names.map(async (name) => ({ name, size: (await fs.stat(path.join(dir, name))).size })));
}

/** Waits until the only file in uploads/ holds `bytes` (the daemon received and wrote them). */
export async function waitForUploadBytes(storagePath: string, bytes: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const files = await uploadFiles(storagePath);
    if (files.length === 1 && files[0]!.size === bytes) return;
    if (Date.now() > deadline) throw new Error(`uploads/ never held one file of ${bytes} bytes: ${JSON.stringify(files)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The CRC32C of the concatenated `parts`. */
export function crcOf(...parts: Buffer[]): number {
  return parts.reduce((crc, p) => crc32c(p, crc), 0);
}
