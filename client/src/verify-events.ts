/**
 * The client's plain view of a Verify call's messages (progress, findings,
 * the summary) and the call itself as an async iterator of them.
 */
import type * as grpc from "@grpc/grpc-js";
import { VerifyProblem, VerifyTier, type VerifyResponse } from "../../gen/filestorage/v1/file_storage_pb.js";
import { FileStorageError } from "./file-storage-error.js";

/** Where a checked copy lives. */
export type VerifyTierName = "local" | "disk-cache" | "gcs" | "unspecified";
/** What is wrong with it. */
export type VerifyProblemName = "corrupt" | "orphan" | "unchecked" | "unspecified";

export interface VerifyProgressEvent {
  type: "progress";
  /** The tier being checked now. */
  tier: VerifyTierName;
  checkedCopies: number;
  checkedBytes: number;
  /** What there is to check on the tiers whose size is known (grows as GCS is listed). */
  totalCopies: number;
  totalBytes: number;
}

export interface VerifyFindingEvent {
  type: "finding";
  tier: VerifyTierName;
  /** "" for orphaned bytes. */
  key: string;
  generation: bigint;
  problem: VerifyProblemName;
  detail: string;
  repaired: boolean;
  /** How it was repaired; "" when it was not. */
  repair: string;
}

export interface VerifySummaryEvent {
  type: "summary";
  checkedCopies: number;
  checkedBytes: number;
  corrupt: number;
  orphans: number;
  unchecked: number;
  repaired: number;
  seconds: number;
}

export type VerifyEvent = VerifyProgressEvent | VerifyFindingEvent | VerifySummaryEvent;

const TIERS: Record<number, VerifyTierName> = { [VerifyTier.LOCAL]: "local", [VerifyTier.DISK_CACHE]: "disk-cache", [VerifyTier.GCS]: "gcs" };
const PROBLEMS: Record<number, VerifyProblemName> = {
  [VerifyProblem.CORRUPT]: "corrupt",
  [VerifyProblem.ORPHAN]: "orphan",
  [VerifyProblem.UNCHECKED]: "unchecked",
};

/** The plain view of one VerifyResponse; undefined for an empty one. */
export function toVerifyEvent(msg: VerifyResponse): VerifyEvent | undefined {
  const p = msg.payload;
  switch (p.case) {
    case "progress":
      return {
        type: "progress",
        tier: TIERS[p.value.tier] ?? "unspecified",
        checkedCopies: Number(p.value.checkedCopies),
        checkedBytes: Number(p.value.checkedBytes),
        totalCopies: Number(p.value.totalCopies),
        totalBytes: Number(p.value.totalBytes),
      };
    case "finding":
      return {
        type: "finding",
        tier: TIERS[p.value.tier] ?? "unspecified",
        key: p.value.key,
        generation: p.value.generation,
        problem: PROBLEMS[p.value.problem] ?? "unspecified",
        detail: p.value.detail,
        repaired: p.value.repaired,
        repair: p.value.repair,
      };
    case "summary":
      return {
        type: "summary",
        checkedCopies: Number(p.value.checkedCopies),
        checkedBytes: Number(p.value.checkedBytes),
        corrupt: Number(p.value.corrupt),
        orphans: Number(p.value.orphans),
        unchecked: Number(p.value.unchecked),
        repaired: Number(p.value.repaired),
        seconds: p.value.seconds,
      };
    default:
      return undefined;
  }
}

/** The events of an open Verify call; the call is cancelled when the iteration stops early or `signal` aborts. */
export async function* verifyEvents(call: grpc.ClientReadableStream<VerifyResponse>, signal?: AbortSignal): AsyncGenerator<VerifyEvent> {
  const onAbort = () => call.cancel();
  signal?.addEventListener("abort", onAbort, { once: true });
  let done = false;
  try {
    for await (const msg of call as AsyncIterable<VerifyResponse>) {
      const event = toVerifyEvent(msg);
      if (event) yield event;
    }
    done = true;
  } catch (err) {
    done = true;
    if (signal?.aborted) throw signal.reason;
    throw FileStorageError.from(err);
  } finally {
    signal?.removeEventListener("abort", onAbort);
    if (!done) call.cancel();
  }
}
