/**
 * The span of one RPC (ENABLE_TRACING): a SERVER span named
 * "filestorage.v1.FileStorageService/<Method>" with OpenTelemetry's gRPC
 * attributes, the call's request id (`filestorage.request_id`, the same id a
 * failure's status and log line carry) and, at the end, the status code. A
 * caller's W3C `traceparent` (and `tracestate`) metadata makes it the child
 * of the caller's span.
 */
import { randomUUID } from "node:crypto";
import type * as grpc from "@grpc/grpc-js";
import { context, ROOT_CONTEXT, SpanKind, trace, type Span, type TextMapGetter, type Tracer } from "@opentelemetry/api";
import { FileStorageService } from "../../gen/filestorage/v1/file_storage_pb.js";
import { finishSpan } from "../tracing/spans.js";

export interface RpcSpan {
  readonly requestId: string;
  /** Runs the handler with this span active, so the spans of its tier calls are its children. */
  run<T>(fn: () => Promise<T>): Promise<T>;
  /** Ends the span with the call's gRPC status code (and its error when it failed). */
  end(code: grpc.status, err?: unknown): void;
}

const SERVICE = FileStorageService.typeName;
// Loaded with the first traced call: with tracing off the SDK's packages stay unloaded.
let w3c: import("@opentelemetry/core").W3CTraceContextPropagator | undefined;
const propagator = () =>
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  (w3c ??= new (require("@opentelemetry/core") as typeof import("@opentelemetry/core")).W3CTraceContextPropagator());

const metadataGetter: TextMapGetter<grpc.Metadata> = {
  keys: (m) => Object.keys(m.getMap()),
  get: (m, key) => {
    const values = m.get(key).filter((v): v is string => typeof v === "string");
    return values.length === 0 ? undefined : values;
  },
};

/** Starts the span of a call; a request with a `key` (or `prefix`) names it on the span. */
export function startRpcSpan(tracer: Tracer, method: string, call: { metadata: grpc.Metadata; request?: unknown }): RpcSpan {
  const requestId = randomUUID();
  // The daemon's own propagator: no process-global one needs to be installed.
  const parent = propagator().extract(ROOT_CONTEXT, call.metadata, metadataGetter);
  const span: Span = tracer.startSpan(
    `${SERVICE}/${method}`,
    {
      kind: SpanKind.SERVER,
      attributes: { "rpc.system": "grpc", "rpc.service": SERVICE, "rpc.method": method, "filestorage.request_id": requestId },
    },
    parent,
  );
  const request = call.request as { key?: unknown; prefix?: unknown } | undefined;
  if (typeof request?.key === "string" && request.key !== "") span.setAttribute("filestorage.key", request.key);
  if (typeof request?.prefix === "string" && request.prefix !== "") span.setAttribute("filestorage.prefix", request.prefix);
  const active = trace.setSpan(parent, span);
  return {
    requestId,
    run: (fn) => context.with(active, fn),
    end: (code, err) => finishSpan(span, code, err),
  };
}

