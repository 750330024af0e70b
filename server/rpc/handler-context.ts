/** What every FileStorageService handler works with. */
import type { Right } from "../auth/rights.js";
import type { Scope } from "../auth/authorizer.js";
import type { Engine } from "../engine/engine.js";
import type { RpcObserver, SurfaceCall } from "./call-observer.js";

export interface HandlerContext {
  engine: Engine;
  observer: RpcObserver;
  /** The one access check: throws UNAUTHENTICATED or PERMISSION_DENIED unless the caller has `right` on every scope. */
  allow(call: SurfaceCall, right: Right, ...scopes: Scope[]): void;
  /** MAX_UNARY_BYTES */
  maxUnaryBytes: number;
  /** CHUNK_SIZE: bytes per RetrieveStream message. */
  chunkSize: number;
}
