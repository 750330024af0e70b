/**
 * An OTLP/HTTP trace receiver for tests: an HTTP server on 127.0.0.1 that
 * takes what an OpenTelemetry exporter POSTs to /v1/traces (the JSON
 * encoding of ExportTraceServiceRequest), answers as a collector does, and
 * keeps every span with its resource, attributes flattened to plain values.
 * A request that is not OTLP JSON is answered 400 and recorded as a defect.
 */
import * as http from "node:http";
import type { AddressInfo } from "node:net";

export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  /** "" for a root span. */
  parentSpanId: string;
  name: string;
  /** OTLP's SpanKind: 1 internal, 2 server, 3 client. */
  kind: number;
  attributes: Record<string, string | number | boolean>;
  /** OTLP's status code: 0 unset, 1 ok, 2 error. */
  statusCode: number;
  resource: Record<string, string | number | boolean>;
  startNanos: bigint;
  endNanos: bigint;
}

export interface OtlpReceiver {
  /** The base URL to give as TRACING_ENDPOINT. */
  url: string;
  spans: ReceivedSpan[];
  /** Requests that were not valid OTLP JSON (should stay empty). */
  defects: string[];
  /** Resolves with the spans `match` accepts once there are at least `count`; rejects after `timeoutMs`. */
  waitFor(match: (s: ReceivedSpan) => boolean, count?: number, timeoutMs?: number): Promise<ReceivedSpan[]>;
  close(): Promise<void>;
}

interface AnyValue {
  stringValue?: string;
  intValue?: string | number;
  doubleValue?: number;
  boolValue?: boolean;
}
interface KeyValue {
  key: string;
  value: AnyValue;
}

function flatten(list: KeyValue[] | undefined): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const { key, value } of list ?? []) {
    if (value.stringValue !== undefined) out[key] = value.stringValue;
    else if (value.intValue !== undefined) out[key] = Number(value.intValue);
    else if (value.doubleValue !== undefined) out[key] = value.doubleValue;
    else if (value.boolValue !== undefined) out[key] = value.boolValue;
  }
  return out;
}

/** OTLP JSON carries ids as hex; some encoders send base64. Both become lower-case hex. */
function hexId(id: unknown): string {
  if (typeof id !== "string" || id === "") return "";
  return /^[0-9a-f]+$/i.test(id) ? id.toLowerCase() : Buffer.from(id, "base64").toString("hex");
}

export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const defects: string[] = [];
  const server = http.createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on("data", (c: Buffer) => parts.push(c));
    req.on("end", () => {
      const reject = (why: string) => {
        defects.push(why);
        res.writeHead(400, { "content-type": "application/json" }).end(JSON.stringify({ message: why }));
      };
      if (req.method !== "POST" || req.url !== "/v1/traces") return reject(`${req.method} ${req.url}: want POST /v1/traces`);
      if (!String(req.headers["content-type"]).startsWith("application/json")) return reject(`content-type ${req.headers["content-type"]}`);
      let body: { resourceSpans?: { resource?: { attributes?: KeyValue[] }; scopeSpans?: { spans?: Record<string, unknown>[] }[] }[] };
      try {
        body = JSON.parse(Buffer.concat(parts).toString("utf8"));
      } catch {
        return reject("body is not JSON");
      }
      if (!Array.isArray(body.resourceSpans)) return reject("no resourceSpans");
      for (const rs of body.resourceSpans) {
        const resource = flatten(rs.resource?.attributes);
        for (const ss of rs.scopeSpans ?? []) {
          for (const s of ss.spans ?? []) {
            spans.push({
              traceId: hexId(s.traceId),
              spanId: hexId(s.spanId),
              parentSpanId: hexId(s.parentSpanId),
              name: String(s.name),
              kind: Number(s.kind ?? 0),
              attributes: flatten(s.attributes as KeyValue[]),
              statusCode: Number((s.status as { code?: number } | undefined)?.code ?? 0),
              resource,
              startNanos: BigInt(String(s.startTimeUnixNano ?? 0)),
              endNanos: BigInt(String(s.endTimeUnixNano ?? 0)),
            });
          }
        }
      }
      // A collector's answer: an ExportTraceServiceResponse with nothing rejected.
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    spans,
    defects,
    async waitFor(match, count = 1, timeoutMs = 15_000) {
      const started = Date.now();
      for (;;) {
        const found = spans.filter(match);
        if (found.length >= count) return found;
        if (Date.now() - started > timeoutMs) {
          throw new Error(`timed out waiting for ${count} span(s); received: ${spans.map((s) => s.name).join(", ") || "none"}`);
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
