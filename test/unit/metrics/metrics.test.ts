import { Writable } from "node:stream";
import { createLogger } from "../../../server/logger.js";
import { createMetrics, serveMetrics } from "../../../server/metrics/metrics.js";

describe("createMetrics", () => {
  test("recordRequest feeds the counters, the histogram and snapshot()", async () => {
    const metrics = createMetrics();
    metrics.recordRequest("Store", "OK", 0.01);
    metrics.recordRequest("Store", "OK", 0.02);
    metrics.recordRequest("Store", "RESOURCE_EXHAUSTED", 0.001);
    metrics.recordRequest("Retrieve", "NOT_FOUND", 0.003);
    metrics.recordRequest("Retrieve", "OK", 0.5);
    metrics.cacheHit();
    metrics.cacheHit();
    metrics.cacheMiss();
    metrics.compressionSaved(1000);
    metrics.compressionSaved(24);

    expect(await metrics.snapshot()).toEqual({
      total: 5,
      successful: 3,
      failed: 2,
      perMethod: [
        { method: "Retrieve", total: 2, successful: 1, failed: 1 },
        { method: "Store", total: 3, successful: 2, failed: 1 },
      ],
      cacheHits: 2,
      cacheMisses: 1,
      compressionSaved: 1024,
    });

    const text = await metrics.registry.metrics();
    expect(text).toContain('fs_requests_total{method="Store",code="OK"} 2');
    expect(text).toContain('fs_requests_total{method="Retrieve",code="NOT_FOUND"} 1');
    expect(text).toContain('fs_request_duration_seconds_count{method="Store"} 3');
    expect(text).toContain('fs_request_duration_seconds_bucket{le="0.01",method="Store"} 2');
    expect(text).toContain("fs_cache_hits_total 2");
  });

  test("a fresh registry starts at zero and does not share counters with another", async () => {
    const a = createMetrics();
    const b = createMetrics();
    a.recordRequest("Stat", "OK", 0.001);
    a.bytesReceived(10);
    expect((await b.snapshot()).total).toBe(0);
    expect(await b.snapshot()).toMatchObject({ perMethod: [], cacheHits: 0, cacheMisses: 0, compressionSaved: 0 });
    expect(await b.registry.metrics()).toContain("fs_bytes_received_total 0");
    expect(await a.registry.metrics()).toContain("fs_bytes_received_total 10");
  });

  test("live-state gauges read the providers at scrape time", async () => {
    const metrics = createMetrics();
    let backlog = 3;
    metrics.setProviders({
      cache: () => ({ entries: 7, bytes: 4096 }),
      replication: () => ({ count: backlog, oldestAgeSeconds: 12.5 }),
    });
    metrics.setProviders({ gcs: () => ({ available: false, breaker: "open" }) });
    metrics.bytesSent(5);
    metrics.fallbackWrite();
    metrics.replicated("put");
    metrics.replicated("delete");
    metrics.replicated("put");

    let text = await metrics.registry.metrics();
    for (const line of [
      "fs_cache_entries 7",
      "fs_cache_bytes 4096",
      "fs_replication_backlog 3",
      "fs_replication_oldest_age_seconds 12.5",
      "fs_gcs_breaker_state 2",
      "fs_gcs_available 0",
      "fs_bytes_sent_total 5",
      "fs_fallback_writes_total 1",
      'fs_replicated_total{op="put"} 2',
      'fs_replicated_total{op="delete"} 1',
    ]) {
      expect(text).toContain(`\n${line}\n`);
    }

    backlog = 0;
    metrics.setProviders({ gcs: () => ({ available: true, breaker: "half-open" }) });
    text = await metrics.registry.metrics();
    expect(text).toContain("\nfs_replication_backlog 0\n");
    expect(text).toContain("\nfs_gcs_breaker_state 1\n");
    expect(text).toContain("\nfs_gcs_available 1\n");
  });

  test("default process metrics are in the same registry", async () => {
    const text = await createMetrics().registry.metrics();
    expect(text).toContain("process_cpu_user_seconds_total");
    expect(text).toContain("nodejs_heap_size_used_bytes");
  });
});

describe("serveMetrics", () => {
  test("serves GET /metrics on a free port and 404 elsewhere", async () => {
    const metrics = createMetrics();
    metrics.recordRequest("Exists", "OK", 0.002);
    const server = await serveMetrics(metrics, "127.0.0.1", 0);
    try {
      expect(server.port).toBeGreaterThan(0);
      const res = await fetch(`http://127.0.0.1:${server.port}/metrics`);
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toBe(metrics.registry.contentType);
      const body = await res.text();
      for (const name of [
        "fs_requests_total",
        "fs_request_duration_seconds",
        "fs_bytes_received_total",
        "fs_bytes_sent_total",
        "fs_cache_hits_total",
        "fs_cache_misses_total",
        "fs_cache_bytes",
        "fs_cache_entries",
        "fs_compression_saved_bytes_total",
        "fs_fallback_writes_total",
        "fs_replication_backlog",
        "fs_replication_oldest_age_seconds",
        "fs_replicated_total",
        "fs_gcs_breaker_state",
        "fs_gcs_available",
      ]) {
        expect(body).toContain(`# TYPE ${name} `);
      }
      expect(body).toContain('fs_requests_total{method="Exists",code="OK"} 1');

      expect((await fetch(`http://127.0.0.1:${server.port}/`)).status).toBe(404);
      expect((await fetch(`http://127.0.0.1:${server.port}/metrics`, { method: "POST" })).status).toBe(404);
    } finally {
      await server.close();
    }
    await expect(fetch(`http://127.0.0.1:${server.port}/metrics`)).rejects.toThrow();
  });

  test("a port in use is an error, not a hang", async () => {
    const first = await serveMetrics(createMetrics(), "127.0.0.1", 0);
    try {
      await expect(serveMetrics(createMetrics(), "127.0.0.1", first.port)).rejects.toThrow(/EADDRINUSE/);
    } finally {
      await first.close();
    }
  });
});

describe("createLogger", () => {
  test("writes JSON lines at the level given and censors key material and tokens", async () => {
    const lines: string[] = [];
    const destination = new Writable({
      write(chunk, _encoding, done) {
        lines.push(String(chunk));
        done();
      },
    });
    const log = createLogger("info", destination);
    const key = Buffer.alloc(32, 9);
    log.info(
      {
        config: { encryptionKey: key, encryptionPreviousKeys: [key], authTokens: { "tok-1": ["a/"] }, maxRetries: 3 },
        req: { headers: { authorization: "Bearer tok-2" } },
        token: "tok-3",
      },
      "started",
    );
    log.debug("not at info");
    await new Promise((resolve) => setImmediate(resolve));

    expect(lines).toHaveLength(1);
    const entry = JSON.parse(lines[0]);
    expect(entry).toMatchObject({
      level: 30,
      msg: "started",
      config: { encryptionKey: "[redacted]", encryptionPreviousKeys: "[redacted]", authTokens: "[redacted]", maxRetries: 3 },
      req: { headers: { authorization: "[redacted]" } },
      token: "[redacted]",
    });
    expect(lines[0]).not.toMatch(/tok-\d/);
  });
});
