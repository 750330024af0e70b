/**
 * Prometheus metrics of one daemon, in a registry of its own (never prom-client's
 * global one, so several daemons in one process, as in tests, do not collide).
 *
 * Counters are incremented by the layers that see the event (rpc edge:
 * recordRequest and bytes; cache: cacheHit/cacheMiss; codec: compressionSaved;
 * engine: fallbackWrite, replicated). Gauges that mirror live state (cache size,
 * outbox backlog, GCS health) are read at scrape time from providers the engine
 * registers with setProviders(), so they can never go stale.
 *
 * GetStats answers from the same counters through snapshot(): one source of
 * numbers for both Prometheus and the RPC.
 */
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

import type { BreakerState } from "../engine/circuit-breaker.js";
import type { TierObserver } from "./metrics-backend.js";
import { registerLocalTierGauges, type LocalTierHoldings } from "./local-tier-gauges.js";

export type ReplicatedOp = "put" | "delete";

/** Callbacks read at scrape time; they must be cheap and must not throw. */
export interface MetricProviders {
  cache: () => { entries: number; bytes: number };
  diskCache: () => { entries: number; bytes: number };
  replication: () => { count: number; oldestAgeSeconds: number };
  gcs: () => { available: boolean; breaker: BreakerState };
  /** The file system holding the local tier: bytes free to the daemon, its size, and the reserve writes keep (LOCAL_MIN_FREE_BYTES). */
  disk: () => { freeBytes: number; sizeBytes: number; reserveBytes: number };
}

export interface MethodStats {
  method: string;
  total: number;
  successful: number;
  failed: number;
}

/** The operation counters GetStats reports. */
export interface MetricsSnapshot {
  total: number;
  /** Calls that ended with status OK. */
  successful: number;
  /** Calls that ended with any other status (NOT_FOUND included). */
  failed: number;
  /** Sorted by method name. */
  perMethod: MethodStats[];
  cacheHits: number;
  cacheMisses: number;
  compressionSaved: number;
}

export interface Metrics extends TierObserver {
  readonly registry: Registry;
  /** One finished RPC: its method name (e.g. "Store"), gRPC status name (e.g. "OK", "NOT_FOUND") and duration. */
  recordRequest(method: string, code: string, seconds: number): void;
  /** Object bytes received from clients / sent to clients. */
  bytesReceived(n: number): void;
  bytesSent(n: number): void;
  /** Called by the cache layer on every lookup. */
  cacheHit(): void;
  cacheMiss(): void;
  /** A shared-cache frame failed authentication and was treated as a miss. */
  cacheRejectedFrame(): void;
  /** Original bytes minus stored bytes of a compressed object. */
  compressionSaved(bytes: number): void;
  /** A write that went to the local tier because GCS was unavailable. */
  fallbackWrite(): void;
  /** An outbox entry replayed to GCS. */
  replicated(op: ReplicatedOp): void;
  /** The disk cache of GCS objects: a get answered from disk / not; an entry evicted. */
  diskCacheHit(): void;
  diskCacheMiss(): void;
  diskCacheEviction(): void;
  /** A bad ("corrupt") or orphaned copy found on `tier` (local, disk_cache, gcs) by a read, Verify or the scrubber. */
  integrityProblem(tier: string, problem: string): void;
  /** A bad copy on `tier` replaced by a good one from another tier. */
  repaired(tier: string): void;
  /** Bytes the scrubber re-read. */
  scrubbed(bytes: number): void;
  /** Registers (or replaces) the live-state providers; gauges without one stay at 0. */
  setProviders(providers: Partial<MetricProviders>): void;
  /** Adds the local tier's gauges (local-tier-gauges.ts), read from `read` at scrape time. */
  watchLocalTier(read: () => LocalTierHoldings): void;
  /** The operation counters, read from the prom-client metrics (async: prom-client reads are). */
  snapshot(): Promise<MetricsSnapshot>;
}

const BREAKER_VALUE: Record<BreakerState, number> = { closed: 0, "half-open": 1, open: 2 };

/** Creates the metrics of one daemon, with Node's default process metrics in the same registry. */
export function createMetrics(): Metrics {
  const registry = new Registry();
  const registers = [registry];
  const providers: Partial<MetricProviders> = {};

  const requests = new Counter({
    name: "fs_requests_total",
    help: "Finished RPCs by method and gRPC status",
    labelNames: ["method", "code"] as const,
    registers,
  });
  const duration = new Histogram({
    name: "fs_request_duration_seconds",
    help: "RPC duration by method",
    labelNames: ["method"] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
    registers,
  });
  const received = new Counter({ name: "fs_bytes_received_total", help: "Object bytes received", registers });
  const sent = new Counter({ name: "fs_bytes_sent_total", help: "Object bytes sent", registers });
  const hits = new Counter({ name: "fs_cache_hits_total", help: "Cache lookups that found the object", registers });
  const misses = new Counter({ name: "fs_cache_misses_total", help: "Cache lookups that missed", registers });
  const rejectedFrames = new Counter({
    name: "fs_cache_rejected_frames_total",
    help: "Shared-cache frames that failed authentication (treated as misses)",
    registers,
  });
  const saved = new Counter({
    name: "fs_compression_saved_bytes_total",
    help: "Bytes saved by compression (original minus stored)",
    registers,
  });
  const fallbackWrites = new Counter({
    name: "fs_fallback_writes_total",
    help: "Writes kept on the local tier because GCS was unavailable",
    registers,
  });
  const tierCalls = new Counter({
    name: "fs_tier_calls_total",
    help: "Calls of a storage tier (gcs, local) by operation and outcome (OK, MISS or a gRPC status name)",
    labelNames: ["tier", "op", "outcome"] as const,
    registers,
  });
  const tierSeconds = new Histogram({
    name: "fs_tier_call_seconds",
    help: "Duration of a storage tier's calls (a get until its first answer)",
    labelNames: ["tier", "op"] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers,
  });
  const replicatedTotal = new Counter({
    name: "fs_replicated_total",
    help: "Outbox entries replayed to GCS, by operation",
    labelNames: ["op"] as const,
    registers,
  });

  const diskHits = new Counter({ name: "fs_disk_cache_hits_total", help: "Reads of GCS objects answered from the disk cache", registers });
  const diskMisses = new Counter({ name: "fs_disk_cache_misses_total", help: "Reads of GCS objects the disk cache could not answer", registers });
  const diskEvictions = new Counter({
    name: "fs_disk_cache_evictions_total",
    help: "Disk-cache copies evicted (least recently used first) to make room",
    registers,
  });
  const problems = new Counter({
    name: "fs_integrity_problems_total",
    help: "Stored copies found bad (corrupt) or orphaned by a read, Verify or the scrubber, by tier (local, disk_cache, gcs)",
    labelNames: ["tier", "problem"] as const,
    registers,
  });
  const repairs = new Counter({
    name: "fs_repairs_total",
    help: "Bad copies replaced by a good copy from another tier, by the tier repaired (local, disk_cache, gcs)",
    labelNames: ["tier"] as const,
    registers,
  });
  // Every tier and problem exported from the start at 0, so increase() (and an alert on it) sees the first one.
  for (const tier of ["local", "disk_cache", "gcs"]) {
    repairs.labels(tier).inc(0);
    for (const problem of ["corrupt", "orphan"]) problems.labels(tier, problem).inc(0);
  }
  const scrubbedBytes = new Counter({ name: "fs_scrubbed_bytes_total", help: "Stored bytes the background scrubber re-read", registers });
  new Gauge({
    name: "fs_disk_cache_entries",
    help: "GCS objects held in the disk cache",
    registers,
    collect() {
      if (providers.diskCache) this.set(providers.diskCache().entries);
    },
  });
  new Gauge({
    name: "fs_disk_cache_bytes",
    help: "Stored bytes of the GCS objects held in the disk cache",
    registers,
    collect() {
      if (providers.diskCache) this.set(providers.diskCache().bytes);
    },
  });

  new Gauge({
    name: "fs_cache_entries",
    help: "Objects in the cache",
    registers,
    collect() {
      if (providers.cache) this.set(providers.cache().entries);
    },
  });
  new Gauge({
    name: "fs_cache_bytes",
    help: "Object bytes in the cache",
    registers,
    collect() {
      if (providers.cache) this.set(providers.cache().bytes);
    },
  });
  new Gauge({
    name: "fs_replication_backlog",
    help: "Outbox entries waiting for GCS",
    registers,
    collect() {
      if (providers.replication) this.set(providers.replication().count);
    },
  });
  new Gauge({
    name: "fs_replication_oldest_age_seconds",
    help: "Age of the oldest outbox entry (0 when empty)",
    registers,
    collect() {
      if (providers.replication) this.set(providers.replication().oldestAgeSeconds);
    },
  });
  new Gauge({
    name: "fs_gcs_breaker_state",
    help: "GCS circuit breaker: 0 closed, 1 half-open, 2 open",
    registers,
    collect() {
      if (providers.gcs) this.set(BREAKER_VALUE[providers.gcs().breaker]);
    },
  });
  new Gauge({
    name: "fs_gcs_available",
    help: "1 while GCS answers, else 0",
    registers,
    collect() {
      if (providers.gcs) this.set(providers.gcs().available ? 1 : 0);
    },
  });

  // Read at scrape time (a statfs each: cheap); a failed read leaves the gauge as it was.
  const disk = (pick: (d: ReturnType<MetricProviders["disk"]>) => number) =>
    function (this: Gauge) {
      try {
        if (providers.disk) this.set(pick(providers.disk()));
      } catch {
        // The folder is unreadable right now; the tier's own checks report it.
      }
    };
  new Gauge({
    name: "fs_local_disk_free_bytes",
    help: "Bytes free to the daemon on the file system holding LOCAL_STORAGE_PATH (local writes stop below the reserve)",
    registers,
    collect: disk((d) => d.freeBytes),
  });
  new Gauge({ name: "fs_local_disk_size_bytes", help: "Size of the file system holding LOCAL_STORAGE_PATH", registers, collect: disk((d) => d.sizeBytes) });
  new Gauge({
    name: "fs_local_disk_reserve_bytes",
    help: "Free bytes the local tier keeps for deletes and the index (LOCAL_MIN_FREE_BYTES)",
    registers,
    collect: disk((d) => d.reserveBytes),
  });

  collectDefaultMetrics({ register: registry });

  const sum = async (counter: Counter) => (await counter.get()).values.reduce((acc, v) => acc + v.value, 0);

  return {
    registry,
    recordRequest(method, code, seconds) {
      requests.inc({ method, code });
      duration.observe({ method }, seconds);
    },
    bytesReceived: (n) => received.inc(n),
    bytesSent: (n) => sent.inc(n),
    cacheHit: () => hits.inc(),
    cacheMiss: () => misses.inc(),
    cacheRejectedFrame: () => rejectedFrames.inc(),
    compressionSaved: (bytes) => saved.inc(bytes),
    fallbackWrite: () => fallbackWrites.inc(),
    replicated: (op) => replicatedTotal.inc({ op }),
    diskCacheHit: () => diskHits.inc(),
    diskCacheMiss: () => diskMisses.inc(),
    diskCacheEviction: () => diskEvictions.inc(),
    integrityProblem: (tier, problem) => problems.inc({ tier, problem }),
    repaired: (tier) => repairs.inc({ tier }),
    scrubbed: (bytes) => scrubbedBytes.inc(bytes),
    tierCall(tier, op, outcome, seconds) {
      tierCalls.inc({ tier, op, outcome });
      tierSeconds.observe({ tier, op }, seconds);
    },
    setProviders(next) {
      Object.assign(providers, next);
    },
    watchLocalTier: (read) => registerLocalTierGauges(registry, read),
    async snapshot() {
      const byMethod = new Map<string, MethodStats>();
      for (const { labels, value } of (await requests.get()).values) {
        const method = String(labels.method);
        const stats = byMethod.get(method) ?? { method, total: 0, successful: 0, failed: 0 };
        stats.total += value;
        if (labels.code === "OK") stats.successful += value;
        else stats.failed += value;
        byMethod.set(method, stats);
      }
      const perMethod = [...byMethod.values()].sort((a, b) => (a.method < b.method ? -1 : a.method > b.method ? 1 : 0));
      const add = (pick: (s: MethodStats) => number) => perMethod.reduce((acc, s) => acc + pick(s), 0);
      return {
        total: add((s) => s.total),
        successful: add((s) => s.successful),
        failed: add((s) => s.failed),
        perMethod,
        cacheHits: await sum(hits),
        cacheMisses: await sum(misses),
        compressionSaved: await sum(saved),
      };
    },
  };
}

/**
 * Serves GET /metrics (the registry's text exposition, with its content type)
 * on host:port; anything else is 404. Port 0 picks a free port, reported in
 * the result; whether METRICS_PORT=0 means "off" is the caller's decision.
 * close() stops listening and drops open connections.
 */
export async function serveMetrics(
  metrics: Metrics,
  host: string,
  port: number,
): Promise<{ port: number; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    const pathname = (req.url ?? "/").split("?", 1)[0];
    if ((req.method !== "GET" && req.method !== "HEAD") || pathname !== "/metrics") {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
      return;
    }
    metrics.registry.metrics().then(
      (body) => res.writeHead(200, { "content-type": metrics.registry.contentType }).end(body),
      () => res.writeHead(500, { "content-type": "text/plain" }).end("metrics collection failed\n"),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}
