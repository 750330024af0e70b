/**
 * Spans around the daemon's own work, for the layers that take a tracer
 * (the RPC edge, the tier wrappers, the replicator). A span is the child of
 * whatever span is active where the work starts, and the active one while the
 * work runs, so tier calls nest under the RPC that caused them.
 */
import { context, SpanKind, SpanStatusCode, trace, type Attributes, type Context, type Span, type Tracer } from "@opentelemetry/api";
import { StorageError } from "../storage-error.js";

/** gRPC codes that are the server's failure (OpenTelemetry's gRPC conventions), not the caller's. */
const SERVER_SIDE = new Set([2, 4, 12, 13, 14, 15]);

/**
 * Runs `fn` in a new span named `name` (an INTERNAL span unless `kind` says
 * otherwise), ending it when `fn` settles; a failure is recorded on it with
 * its gRPC code (`rpc.grpc.status_code`), and marks the span an error when it
 * is the server's fault.
 */
export async function inSpan<T>(
  tracer: Tracer,
  name: string,
  opts: { attributes?: Attributes; kind?: SpanKind; parent?: Context },
  fn: (span: Span) => Promise<T>,
): Promise<T> {
  const parent = opts.parent ?? context.active();
  const span = tracer.startSpan(name, { kind: opts.kind ?? SpanKind.INTERNAL, attributes: opts.attributes }, parent);
  try {
    const result = await context.with(trace.setSpan(parent, span), () => fn(span));
    span.end();
    return result;
  } catch (err) {
    finishSpan(span, err instanceof StorageError ? err.code : 13, err);
    throw err;
  }
}

/**
 * Ends `span` with gRPC status `code` (`rpc.grpc.status_code`); with the
 * failure `err` recorded and an error status when the code is the server's
 * fault.
 */
export function finishSpan(span: Span, code: number, err?: unknown): void {
  span.setAttribute("rpc.grpc.status_code", code);
  if (err !== undefined && SERVER_SIDE.has(code)) {
    span.recordException(err instanceof Error ? err : String(err));
    span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
  }
  span.end();
}
