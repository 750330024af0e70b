/**
 * The one wrapper every RPC handler runs in: it gives the handler a signal
 * that aborts when the client cancels or the deadline passes, turns a request
 * that did not decode into INVALID_ARGUMENT, times the call, maps its error
 * through the one funnel (grpc-status.ts) and records the outcome. Unary,
 * client-stream and server-stream handlers differ only in how they answer.
 */
import type { EventEmitter } from "node:events";
import type * as grpc from "@grpc/grpc-js";
import type { Tracer } from "@opentelemetry/api";
import { isUndecodable } from "@filestorage/client/grpc-binding";
import { Code, StorageError, invalidArgument } from "../storage-error.js";
import { statusName, toStatus, type StatusLogger } from "./grpc-status.js";
import { startRpcSpan, type RpcSpan } from "./rpc-span.js";

/** What the handlers report (implemented by server/metrics/metrics.ts). */
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

// grpc-js does not export its common call type; these are the ones handlers get.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type SurfaceCall = grpc.ServerUnaryCall<any, any> | grpc.ServerReadableStream<any, any> | grpc.ServerWritableStream<any, any>;

/** The request (or stream message) as decoded; INVALID_ARGUMENT naming `what` when its bytes were not a valid message. */
export function decoded<T>(message: T, what: string): T {
  if (isUndecodable(message)) {
    throw invalidArgument(`${what} is not a valid ${message.messageType} (malformed protobuf: ${message.reason.slice(0, 120)})`);
  }
  return message;
}

/**
 * A signal that aborts (CANCELLED) when the client cancels or the deadline
 * passes, until `release()`: grpc-js emits 'cancelled' when any call's stream
 * closes, a finished one's too, so the handler's end must release it or every
 * call would pay for an abort (an error with its stack, the signal's
 * listeners) after it answered.
 */
export function callSignal(call: SurfaceCall): { signal: AbortSignal; release: () => void } {
  const ac = new AbortController();
  const cancel = () => ac.abort(new StorageError(Code.Cancelled, "the call was cancelled"));
  // A call cancelled before its handler ran has already emitted 'cancelled'.
  if ((call as { cancelled?: boolean }).cancelled) {
    cancel();
    return { signal: ac.signal, release: () => undefined };
  }
  (call as EventEmitter).once("cancelled", cancel);
  return { signal: ac.signal, release: () => void (call as EventEmitter).removeListener("cancelled", cancel) };
}

export interface CallObserver {
  unary<Req, Res>(method: string, fn: (req: Req, call: grpc.ServerUnaryCall<Req, Res>, signal: AbortSignal) => Promise<Res>): grpc.handleUnaryCall<Req, Res>;
  clientStream<Req, Res>(method: string, fn: (call: grpc.ServerReadableStream<Req, Res>, signal: AbortSignal) => Promise<Res>): grpc.handleClientStreamingCall<Req, Res>;
  serverStream<Req, Res>(method: string, fn: (req: Req, call: grpc.ServerWritableStream<Req, Res>, signal: AbortSignal) => Promise<void>): grpc.handleServerStreamingCall<Req, Res>;
}

/**
 * `tracer` (ENABLE_TRACING): each call also runs in a span named after its
 * method (server/rpc/rpc-span.ts), the child of the caller's `traceparent`
 * when it sends one; without a tracer no span is made at all.
 */
export function createCallObserver(o: { observer: RpcObserver; log: StatusLogger; tracer?: Tracer }): CallObserver {
  /** Runs `fn` timed (and traced); `answer` gets null and the result, or the status to send. */
  function observe<T>(
    method: string,
    call: SurfaceCall,
    fn: (signal: AbortSignal) => Promise<T>,
    answer: (status: ReturnType<typeof toStatus> | null, result?: T, signal?: AbortSignal) => void,
  ): void {
    const { signal, release } = callSignal(call);
    const started = performance.now();
    const seconds = () => (performance.now() - started) / 1000;
    const span: RpcSpan | undefined = o.tracer && startRpcSpan(o.tracer, method, call);
    // A synchronous throw (a bad request caught early) goes the same way as a rejection.
    const run = () => fn(signal);
    Promise.resolve()
      .then(span ? () => span.run(run) : run)
      .then(
        (result) => {
          release();
          o.observer.recordRequest(method, "OK", seconds());
          span?.end(0);
          answer(null, result, signal);
        },
        (err: unknown) => {
          release();
          const status = toStatus(err, method, o.log, span?.requestId);
          o.observer.recordRequest(method, statusName(status.code), seconds());
          span?.end(status.code, err);
          answer(status, undefined, signal);
        },
      );
  }

  return {
    unary: (method, fn) => (call, callback) => {
      observe(method, call, (signal) => fn(decoded(call.request, `the ${method} request`), call, signal), (status, res) =>
        status ? callback(status) : callback(null, res),
      );
    },
    clientStream: (method, fn) => (call, callback) => {
      observe(method, call, (signal) => fn(call, signal), (status, res) => {
        if (!status) return callback(null, res);
        // Stop reading whatever the client still sends.
        call.removeAllListeners("data");
        call.resume();
        callback(status);
      });
    },
    serverStream: (method, fn) => (call) => {
      observe(method, call, (signal) => fn(decoded(call.request, `the ${method} request`), call, signal), (status, _res, signal) => {
        if (!status) return void call.end();
        // emit('error') sends the status; destroy() would leave the client waiting.
        if (!signal?.aborted) call.emit("error", status);
      });
    },
  };
}
