import { EventEmitter } from "node:events";
import { createCallObserver, type RpcObserver } from "../../../server/rpc/call-observer";

const observer = { recordRequest: () => undefined, bytesReceived: () => undefined, bytesSent: () => undefined } as unknown as RpcObserver;
const log = { warn: () => undefined, error: () => undefined } as never;

/** A stand-in for grpc-js's call: it emits 'cancelled' when the stream closes, answered or not. */
function fakeCall(request: unknown = {}) {
  return Object.assign(new EventEmitter(), { request, cancelled: false, end: () => undefined });
}

describe("the call observer's signal", () => {
  test("a call's stream closing after it answered aborts nothing and leaves no listener", async () => {
    const { unary } = createCallObserver({ observer, log });
    let seen: AbortSignal | undefined;
    const call = fakeCall();
    const answered = new Promise((resolve) => {
      unary("Ping", async (_req, _call, signal) => ((seen = signal), {}))(call as never, resolve as never);
    });
    await answered;
    expect(call.listenerCount("cancelled")).toBe(0);
    call.emit("cancelled");
    expect(seen?.aborted).toBe(false);
  });

  test("a client cancelling while the handler runs aborts its signal with CANCELLED", async () => {
    const { serverStream } = createCallObserver({ observer, log });
    const call = fakeCall();
    const reason = new Promise<unknown>((resolve) => {
      serverStream("Watch", (_req, _call, signal) => new Promise<void>((_, reject) => {
        signal.addEventListener("abort", () => (resolve(signal.reason), reject(signal.reason)));
      }))(call as never);
    });
    await new Promise((r) => setImmediate(r));
    call.emit("cancelled");
    expect(await reason).toMatchObject({ code: 1, message: "the call was cancelled" });
    expect(call.listenerCount("cancelled")).toBe(0);
  });

  test("a call cancelled before its handler ran starts with an aborted signal", async () => {
    const { unary } = createCallObserver({ observer, log });
    const call = Object.assign(fakeCall(), { cancelled: true });
    const aborted = await new Promise<boolean>((resolve) => {
      unary("Ping", async (_req, _call, signal) => (resolve(signal.aborted), {}))(call as never, (() => undefined) as never);
    });
    expect(aborted).toBe(true);
  });
});
