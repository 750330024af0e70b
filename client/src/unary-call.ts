/**
 * One unary call with the client's deadline and token. Idempotent calls are
 * retried on UNAVAILABLE with exponential backoff and jitter (a call that
 * changes state is never repeated: it may have been applied). Rejects with a
 * FileStorageError, or with `signal.reason` when the caller aborted.
 */
import * as grpc from "@grpc/grpc-js";
import { FileStorageError } from "./file-storage-error.js";

/** A grpc-js unary method of a generated stub. */
export type UnaryMethod<Req, Res> = (
  request: Req,
  md: grpc.Metadata,
  opts: grpc.CallOptions,
  cb: (err: grpc.ServiceError | null, res?: Res) => void,
) => grpc.ClientUnaryCall;

export interface UnaryPolicy {
  /** Deadline of each attempt, ms. */
  deadlineMs: number;
  /** Retries of an idempotent call answered UNAVAILABLE. */
  retries: number;
  /** Sent with every call (a bearer token). */
  metadata: grpc.Metadata;
}

export async function callUnary<Req, Res>(
  stub: grpc.Client,
  method: UnaryMethod<Req, Res>,
  request: Req,
  policy: UnaryPolicy & { idempotent: boolean; signal?: AbortSignal },
): Promise<Res> {
  const { signal } = policy;
  for (let attempt = 0; ; attempt++) {
    signal?.throwIfAborted();
    try {
      return await new Promise<Res>((resolve, reject) => {
        const options = { deadline: Date.now() + policy.deadlineMs };
        const call = method.call(stub, request, policy.metadata.clone(), options, (err, res) => {
          signal?.removeEventListener("abort", onAbort);
          if (err) reject(err);
          else resolve(res as Res);
        });
        const onAbort = (): void => call.cancel();
        signal?.addEventListener("abort", onAbort, { once: true });
      });
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      const failure = FileStorageError.from(err);
      if (!policy.idempotent || failure.code !== grpc.status.UNAVAILABLE || attempt >= policy.retries) throw failure;
      await new Promise((r) => setTimeout(r, backoffMs(attempt)));
    }
  }
}

/** Half the ceiling plus up to another half: spreads retrying clients apart. */
function backoffMs(attempt: number): number {
  const ceiling = Math.min(2000, 100 * 2 ** attempt);
  return ceiling / 2 + Math.random() * (ceiling / 2);
}
