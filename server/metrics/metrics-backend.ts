/**
 * The metrics layer: a Backend that wraps one tier and reports every call of
 * it (operation, outcome, duration) to a TierObserver, so GCS's and the local
 * disk's latency and errors show apart from the RPCs that caused them; with a
 * tracer (ENABLE_TRACING) each call is also a span "<tier>.<op>" (e.g.
 * "gcs.put"), the child of the RPC's span. A get is timed (and its span ends)
 * at its first answer (the record and an open body), not at the end of the
 * body. Anything else of the inner backend (an outbox, an index) is passed
 * through unchanged.
 */
import type { Attributes, Tracer } from "@opentelemetry/api";
import type { Backend } from "../backends/backend.js";
import { StorageError } from "../storage-error.js";
import { inSpan } from "../tracing/spans.js";

/** Where tier calls are reported (server/metrics/metrics.ts). */
export interface TierObserver {
  /** One call: `outcome` is "OK", "MISS" (nothing there) or the gRPC status name of its error. */
  tierCall(tier: string, op: string, outcome: string, seconds: number): void;
}

const CODE_NAMES: Record<number, string> = {
  1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED", 5: "NOT_FOUND", 6: "ALREADY_EXISTS",
  7: "PERMISSION_DENIED", 8: "RESOURCE_EXHAUSTED", 9: "FAILED_PRECONDITION", 10: "ABORTED", 11: "OUT_OF_RANGE",
  12: "UNIMPLEMENTED", 13: "INTERNAL", 14: "UNAVAILABLE", 15: "DATA_LOSS", 16: "UNAUTHENTICATED",
};

/** The outcome label of a failed call. */
function failure(err: unknown): string {
  return err instanceof StorageError ? (CODE_NAMES[err.code] ?? "UNKNOWN") : "INTERNAL";
}

/**
 * Wraps `inner` (named `tier` in the reports and span names); the result has
 * every member `inner` has. Without an observer nothing is counted; without
 * a tracer no span is made.
 */
export function createMetricsBackend<T extends Backend>(inner: T, tier: string, observer: TierObserver | undefined, tracer?: Tracer): T {
  const timed =
    <A extends unknown[], R>(op: string, fn: (...args: A) => Promise<R>, missed: (r: R) => boolean = () => false) => {
      const measuredCall = async (...args: A): Promise<R> => {
        const started = performance.now();
        try {
          const result = await fn(...args);
          observer?.tierCall(tier, op, missed(result) ? "MISS" : "OK", (performance.now() - started) / 1000);
          return result;
        } catch (err) {
          observer?.tierCall(tier, op, failure(err), (performance.now() - started) / 1000);
          throw err;
        }
      };
      // The health check probes every few seconds: traces of those would only bury the calls' own.
      if (!tracer || op === "probe") return measuredCall;
      return (...args: A): Promise<R> =>
        inSpan(tracer, `${tier}.${op}`, { attributes: spanAttributes(tier, args[0]) }, async (span) => {
          const result = await measuredCall(...args);
          if (missed(result)) span.setAttribute("filestorage.miss", true);
          return result;
        });
    };
  return {
    ...inner,
    put: timed("put", inner.put.bind(inner)),
    get: timed("get", inner.get.bind(inner), (r) => r === undefined),
    head: timed("head", inner.head.bind(inner), (r) => r === undefined),
    delete: timed("delete", inner.delete.bind(inner)),
    list: timed("list", inner.list.bind(inner)),
    probe: timed("probe", inner.probe.bind(inner)),
  };
}

/** The tier and, for calls on one key, the key; a listing's prefix. */
function spanAttributes(tier: string, first: unknown): Attributes {
  if (typeof first === "string") return { "filestorage.tier": tier, "filestorage.key": first };
  const prefix = (first as { prefix?: unknown } | undefined)?.prefix;
  return typeof prefix === "string" ? { "filestorage.tier": tier, "filestorage.prefix": prefix } : { "filestorage.tier": tier };
}
