/**
 * The client side of Flush (an admin RPC): drains the daemon's replication
 * backlog into GCS and reports progress until it is empty.
 */
import type * as grpc from "@grpc/grpc-js";
import { status } from "@grpc/grpc-js";
import type { FlushResponse } from "../../gen/filestorage/v1/file_storage_pb.js";
import { FileStorageError } from "./file-storage-error.js";

/** One progress report of a flush. */
export interface FlushProgress {
  /** Writes waiting for replication now. */
  pending: number;
  /** Writes replicated since the flush began. */
  replicated: number;
  /** Replication attempts that failed since the flush began (each is retried). */
  failed: number;
  oldestPendingAgeSeconds: number;
  /** The last report: the backlog is empty. */
  done: boolean;
}

export interface FlushOptions {
  /** The daemon stops with DEADLINE_EXCEEDED after this many seconds with writes still pending; absent = no limit. */
  timeoutSeconds?: number;
  /** Each report as it arrives (the daemon sends one at once, then about every 250 ms). */
  onProgress?: (p: FlushProgress) => void;
  signal?: AbortSignal;
}

/** Reads a Flush call to its end: resolves with the last report (done) or rejects with a FileStorageError. */
export async function readFlush(call: grpc.ClientReadableStream<FlushResponse>, opts: FlushOptions): Promise<FlushProgress> {
  const onAbort = (): void => call.cancel();
  opts.signal?.addEventListener("abort", onAbort, { once: true });
  let last: FlushProgress | undefined;
  try {
    for await (const msg of call as AsyncIterable<FlushResponse>) {
      last = {
        pending: Number(msg.pending),
        replicated: Number(msg.replicated),
        failed: Number(msg.failed),
        oldestPendingAgeSeconds: msg.oldestPendingAgeSeconds,
        done: msg.done,
      };
      opts.onProgress?.(last);
    }
  } catch (err) {
    throw opts.signal?.aborted ? opts.signal.reason : FileStorageError.from(err);
  } finally {
    opts.signal?.removeEventListener("abort", onAbort);
  }
  if (!last?.done) throw new FileStorageError(status.INTERNAL, "Flush ended without its final report");
  return last;
}

