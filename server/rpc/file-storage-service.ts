/**
 * The FileStorageService handlers: thin. Each decodes and checks its request,
 * checks access, calls the engine, and answers; call-observer.ts times every
 * call and maps its error through the one funnel (grpc-status.ts). The two
 * streams live in store-stream.ts and retrieve-stream.ts.
 */
import type { Readable } from "node:stream";
import { create, toBinary } from "@bufbuild/protobuf";
import {
  DeleteManyResponseSchema,
  DeleteResponseSchema,
  ExistsResponseSchema,
  GetStatsResponseSchema,
  ListKeysResponseSchema,
  ObjectInfoSchema,
  OperationCountSchema,
  QueryUploadResponseSchema,
  RetrieveResponseSchema,
  StatResponseSchema,
  StoreResponseSchema,
  type DeleteManyRequest,
  type DeleteManyResponse,
  type DeleteRequest,
  type DeleteResponse,
  type ExistsRequest,
  type FlushRequest,
  type FlushResponse,
  type ExistsResponse,
  type FileStorageService,
  type GetStatsRequest,
  type GetStatsResponse,
  type ListKeysRequest,
  type ListKeysResponse,
  type ObjectInfo,
  type QueryUploadRequest,
  type QueryUploadResponse,
  type RetrieveRequest,
  type RetrieveResponse,
  type RetrieveStreamRequest,
  type RetrieveStreamResponse,
  type StatRequest,
  type StatResponse,
  type StoreRequest,
  type StoreResponse,
  type StoreStreamRequest,
  type StoreStreamResponse,
  type VerifyRequest,
  type VerifyResponse,
} from "../../gen/filestorage/v1/file_storage_pb.js";
import type { ServiceHandlers } from "@filestorage/client/grpc-binding";
import type { Authorizer } from "../auth/authorizer.js";
import { BufferedSource, type ObjectRecord } from "../backends/backend.js";
import type { Engine, ListEntry } from "../engine/engine.js";
import type { VerifyEvent, VerifyOptions } from "../engine/verify.js";
import { checkKey } from "../keys.js";
import type { StackStatus } from "../stack.js";
import { checkUploadId, type UploadSessions } from "../uploads/upload-sessions.js";
import { Code, StorageError, dataLoss, failedPrecondition, invalidArgument } from "../storage-error.js";
import { createCallObserver, type RpcObserver } from "./call-observer.js";
import type { Tracer } from "@opentelemetry/api";
import type { StatusLogger } from "./grpc-status.js";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { HandlerContext } from "./handler-context.js";
import { checkContentType, checkMetadata, expiryMs, kindName, toObjectInfo } from "./object-info.js";
import { sendFlush, type Flush } from "./flush-stream.js";
import { sendRetrieveStream } from "./retrieve-stream.js";
import { receiveStoreStream } from "./store-stream.js";
import { getUsageHandler } from "./get-usage.js";
import { sendVerifyStream } from "./verify-stream.js";

export type { RpcObserver } from "./call-observer.js";

export interface ServiceOptions {
  engine: Engine;
  /** Resumable upload sessions. */
  uploads: UploadSessions;
  /** The stack's state, for GetStats. */
  status: () => StackStatus;
  /** The stack's verification of stored copies, for Verify. */
  verify: (opts: VerifyOptions) => AsyncIterable<VerifyEvent>;
  auth: Authorizer;
  observer: RpcObserver;
  log: StatusLogger;
  /** ENABLE_TRACING: a span per call. */
  tracer?: Tracer;
  maxUnaryBytes: number;
  chunkSize: number;
  version: string;
  startedAt: number;
  /** The stack's flush of the replication backlog (Flush). */
  flush: Flush;
}

type Service = (typeof FileStorageService)["method"];

export function createFileStorageHandlers(o: ServiceOptions): ServiceHandlers<Service> {
  const { engine } = o;
  const calls = createCallObserver(o);
  const ctx: HandlerContext = {
    engine,
    observer: o.observer,
    allow: (call, right, ...scopes) => o.auth.check(call, right, ...scopes),
    caller: (call) => o.auth.callerName(call),
    uploads: o.uploads,
    maxUnaryBytes: o.maxUnaryBytes,
    chunkSize: o.chunkSize,
  };
  const notFound = (key: string) => new StorageError(Code.NotFound, `key "${key}" not found`);
  const overUnary = (size: number) =>
    failedPrecondition(`object is ${size} bytes, over the unary limit of ${o.maxUnaryBytes} bytes (MAX_UNARY_BYTES); use RetrieveStream`);

  return {
    store: calls.unary<StoreRequest, StoreResponse>("Store", async (req, call, signal) => {
      checkKey(req.key);
      ctx.allow(call, "write", { key: req.key });
      if (req.data.byteLength > o.maxUnaryBytes) {
        throw invalidArgument(`data is ${req.data.byteLength} bytes, over the unary limit of ${o.maxUnaryBytes} (MAX_UNARY_BYTES); use StoreStream`);
      }
      o.observer.bytesReceived(req.data.byteLength);
      const record = await engine.put(
        req.key,
        new BufferedSource([req.data]),
        {
          kind: kindName(req.kind),
          contentType: checkContentType(req.contentType),
          metadata: checkMetadata(req.metadata),
          expiresAt: expiryMs(req.expiresAt),
        },
        { ifGenerationMatch: req.ifGenerationMatch, signal },
      );
      return create(StoreResponseSchema, { object: toObjectInfo(record) });
    }),

    storeStream: calls.clientStream<StoreStreamRequest, StoreStreamResponse>("StoreStream", (call, signal) => receiveStoreStream(ctx, call, signal)),

    retrieve: calls.unary<RetrieveRequest, RetrieveResponse>("Retrieve", async (req, call, signal) => {
      checkKey(req.key);
      ctx.allow(call, "read", { key: req.key });
      // One read, no look before it (GCS answers it in one request); an object over the limit is dropped unread.
      const found = await engine.get(req.key, { signal });
      if (!found) throw notFound(req.key);
      if (found.record.size > o.maxUnaryBytes) {
        found.body.destroy();
        throw overUnary(found.record.size);
      }
      const data = await readAll(found.body, found.record.size);
      o.observer.bytesSent(data.byteLength);
      return create(RetrieveResponseSchema, { object: toObjectInfo(found.record), data });
    }),

    retrieveStream: calls.serverStream<RetrieveStreamRequest, RetrieveStreamResponse>("RetrieveStream", (req, call, signal) =>
      sendRetrieveStream(ctx, req, call, signal),
    ),

    stat: calls.unary<StatRequest, StatResponse>("Stat", async (req, call, signal) => {
      checkKey(req.key);
      ctx.allow(call, "read", { key: req.key });
      const record = await engine.head(req.key, { signal });
      if (!record) throw notFound(req.key);
      return create(StatResponseSchema, { object: toObjectInfo(record) });
    }),

    exists: calls.unary<ExistsRequest, ExistsResponse>("Exists", async (req, call, signal) => {
      checkKey(req.key);
      ctx.allow(call, "read", { key: req.key });
      return create(ExistsResponseSchema, { exists: (await engine.head(req.key, { signal })) !== undefined });
    }),

    delete: calls.unary<DeleteRequest, DeleteResponse>("Delete", async (req, call, signal) => {
      checkKey(req.key);
      ctx.allow(call, "delete", { key: req.key });
      const deleted = await engine.delete(req.key, { ifGenerationMatch: req.ifGenerationMatch, signal });
      return create(DeleteResponseSchema, { deleted });
    }),

    deleteMany: calls.unary<DeleteManyRequest, DeleteManyResponse>("DeleteMany", async (req, call, signal) => {
      ctx.allow(call, "delete", ...req.keys.map((key) => ({ key })), ...(req.prefix ? [{ prefix: req.prefix }] : []));
      const count = await engine.deleteMany(req.keys, req.prefix, signal);
      return create(DeleteManyResponseSchema, { deletedCount: BigInt(count) });
    }),

    listKeys: calls.unary<ListKeysRequest, ListKeysResponse>("ListKeys", async (req, call, signal) => {
      ctx.allow(call, "list", { prefix: req.prefix });
      // Each ObjectInfo is built once: measured for the page's byte budget, then sent.
      const infos = new WeakMap<ObjectRecord, ObjectInfo>();
      const infoOf = (r: ObjectRecord) => infos.get(r) ?? infos.set(r, toObjectInfo(r)).get(r)!;
      const entryBytes = (e: ListEntry) =>
        e.prefix !== undefined
          ? fieldBytes(Buffer.byteLength(e.prefix))
          : fieldBytes(Buffer.byteLength(e.record.key)) + (req.includeInfo ? fieldBytes(toBinary(ObjectInfoSchema, infoOf(e.record)).length) : 0);
      const page = await engine.list({
        prefix: req.prefix,
        limit: req.limit,
        pageToken: req.pageToken,
        delimiter: req.delimiter,
        signal,
        entryBytes,
        allowPartial: req.allowPartial,
      });
      return create(ListKeysResponseSchema, {
        keys: page.objects.map((r) => r.key),
        prefixes: page.prefixes,
        nextPageToken: page.nextPageToken,
        objects: req.includeInfo ? page.objects.map(infoOf) : [],
        partial: page.partial,
      });
    }),

    queryUpload: calls.unary<QueryUploadRequest, QueryUploadResponse>("QueryUpload", async (req, call) => {
      const id = checkUploadId(req.uploadId);
      // The right first, then the session, then its key: an unknown id tells nothing to a caller without the right.
      ctx.allow(call, "write");
      const state = await o.uploads.query(ctx.caller(call), id);
      if (!state) throw new StorageError(Code.NotFound, `upload "${id}" is unknown or expired`);
      try {
        ctx.allow(call, "write", { key: state.key });
      } catch (err) {
        // The authorizer's message names the key; this caller may not learn it.
        if (!StorageError.is(err, Code.PermissionDenied)) throw err;
        throw new StorageError(Code.PermissionDenied, `upload "${id}" is for a key outside the caller's prefixes`);
      }
      return create(QueryUploadResponseSchema, {
        committedSize: BigInt(state.committedSize),
        complete: state.complete,
        object: state.object && toObjectInfo(state.object),
        expiresAt: timestampFromMs(state.expiresAt),
      });
    }),

    getStats: calls.unary<GetStatsRequest, GetStatsResponse>("GetStats", async (_req, call) => {
      ctx.allow(call, "admin");
      const s = o.status();
      const ops = await o.observer.snapshot();
      return create(GetStatsResponseSchema, {
        initialized: s.initialized,
        gcsAvailable: s.gcsAvailable,
        localFallbackEnabled: s.localFallbackEnabled,
        cacheEnabled: s.cacheEnabled,
        compressionEnabled: s.compressionEnabled,
        encryptionEnabled: s.encryptionEnabled,
        cacheEntries: BigInt(s.cache.entries),
        cacheBytes: BigInt(s.cache.bytes),
        cacheHits: BigInt(s.cache.hits),
        cacheMisses: BigInt(s.cache.misses),
        totalOperations: BigInt(ops.total),
        successfulOperations: BigInt(ops.successful),
        failedOperations: BigInt(ops.failed),
        compressionSavingsBytes: BigInt(ops.compressionSaved),
        pendingReplication: BigInt(s.pending.count),
        oldestPendingAgeSeconds: s.pending.oldestAgeSeconds,
        uptimeSeconds: (Date.now() - o.startedAt) / 1000,
        version: o.version,
        operations: ops.perMethod.map((m) =>
          create(OperationCountSchema, { method: m.method, total: BigInt(m.total), successful: BigInt(m.successful), failed: BigInt(m.failed) }),
        ),
        diskCacheEntries: BigInt(s.diskCache.entries),
        diskCacheBytes: BigInt(s.diskCache.bytes),
        diskCacheHits: BigInt(s.diskCache.hits),
        diskCacheMisses: BigInt(s.diskCache.misses),
      });
    }),
    getUsage: getUsageHandler(calls, ctx),

    flush: calls.serverStream<FlushRequest, FlushResponse>("Flush", (req, call, signal) => sendFlush(ctx, o.flush, req, call, signal)),

    verify: calls.serverStream<VerifyRequest, VerifyResponse>("Verify", (req, call, signal) => sendVerifyStream(ctx, o.verify, req, call, signal)),
  };
}

/** Bytes of one length-delimited field of `n` bytes on the wire: tag, length varint, payload. */
function fieldBytes(n: number): number {
  let varint = 1;
  for (let v = n; v >= 0x80; v = Math.floor(v / 0x80)) varint++;
  return 1 + varint + n;
}

/** A unary Retrieve's body whole (at most MAX_UNARY_BYTES); DATA_LOSS when it is not the recorded size. */
async function readAll(body: Readable, expected: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    parts.push(chunk);
    n += chunk.byteLength;
  }
  if (n !== expected) throw dataLoss(`read ${n} bytes of an object recorded as ${expected}`);
  return Buffer.concat(parts, n);
}
