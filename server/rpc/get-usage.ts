/**
 * GetUsage (admin, scoped by its prefix): the live objects under a prefix
 * and their bytes, from the local index in the embedded mode, else by
 * listing the store, optionally a capped page per call (max_objects) so a
 * caller can show progress and sum the pages.
 */
import { create } from "@bufbuild/protobuf";
import { GetUsageResponseSchema, type GetUsageRequest, type GetUsageResponse } from "../../gen/filestorage/v1/file_storage_pb.js";
import type { CallObserver } from "./call-observer.js";
import type { HandlerContext } from "./handler-context.js";

export function getUsageHandler(calls: CallObserver, ctx: HandlerContext) {
  return calls.unary<GetUsageRequest, GetUsageResponse>("GetUsage", async (req, call, signal) => {
    ctx.allow(call, "admin", { prefix: req.prefix });
    const u = await ctx.engine.usage({ prefix: req.prefix, pageToken: req.pageToken, maxObjects: req.maxObjects, signal });
    return create(GetUsageResponseSchema, {
      objectCount: BigInt(u.objectCount),
      totalBytes: BigInt(u.totalBytes),
      storedBytes: BigInt(u.storedBytes),
      nextPageToken: u.nextPageToken,
      fromIndex: u.fromIndex,
    });
  });
}
