/** What every FileStorageService handler works with. */
import type { Right } from "../auth/rights.js";
import type { Scope } from "../auth/authorizer.js";
import type { Engine } from "../engine/engine.js";
import type { UploadSessions } from "../uploads/upload-sessions.js";
import type { RpcObserver, SurfaceCall } from "./call-observer.js";

export interface HandlerContext {
  engine: Engine;
  observer: RpcObserver;
  /** The one access check: throws UNAUTHENTICATED or PERMISSION_DENIED unless the caller has `right` on every scope. */
  allow(call: SurfaceCall, right: Right, ...scopes: Scope[]): void;
  /** The caller's name (auth entry, or "anonymous"): per-caller limits and upload ids go by it. */
  caller(call: SurfaceCall): string;
  /** Resumable upload sessions (StoreStream with an upload_id, QueryUpload). */
  uploads: UploadSessions;
  /** MAX_UNARY_BYTES */
  maxUnaryBytes: number;
  /** CHUNK_SIZE: bytes per RetrieveStream message. */
  chunkSize: number;
}
