/**
 * What the assembled stack (stack.ts) is to the daemon and the tests: what
 * it reports as it works (StackEvents), what can be injected beyond the
 * Config (StackHooks), the state it reports (StackStatus), and its calls and
 * parts (Stack).
 */
import type { Tracer } from "@opentelemetry/api";
import type { Backend } from "./backends/backend.js";
import type { FsBackend, FsFaults } from "./backends/fs/fs-backend.js";
import type { GcsBackend } from "./backends/gcs/gcs-backend.js";
import type { CacheBackend } from "./cache/cache-backend.js";
import type { DiskCacheBackend, DiskCacheStats } from "./cache/disk/disk-cache-backend.js";
import type { BreakerState, CircuitBreaker } from "./engine/circuit-breaker.js";
import type { Engine } from "./engine/engine.js";
import type { FlushOptions, FlushProgress } from "./engine/flush.js";
import type { Quotas } from "./engine/quota.js";
import type { IntegrityTier, Repairs } from "./engine/repair.js";
import type { Outcome, Replicator } from "./engine/replicator.js";
import type { IntegrityProblem, VerifyEvent, VerifyOptions, VerifySummary } from "./engine/verify.js";
import type { TierObserver } from "./metrics/metrics-backend.js";
import type { UploadSessions } from "./uploads/upload-sessions.js";

/** What the stack reports as it works (metrics, logs). */
export interface StackEvents {
  onCompressionSaved?: (bytes: number) => void;
  onFallback?: (op: "put" | "delete") => void;
  onReplicated?: (op: "put" | "delete", outcome: Outcome) => void;
  onBreakerState?: (state: BreakerState) => void;
  onExpired?: (count: number) => void;
  /** A get/head answered by the cache / not answered by it. */
  onCacheHit?: () => void;
  onCacheMiss?: () => void;
  /** A shared-cache frame failed authentication (a miss). */
  onCacheRejectedFrame?: () => void;
  /** The disk cache: a get answered from disk / not; an entry evicted. */
  onDiskCacheHit?: () => void;
  onDiskCacheMiss?: () => void;
  onDiskCacheEviction?: () => void;
  /** A bad or orphaned copy found (by a read, Verify or the scrubber). */
  onIntegrityProblem?: (tier: IntegrityTier, problem: IntegrityProblem) => void;
  /** A bad copy replaced by a good one from another tier. */
  onRepaired?: (tier: IntegrityTier) => void;
  /** Bytes the scrubber re-read. */
  onScrubbed?: (bytes: number) => void;
  /** Each call of a tier (gcs, local) with its outcome and duration. */
  tier?: TierObserver;
  /** ENABLE_TRACING: a span per tier call (gcs, local, cache) and per replicated entry. */
  tracer?: Tracer;
  log?: { warn(obj: object, msg: string): void; info(obj: object, msg: string): void };
}

/** What tests and the daemon inject beyond the Config. */
export interface StackHooks {
  fsFaults?: FsFaults;
}

/** The state GetStats, health and metrics report. */
export interface StackStatus {
  initialized: boolean;
  gcsEnabled: boolean;
  gcsAvailable: boolean;
  breaker?: BreakerState;
  localFallbackEnabled: boolean;
  cacheEnabled: boolean;
  compressionEnabled: boolean;
  encryptionEnabled: boolean;
  cache: { entries: number; bytes: number; hits: number; misses: number };
  diskCache: DiskCacheStats;
  pending: { count: number; oldestAgeSeconds: number };
}

export interface Stack {
  /** What the RPC handlers call. */
  engine: Engine;
  /** The top of the layers, under the engine. */
  store: Backend;
  /** Resumable upload sessions (StoreStream with an upload_id, QueryUpload). */
  uploads: UploadSessions;
  status(): StackStatus;
  /** Resolves when a write can be made durable somewhere now. */
  probe(signal?: AbortSignal): Promise<void>;
  /** Runs one replication pass (no-op without GCS). */
  replicate(): Promise<{ replicated: number; remaining: number }>;
  /**
   * Drains the replication backlog now and waits until it is empty
   * (engine/flush.ts: UNAVAILABLE when GCS cannot be reached, DEADLINE_EXCEEDED
   * after opts.timeoutMs); FAILED_PRECONDITION when there is no GCS tier.
   */
  flush(opts?: FlushOptions): Promise<FlushProgress>;
  /** Deletes expired objects (and, with GCS, sweeps the bucket); returns how many expired ones. */
  sweepExpired(opts?: { gcs?: boolean }): Promise<number>;
  /** Re-reads and checks stored copies (engine/verify.ts): progress, findings, then a summary. */
  verify(opts: VerifyOptions): AsyncIterable<VerifyEvent>;
  /** Runs one scrubber pass now (repairing what it can); its summary. */
  scrub(): Promise<VerifySummary | undefined>;
  /** The parts, for admin work and tests. */
  readonly parts: {
    local: FsBackend;
    gcs?: GcsBackend;
    breaker?: CircuitBreaker;
    replicator?: Replicator;
    cache?: CacheBackend;
    diskCache?: DiskCacheBackend;
    repairs?: Repairs;
    quotas?: Quotas;
  };
  close(): Promise<void>;
}
