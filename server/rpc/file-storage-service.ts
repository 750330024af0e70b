/**
 * The FileStorageService handlers: thin. Each decodes and checks its request,
 * calls the engine, and lets one funnel (grpc-status.ts) map every error.
 */
import * as grpc from "@grpc/grpc-js";
import { create, toBinary } from "@bufbuild/protobuf";
import type { EventEmitter } from "node:events";
import type { Readable } from "node:stream";
import {
  DeleteManyResponseSchema,
  DeleteResponseSchema,
  ExistsResponseSchema,
  GetStatsResponseSchema,
  ListKeysResponseSchema,
  ObjectInfoSchema,
  OperationCountSchema,
  RetrieveResponseSchema,
  RetrieveStreamResponseSchema,
  StatResponseSchema,
  StoreResponseSchema,
  StoreStreamResponseSchema,
  type FileStorageService,
  type ObjectInfo,
  type RetrieveStreamResponse,
  type StoreStreamRequest,
  type StoreStreamTrailer,
} from "../../gen/filestorage/v1/file_storage_pb.js";
import { isUndecodable, type ServiceHandlers } from "../../client/src/grpc-binding.js";
import type { Authorizer, Scope } from "../auth/authorizer.js";
import type { Right } from "../auth/rights.js";
import type { Engine, ListEntry } from "../engine/engine.js";
import type { StackStatus } from "../stack.js";
import { BufferedSource, type ObjectRecord } from "../backends/backend.js";
import { checkKey } from "../keys.js";
import { Code, StorageError, dataLoss, failedPrecondition, invalidArgument } from "../storage-error.js";
import { toStatus, statusName, type StatusLogger } from "./grpc-status.js";
import { checkContentType, checkMetadata, expiryMs, kindName, toObjectInfo } from "./object-info.js";

/** What the handlers report (implemented by server/metrics.ts). */
export interface RpcObserver {
  recordRequest(method: string, code: string, seconds: number): void;
  bytesReceived(n: number): void;
  bytesSent(n: number): void;
  /** Operation counters for GetStats. */
  snapshot(): Promise<{
    total: number;
    successful: number;
    failed: number;
    perMethod: { method: string; total: number; successful: number; failed: number }[];
    compressionSaved: number;
  }>;
}

export interface ServiceOptions {
  engine: Engine;
  /** The stack's state, for GetStats. */
  status: () => StackStatus;
  auth: Authorizer;
  observer: RpcObserver;
  log: StatusLogger;
  maxUnaryBytes: number;
  chunkSize: number;
  version: string;
  startedAt: number;
}

type Service = (typeof FileStorageService)["method"];
// grpc-js does not export its common call type; these are the ones handlers get.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type SurfaceCall = grpc.ServerUnaryCall<any, any> | grpc.ServerReadableStream<any, any> | grpc.ServerWritableStream<any, any>;

export function createFileStorageHandlers(o: ServiceOptions): ServiceHandlers<Service> {
  const { engine, auth } = o;

  /** A signal that aborts when the client cancels or the deadline passes. */
  function callSignal(call: SurfaceCall): AbortSignal {
    const ac = new AbortController();
    const cancel = () => ac.abort(new StorageError(Code.Cancelled, "the call was cancelled"));
    // A call cancelled before its handler ran has already emitted 'cancelled'.
    if ((call as { cancelled?: boolean }).cancelled) cancel();
    else (call as EventEmitter).once("cancelled", cancel);
    return ac.signal;
  }

  function unary<Req, Res>(method: string, fn: (req: Req, call: grpc.ServerUnaryCall<Req, Res>, signal: AbortSignal) => Promise<Res>): grpc.handleUnaryCall<Req, Res> {
    return (call, callback) => {
      const started = performance.now();
      const signal = callSignal(call);
      decoded(call.request, `the ${method} request`)
        .then((req) => fn(req, call, signal))
        .then(
        (res) => {
          o.observer.recordRequest(method, "OK", (performance.now() - started) / 1000);
          callback(null, res);
        },
        (err: unknown) => {
          const status = toStatus(err, method, o.log);
          o.observer.recordRequest(method, statusName(status.code), (performance.now() - started) / 1000);
          callback(status);
        },
      );
    };
  }

  /** The one access check: throws UNAUTHENTICATED or PERMISSION_DENIED unless the caller has `right` on every scope. */
  function allow(call: SurfaceCall, right: Right, ...scopes: Scope[]) {
    auth.check(call, right, ...scopes);
  }

  const store = unary<Parameters<ServiceHandlers<Service>["store"]>[0]["request"], ReturnType<typeof create<typeof StoreResponseSchema>>>(
    "Store",
    async (req, call, signal) => {
      checkKey(req.key);
      allow(call, "write", { key: req.key });
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
    },
  );

  const storeStream: grpc.handleClientStreamingCall<StoreStreamRequest, ReturnType<typeof create<typeof StoreStreamResponseSchema>>> = (call, callback) => {
    const started = performance.now();
    const signal = callSignal(call);
    receiveStream(call, signal).then(
      (res) => {
        o.observer.recordRequest("StoreStream", "OK", (performance.now() - started) / 1000);
        callback(null, res);
      },
      (err: unknown) => {
        // Stop reading whatever the client still sends.
        call.removeAllListeners("data");
        call.resume();
        const status = toStatus(err, "StoreStream", o.log);
        o.observer.recordRequest("StoreStream", statusName(status.code), (performance.now() - started) / 1000);
        callback(status);
      },
    );
  };

  async function receiveStream(call: grpc.ServerReadableStream<StoreStreamRequest, unknown>, signal: AbortSignal) {
    const messages = call[Symbol.asyncIterator]() as AsyncIterator<StoreStreamRequest>;
    let received = 0;
    const next = async (): Promise<IteratorResult<StoreStreamRequest>> => {
      const n = await untilAborted(messages.next(), signal);
      if (!n.done) await decoded(n.value, `StoreStream message ${++received}`);
      return n;
    };
    const first = await next();
    if (first.done) throw invalidArgument("StoreStream received no messages: the first must be a header");
    if (first.value.payload.case !== "header") {
      throw invalidArgument(`the first StoreStream message must be a header, not ${first.value.payload.case ?? "an empty message"}`);
    }
    const header = first.value.payload.value;
    checkKey(header.key);
    allow(call, "write", { key: header.key });
    if (header.size !== undefined && header.size < 0n) throw invalidArgument(`header size must not be negative; got ${header.size}`);

    let trailer: StoreStreamTrailer | undefined;
    async function* chunks(): AsyncGenerator<Uint8Array> {
      for (;;) {
        const n = await next();
        if (n.done) return;
        const payload = n.value.payload;
        switch (payload.case) {
          case "chunk":
            if (trailer) throw invalidArgument("a chunk arrived after the trailer; the trailer must be the last message");
            o.observer.bytesReceived(payload.value.byteLength);
            if (payload.value.byteLength > 0) yield payload.value;
            break;
          case "header":
            throw invalidArgument("the header was sent twice; it must be the first message only");
          case "trailer":
            if (trailer) throw invalidArgument("the trailer was sent twice");
            trailer = payload.value;
            break;
          default:
            throw invalidArgument("an empty StoreStream message (no header, chunk or trailer) arrived");
        }
      }
    }
    const verify = ({ size, crc32c }: { size: number; crc32c: number }) => {
      for (const [what, declared] of [["header", header.size], ["trailer", trailer?.size]] as const) {
        if (declared !== undefined && BigInt(size) !== declared) {
          throw invalidArgument(`received ${size} bytes but the ${what} declared size ${declared}; nothing was stored`);
        }
      }
      if (trailer?.crc32c !== undefined && trailer.crc32c >>> 0 !== crc32c >>> 0) {
        throw dataLoss(
          `crc32c mismatch: the trailer says ${trailer.crc32c >>> 0} but the received data has ${crc32c >>> 0}; nothing was stored`,
        );
      }
    };
    const record = await engine.put(
      header.key,
      chunks(),
      {
        kind: kindName(header.kind),
        contentType: checkContentType(header.contentType),
        metadata: checkMetadata(header.metadata),
        expiresAt: expiryMs(header.expiresAt),
      },
      {
        ifGenerationMatch: header.ifGenerationMatch,
        signal,
        verify,
        declaredSize: header.size === undefined ? undefined : Number(header.size),
      },
    );
    return create(StoreStreamResponseSchema, { object: toObjectInfo(record) });
  }

  const retrieve = unary<{ key: string }, ReturnType<typeof create<typeof RetrieveResponseSchema>>>("Retrieve", async (req, call, signal) => {
    checkKey(req.key);
    allow(call, "read", { key: req.key });
    const head = await engine.head(req.key, { signal });
    if (!head) throw new StorageError(Code.NotFound, `key "${req.key}" not found`);
    if (head.size > o.maxUnaryBytes) throw overUnary(head.size);
    const found = await engine.get(req.key, { signal });
    if (!found) throw new StorageError(Code.NotFound, `key "${req.key}" not found`);
    if (found.record.size > o.maxUnaryBytes) {
      found.body.destroy();
      throw overUnary(found.record.size);
    }
    const data = await readAll(found.body, found.record.size);
    o.observer.bytesSent(data.byteLength);
    return create(RetrieveResponseSchema, { object: toObjectInfo(found.record), data });
  });

  function overUnary(size: number) {
    return failedPrecondition(
      `object is ${size} bytes, over the unary limit of ${o.maxUnaryBytes} bytes (MAX_UNARY_BYTES); use RetrieveStream`,
    );
  }

  const retrieveStream: grpc.handleServerStreamingCall<
    { key: string; offset: bigint; limit: bigint; ifGenerationMatch?: bigint },
    RetrieveStreamResponse
  > = (call) => {
    const started = performance.now();
    const signal = callSignal(call);
    sendStream(call, signal).then(
      () => {
        o.observer.recordRequest("RetrieveStream", "OK", (performance.now() - started) / 1000);
        call.end();
      },
      (err: unknown) => {
        const status = toStatus(err, "RetrieveStream", o.log);
        o.observer.recordRequest("RetrieveStream", statusName(status.code), (performance.now() - started) / 1000);
        // emit('error') sends the status; destroy() would leave the client waiting.
        if (!signal.aborted) call.emit("error", status);
      },
    );
  };

  async function sendStream(
    call: grpc.ServerWritableStream<{ key: string; offset: bigint; limit: bigint; ifGenerationMatch?: bigint }, RetrieveStreamResponse>,
    signal: AbortSignal,
  ) {
    const req = await decoded(call.request, "the RetrieveStream request");
    checkKey(req.key);
    allow(call, "read", { key: req.key });
    if (req.offset < 0n) throw invalidArgument(`offset must not be negative; got ${req.offset}`);
    if (req.limit < 0n) throw invalidArgument(`limit must not be negative (0 = to the end); got ${req.limit}`);
    if (req.offset > MAX_SAFE_OFFSET) {
      // Past every object (MAX_OBJECT_BYTES is at most 5 TiB), and not
      // representable as a Number: answer from the size, converting nothing.
      const head = await engine.head(req.key, { signal });
      if (!head) throw new StorageError(Code.NotFound, `key "${req.key}" not found`);
      throw new StorageError(Code.OutOfRange, `offset ${req.offset} is past the end of the object (${head.size} bytes)`);
    }
    // A limit beyond any object's size means "to the end", like 0.
    const length = req.limit === 0n || req.limit > MAX_SAFE_OFFSET ? undefined : Number(req.limit);
    const found = await engine.get(req.key, {
      range: req.offset > 0n || length !== undefined ? { offset: Number(req.offset), length } : undefined,
      ifGenerationMatch: req.ifGenerationMatch,
      signal,
    });
    if (!found) throw new StorageError(Code.NotFound, `key "${req.key}" not found`);
    const { record, body } = found;
    try {
      await send(call, create(RetrieveStreamResponseSchema, { payload: { case: "object", value: toObjectInfo(record) } }), signal);
      let pending: Buffer[] = [];
      let pendingBytes = 0;
      const flush = async () => {
        if (pendingBytes === 0) return;
        const chunk = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes);
        pending = [];
        pendingBytes = 0;
        o.observer.bytesSent(chunk.byteLength);
        await send(call, create(RetrieveStreamResponseSchema, { payload: { case: "chunk", value: chunk } }), signal);
      };
      for await (const piece of body as AsyncIterable<Buffer>) {
        // Split big pieces and gather small ones into messages of about chunkSize.
        for (let at = 0; at < piece.byteLength; ) {
          const take = Math.min(o.chunkSize - pendingBytes, piece.byteLength - at);
          pending.push(piece.subarray(at, at + take));
          pendingBytes += take;
          at += take;
          if (pendingBytes >= o.chunkSize) await flush();
        }
      }
      await flush();
    } finally {
      body.destroy();
    }
  }

  const stat = unary<{ key: string }, ReturnType<typeof create<typeof StatResponseSchema>>>("Stat", async (req, call, signal) => {
    checkKey(req.key);
    allow(call, "read", { key: req.key });
    const record = await engine.head(req.key, { signal });
    if (!record) throw new StorageError(Code.NotFound, `key "${req.key}" not found`);
    return create(StatResponseSchema, { object: toObjectInfo(record) });
  });

  const exists = unary<{ key: string }, ReturnType<typeof create<typeof ExistsResponseSchema>>>("Exists", async (req, call, signal) => {
    checkKey(req.key);
    allow(call, "read", { key: req.key });
    return create(ExistsResponseSchema, { exists: (await engine.head(req.key, { signal })) !== undefined });
  });

  const del = unary<{ key: string; ifGenerationMatch?: bigint }, ReturnType<typeof create<typeof DeleteResponseSchema>>>(
    "Delete",
    async (req, call, signal) => {
      checkKey(req.key);
      allow(call, "delete", { key: req.key });
      const deleted = await engine.delete(req.key, { ifGenerationMatch: req.ifGenerationMatch, signal });
      return create(DeleteResponseSchema, { deleted });
    },
  );

  const deleteMany = unary<{ keys: string[]; prefix: string }, ReturnType<typeof create<typeof DeleteManyResponseSchema>>>(
    "DeleteMany",
    async (req, call, signal) => {
      allow(call, "delete", ...req.keys.map((key) => ({ key })), ...(req.prefix ? [{ prefix: req.prefix }] : []));
      const count = await engine.deleteMany(req.keys, req.prefix, signal);
      return create(DeleteManyResponseSchema, { deletedCount: BigInt(count) });
    },
  );

  const listKeys = unary<
    { prefix: string; limit: number; pageToken: string; delimiter: string; includeInfo: boolean },
    ReturnType<typeof create<typeof ListKeysResponseSchema>>
  >("ListKeys", async (req, call, signal) => {
    allow(call, "list", { prefix: req.prefix });
    // Each ObjectInfo is built once: measured for the page's byte budget, then sent.
    const infos = new WeakMap<ObjectRecord, ObjectInfo>();
    const infoOf = (r: ObjectRecord) => infos.get(r) ?? infos.set(r, toObjectInfo(r)).get(r)!;
    const entryBytes = (e: ListEntry) =>
      e.prefix !== undefined
        ? fieldBytes(Buffer.byteLength(e.prefix))
        : fieldBytes(Buffer.byteLength(e.record.key)) + (req.includeInfo ? fieldBytes(toBinary(ObjectInfoSchema, infoOf(e.record)).length) : 0);
    const page = await engine.list({ prefix: req.prefix, limit: req.limit, pageToken: req.pageToken, delimiter: req.delimiter, signal, entryBytes });
    return create(ListKeysResponseSchema, {
      keys: page.objects.map((r) => r.key),
      prefixes: page.prefixes,
      nextPageToken: page.nextPageToken,
      objects: req.includeInfo ? page.objects.map(infoOf) : [],
    });
  });

  const getStats = unary<object, ReturnType<typeof create<typeof GetStatsResponseSchema>>>("GetStats", async (_req, call) => {
    allow(call, "admin");
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
    });
  });

  return {
    store,
    storeStream,
    retrieve,
    retrieveStream,
    stat,
    exists,
    delete: del,
    deleteMany,
    listKeys,
    getStats,
  } as unknown as ServiceHandlers<Service>;
}

/** Offsets and limits above this are not exact as Numbers; no object is that large. */
const MAX_SAFE_OFFSET = BigInt(Number.MAX_SAFE_INTEGER);

/** The request (or stream message) as decoded; INVALID_ARGUMENT naming `what` when its bytes were not a valid message. */
async function decoded<T>(message: T, what: string): Promise<T> {
  if (isUndecodable(message)) {
    throw invalidArgument(`${what} is not a valid ${message.messageType} (malformed protobuf: ${message.reason.slice(0, 120)})`);
  }
  return message;
}

/** Bytes of one length-delimited field of `n` bytes on the wire: tag, length varint, payload. */
function fieldBytes(n: number): number {
  let varint = 1;
  for (let v = n; v >= 0x80; v = Math.floor(v / 0x80)) varint++;
  return 1 + varint + n;
}

/** Resolves with `p`, or rejects when `signal` aborts first. */
function untilAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    // `p` may still reject (a read of the cancelled call): that outcome is moot.
    p.catch(() => undefined);
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
  });
}

/** Writes one message, waiting for 'drain' when the client is slow; a cancel ends the wait. */
async function send<T>(call: grpc.ServerWritableStream<unknown, T>, msg: T, signal: AbortSignal): Promise<void> {
  if (signal.aborted) throw signal.reason;
  if (call.write(msg)) return;
  await untilAborted(new Promise<void>((resolve) => call.once("drain", resolve)), signal);
}

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
