/**
 * Flush: the admin RPC that drains the replication backlog now
 * (engine/flush.ts). It streams a FlushResponse at once, about every 250 ms
 * while the backlog drains, and a last one with done = true; then the stream
 * ends OK. A failure (UNAVAILABLE, DEADLINE_EXCEEDED, FAILED_PRECONDITION)
 * ends the stream with that status after the reports sent so far.
 */
import type * as grpc from "@grpc/grpc-js";
import { create } from "@bufbuild/protobuf";
import { FlushResponseSchema, type FlushRequest, type FlushResponse } from "../../gen/filestorage/v1/file_storage_pb.js";
import type { FlushOptions, FlushProgress } from "../engine/flush.js";
import { invalidArgument } from "../storage-error.js";
import type { HandlerContext } from "./handler-context.js";

/** What the handler calls: the stack's flush. */
export type Flush = (opts: FlushOptions) => Promise<FlushProgress>;

/** How often a running flush reports. */
export const FLUSH_PROGRESS_MS = 250;

export async function sendFlush(
  ctx: HandlerContext,
  flush: Flush,
  req: FlushRequest,
  call: grpc.ServerWritableStream<FlushRequest, FlushResponse>,
  signal: AbortSignal,
): Promise<void> {
  ctx.allow(call, "admin");
  const seconds = req.timeoutSeconds;
  if (seconds !== undefined && !(Number.isFinite(seconds) && seconds >= 0)) {
    throw invalidArgument(`timeout_seconds must be a finite number of seconds from 0 (0 = no limit of its own); got ${seconds}`);
  }
  // Reports are a few bytes, a few a second: they are queued without waiting for 'drain'.
  const send = (p: FlushProgress) => {
    if (!signal.aborted) call.write(create(FlushResponseSchema, { ...p, pending: BigInt(p.pending), replicated: BigInt(p.replicated), failed: BigInt(p.failed) }));
  };
  const last = await flush({ timeoutMs: seconds ? seconds * 1000 : undefined, signal, onProgress: send, progressIntervalMs: FLUSH_PROGRESS_MS });
  send(last);
}
