/**
 * Tracing with OpenTelemetry (ENABLE_TRACING, TRACING_ENDPOINT): a tracer
 * whose spans are batched and sent as OTLP/HTTP (JSON) to
 * `<TRACING_ENDPOINT>/v1/traces`. Only loaded when tracing is on: with it off
 * the daemon imports nothing of the SDK and its code paths take no span.
 *
 * The daemon's tracer provider is its own, not the process-global one, so
 * daemons in one process (tests) keep their spans apart; only the context
 * manager (AsyncLocalStorage, which carries the active span through awaits)
 * is process-wide, and it is installed once.
 */
import { context, type Tracer } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BasicTracerProvider, BatchSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler } from "@opentelemetry/sdk-trace-base";
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from "@opentelemetry/semantic-conventions";

export interface TracingOptions {
  /** OTLP/HTTP base URL, e.g. http://127.0.0.1:4318; spans go to <endpoint>/v1/traces. */
  endpoint: string;
  /** Share of new traces recorded, 0..1; a caller's sampled `traceparent` is always followed. */
  sampleRatio: number;
  version: string;
  /** How long finished spans wait to be sent in one batch; default 1000 ms. */
  batchDelayMs?: number;
}

export interface Tracing {
  tracer: Tracer;
  /** Sends the spans still waiting and stops the exporter. */
  shutdown(): Promise<void>;
}

let contextManagerInstalled = false;

/** Starts the exporter and returns the daemon's tracer. */
export function startTracing(opts: TracingOptions): Tracing {
  if (!contextManagerInstalled) {
    // false when another context manager is already global: then that one carries the spans.
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    contextManagerInstalled = true;
  }
  // A collector that does not answer costs at most timeoutMillis per batch (and at shutdown); its spans are dropped.
  const exporter = new OTLPTraceExporter({ url: `${opts.endpoint.replace(/\/+$/, "")}/v1/traces`, timeoutMillis: 3000 });
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: "filestorage", [ATTR_SERVICE_VERSION]: opts.version }),
    sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(opts.sampleRatio) }),
    spanProcessors: [new BatchSpanProcessor(exporter, { scheduledDelayMillis: opts.batchDelayMs ?? 1000 })],
  });
  return {
    tracer: provider.getTracer("filestorage", opts.version),
    shutdown: () => provider.shutdown(),
  };
}
