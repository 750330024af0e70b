/**
 * A generic grpc-js client that puts raw bytes on the wire: identity
 * serializers, so a test or the fuzzer can send what no typed client would
 * (undecodable protobuf, invalid UTF-8 in strings, messages past the limits)
 * and read the status the daemon answers. Used by the hostile-input tests and
 * bench/fuzz.ts.
 */
import type { EventEmitter } from "node:events";
import * as grpc from "@grpc/grpc-js";

export const SERVICE_PATH = "/filestorage.v1.FileStorageService";

/** How a call ended: the status code (0 = OK), its details, and the raw response messages. */
export interface WireResult {
  code: grpc.status;
  details: string;
  responses: Buffer[];
}

const identity = (b: Buffer) => b;
/** "Store" is a FileStorageService method; a full path ("/grpc.health.v1.Health/Check") is taken as it is. */
const pathOf = (method: string): string => (method.startsWith("/") ? method : `${SERVICE_PATH}/${method}`);

export interface WireClient {
  unary(method: string, request: Uint8Array, opts?: { timeoutMs?: number }): Promise<WireResult>;
  /** Sends `messages` in order (one per write), then half-closes. */
  clientStream(method: string, messages: Iterable<Uint8Array>, opts?: { timeoutMs?: number }): Promise<WireResult>;
  serverStream(method: string, request: Uint8Array, opts?: { timeoutMs?: number }): Promise<WireResult>;
  close(): void;
}

/** A raw client of `address`; sends messages of up to 64 MiB (the daemon's limits decide). */
export function wireClient(address: string): WireClient {
  const client = new grpc.Client(address, grpc.credentials.createInsecure(), {
    "grpc.max_send_message_length": 64 << 20,
    "grpc.max_receive_message_length": 64 << 20,
  });
  const options = (timeoutMs = 30_000): grpc.CallOptions => ({ deadline: Date.now() + timeoutMs });
  const ended = (err: grpc.ServiceError | null, responses: Buffer[]): WireResult =>
    err ? { code: err.code, details: err.details, responses } : { code: grpc.status.OK, details: "", responses };

  return {
    unary(method, request, opts) {
      return new Promise((resolve) => {
        client.makeUnaryRequest(pathOf(method), identity, identity, Buffer.from(request), new grpc.Metadata(), options(opts?.timeoutMs), (err, res) =>
          resolve(ended(err, res ? [res] : [])),
        );
      });
    },
    clientStream(method, messages, opts) {
      return new Promise((resolve) => {
        const call = client.makeClientStreamRequest(pathOf(method), identity, identity, new grpc.Metadata(), options(opts?.timeoutMs), (err, res) =>
          resolve(ended(err, res ? [res] : [])),
        );
        // The server may answer (and close) before everything is written.
        call.on("error", () => undefined);
        void (async () => {
          for (const m of messages) {
            if (!call.write(Buffer.from(m))) await untilDrainedOrClosed(call);
            if (call.closed || call.destroyed) return;
          }
          call.end();
        })();
      });
    },
    serverStream(method, request, opts) {
      return new Promise((resolve) => {
        const responses: Buffer[] = [];
        const call = client.makeServerStreamRequest(pathOf(method), identity, identity, Buffer.from(request), new grpc.Metadata(), options(opts?.timeoutMs));
        call.on("data", (b: Buffer) => responses.push(b));
        // A failed call also emits 'error'; 'status' carries the same code either way.
        call.on("error", () => undefined);
        call.on("status", (s: grpc.StatusObject) => resolve({ code: s.code, details: s.details, responses }));
      });
    },
    close: () => client.close(),
  };
}

/** The status name ("INVALID_ARGUMENT") of a code, for assertions that read well. */
export function statusName(code: grpc.status): string {
  return grpc.status[code] ?? String(code);
}

/** Resolves on the next 'drain' or 'close', leaving no listener behind (a long stream waits many times). */
function untilDrainedOrClosed(call: EventEmitter): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      call.off("drain", done);
      call.off("close", done);
      resolve();
    };
    call.once("drain", done);
    call.once("close", done);
  });
}
