/**
 * Verify: checks the caller's admin right (over the prefix), runs the
 * stack's verification and sends what it reports as it goes: progress
 * messages now and then, one finding per bad or orphaned copy, the summary
 * last. Writes wait for a slow client ('drain'); a cancel stops the check.
 */
import type * as grpc from "@grpc/grpc-js";
import { create } from "@bufbuild/protobuf";
import {
  VerifyProblem,
  VerifyResponseSchema,
  VerifyTier,
  type VerifyRequest,
  type VerifyResponse,
} from "../../gen/filestorage/v1/file_storage_pb.js";
import type { IntegrityProblem, IntegrityTier, VerifyEvent, VerifyOptions } from "../engine/verify.js";
import { checkPrefix } from "../keys.js";
import { abortError, untilAborted } from "../signals.js";
import type { HandlerContext } from "./handler-context.js";

const TIERS: Record<IntegrityTier, VerifyTier> = { local: VerifyTier.LOCAL, disk_cache: VerifyTier.DISK_CACHE, gcs: VerifyTier.GCS };
const PROBLEMS: Record<IntegrityProblem, VerifyProblem> = {
  corrupt: VerifyProblem.CORRUPT,
  orphan: VerifyProblem.ORPHAN,
  unchecked: VerifyProblem.UNCHECKED,
};

/** Runs one Verify call. */
export async function sendVerifyStream(
  ctx: HandlerContext,
  verify: (opts: VerifyOptions) => AsyncIterable<VerifyEvent>,
  req: VerifyRequest,
  call: grpc.ServerWritableStream<VerifyRequest, VerifyResponse>,
  signal: AbortSignal,
): Promise<void> {
  checkPrefix(req.prefix);
  ctx.allow(call, "admin", { prefix: req.prefix });
  for await (const event of verify({ prefix: req.prefix, includeGcs: req.includeGcs, repair: req.repair, signal })) {
    await send(call, toMessage(event), signal);
  }
}

function toMessage(event: VerifyEvent): VerifyResponse {
  switch (event.type) {
    case "progress": {
      const p = event.progress;
      return create(VerifyResponseSchema, {
        payload: {
          case: "progress",
          value: {
            tier: TIERS[p.tier],
            checkedCopies: BigInt(p.checkedCopies),
            checkedBytes: BigInt(p.checkedBytes),
            totalCopies: BigInt(p.totalCopies),
            totalBytes: BigInt(p.totalBytes),
          },
        },
      });
    }
    case "finding": {
      const f = event.finding;
      return create(VerifyResponseSchema, {
        payload: {
          case: "finding",
          value: { tier: TIERS[f.tier], key: f.key, generation: f.generation, problem: PROBLEMS[f.problem], detail: f.detail, repaired: f.repaired, repair: f.repair },
        },
      });
    }
    case "summary": {
      const s = event.summary;
      return create(VerifyResponseSchema, {
        payload: {
          case: "summary",
          value: {
            checkedCopies: BigInt(s.checkedCopies),
            checkedBytes: BigInt(s.checkedBytes),
            corrupt: BigInt(s.corrupt),
            orphans: BigInt(s.orphans),
            unchecked: BigInt(s.unchecked),
            repaired: BigInt(s.repaired),
            seconds: s.seconds,
          },
        },
      });
    }
  }
}

/** Writes one message, waiting for 'drain' when the client is slow; a cancel ends the wait. */
async function send(call: grpc.ServerWritableStream<VerifyRequest, VerifyResponse>, msg: VerifyResponse, signal: AbortSignal): Promise<void> {
  if (signal.aborted) throw abortError(signal);
  if (call.write(msg)) return;
  await untilAborted(new Promise<void>((resolve) => call.once("drain", resolve)), signal);
}
