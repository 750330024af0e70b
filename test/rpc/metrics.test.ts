/**
 * Prometheus metrics scraped over HTTP from a real daemon: requests by method
 * and status, latency histograms, bytes in and out, cache hits/misses/bytes,
 * compression savings (all equal to what GetStats reports), and, with a GCS
 * emulator that goes away and comes back, fallback writes, the replication
 * backlog and the breaker state.
 */
import { FileStorageClient } from "../../client/src/index.js";
import { startDaemon, type TestDaemon } from "../support/daemon.js";
import { startFakeGcs, type FakeGcs } from "../kit/fake-gcs.js";
// METRICS_PORT=0 means "off", so the test picks a free port.
import { freePort } from "../kit/free-port.js";

type Samples = Map<string, number>;

/** GET /metrics and parse the text format into "name{labels}" -> value. */
async function scrape(port: number): Promise<Samples> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toMatch(/^text\/plain/);
  const samples: Samples = new Map();
  for (const line of (await res.text()).split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const at = line.lastIndexOf(" ");
    samples.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return samples;
}

/** The value of one series; labels in the order prom-client prints them. */
function value(s: Samples, name: string, labels: Record<string, string> = {}): number | undefined {
  const text = Object.entries(labels).map(([k, v]) => `${k}="${v}"`).join(",");
  return s.get(text ? `${name}{${text}}` : name);
}

describe("embedded daemon", () => {
  let daemon: TestDaemon;
  let client: FileStorageClient;
  let port: number;

  beforeAll(async () => {
    port = await freePort();
    daemon = await startDaemon({ METRICS_PORT: String(port), COMPRESSION_THRESHOLD_BYTES: "1024" });
    expect(daemon.server.metricsPort).toBe(port);
    client = new FileStorageClient(daemon.address);
  });
  afterAll(async () => {
    client.close();
    await daemon.stop();
  });

  test("anything but GET /metrics is 404", async () => {
    expect((await fetch(`http://127.0.0.1:${port}/other`)).status).toBe(404);
    expect((await fetch(`http://127.0.0.1:${port}/metrics`, { method: "POST" })).status).toBe(404);
  });

  test("requests, latency, bytes, cache and compression series move and agree with GetStats", async () => {
    const s0 = await scrape(port);
    const json = { rows: Array.from({ length: 2000 }, (_, i) => ({ id: i, name: "same text again" })) };
    const info = await client.store("m/json", json);
    expect(info.compressed).toBe(true);
    expect(await client.retrieve("m/json")).toEqual(json);
    expect(await client.retrieve("m/json")).toEqual(json);
    expect(await client.retrieve("m/missing")).toBeNull();
    await client.stat("m/json");

    const s1 = await scrape(port);
    const inc = (name: string, labels: Record<string, string> = {}) => (value(s1, name, labels) ?? 0) - (value(s0, name, labels) ?? 0);

    expect(inc("fs_requests_total", { method: "Store", code: "OK" })).toBe(1);
    expect(inc("fs_requests_total", { method: "Retrieve", code: "OK" })).toBe(2);
    expect(inc("fs_requests_total", { method: "Retrieve", code: "NOT_FOUND" })).toBe(1);
    expect(inc("fs_requests_total", { method: "Stat", code: "OK" })).toBe(1);
    expect(inc("fs_request_duration_seconds_count", { method: "Retrieve" })).toBe(3);
    expect(inc("fs_request_duration_seconds_bucket", { le: "+Inf", method: "Store" })).toBe(1);
    expect(value(s1, "fs_request_duration_seconds_sum", { method: "Store" })).toBeGreaterThan(0);

    expect(inc("fs_bytes_received_total")).toBe(info.size);
    expect(inc("fs_bytes_sent_total")).toBe(2 * info.size);
    expect(inc("fs_compression_saved_bytes_total")).toBe(info.size - info.storedSize);
    expect(inc("fs_cache_hits_total")).toBeGreaterThanOrEqual(2);
    expect(inc("fs_cache_misses_total")).toBeGreaterThanOrEqual(1);
    expect(value(s1, "fs_cache_entries")).toBeGreaterThanOrEqual(1);
    expect(value(s1, "fs_cache_bytes")).toBeGreaterThanOrEqual(info.size);

    // GetStats answers from the same numbers.
    const stats = await client.getStats();
    const s2 = await scrape(port);
    expect(stats.cacheHits).toBe(value(s2, "fs_cache_hits_total"));
    expect(stats.cacheMisses).toBe(value(s2, "fs_cache_misses_total"));
    expect(stats.cacheEntries).toBe(value(s2, "fs_cache_entries"));
    expect(stats.cacheBytes).toBe(value(s2, "fs_cache_bytes"));
    expect(stats.compressionSavingsBytes).toBe(value(s2, "fs_compression_saved_bytes_total"));
    expect(stats.operations.find((o) => o.method === "Retrieve")).toMatchObject({ successful: 2, failed: 1 });

    // Embedded mode: the GCS series exist and say so.
    expect(value(s2, "fs_fallback_writes_total")).toBe(0);
    expect(value(s2, "fs_replication_backlog")).toBe(0);
    expect(value(s2, "fs_gcs_breaker_state")).toBe(0);
    // Node's default process metrics are in the same registry.
    expect(value(s2, "process_resident_memory_bytes")).toBeGreaterThan(0);
  });

  test("stream bytes count too", async () => {
    const s0 = await scrape(port);
    const data = Buffer.alloc(3 * 1024 * 1024 + 5, 7);
    await client.upload("m/stream", [data], { size: data.length });
    const { stream } = await client.download("m/stream");
    let n = 0;
    for await (const c of stream) n += (c as Buffer).length;
    expect(n).toBe(data.length);
    const s1 = await scrape(port);
    expect((value(s1, "fs_bytes_received_total") ?? 0) - (value(s0, "fs_bytes_received_total") ?? 0)).toBe(data.length);
    expect((value(s1, "fs_bytes_sent_total") ?? 0) - (value(s0, "fs_bytes_sent_total") ?? 0)).toBe(data.length);
    expect(value(s1, "fs_requests_total", { method: "StoreStream", code: "OK" })).toBe(1);
    expect(value(s1, "fs_requests_total", { method: "RetrieveStream", code: "OK" })).toBe(1);
  });
});

test("the local tier's gauges: objects and bytes from the index's totals (exact after puts, overwrites and deletes, and after a restart)", async () => {
  const port = await freePort();
  let daemon = await startDaemon({ METRICS_PORT: String(port), LOCAL_MIN_FREE_BYTES: "1MiB" });
  const storage = daemon.storagePath;
  let client = new FileStorageClient(daemon.address);
  try {
    const s0 = await scrape(port);
    expect(value(s0, "fs_local_objects")).toBe(0);
    expect(value(s0, "fs_local_bytes")).toBe(0);
    const a = await client.store("g/a", Buffer.alloc(200_000, 1)); // compressed, a blob file
    await client.store("g/b", "small, inline");
    const b2 = await client.store("g/b", "replaced by a longer value, still inline");
    await client.store("g/c", "deleted");
    await client.delete("g/c");
    const s1 = await scrape(port);
    expect(value(s1, "fs_local_objects")).toBe(2);
    expect(value(s1, "fs_local_bytes")).toBe(a.size + b2.size);
    expect(value(s1, "fs_local_stored_bytes")).toBe(a.storedSize + b2.storedSize);
    expect(a.storedSize).toBeLessThan(a.size);
    // The totals live in the index: a new daemon over the same folder reads the same.
    client.close();
    await daemon.server.shutdown(2000);
    daemon = await startDaemon({ METRICS_PORT: String(port), LOCAL_STORAGE_PATH: storage });
    client = new FileStorageClient(daemon.address);
    const s2 = await scrape(port);
    expect(value(s2, "fs_local_objects")).toBe(2);
    expect(value(s2, "fs_local_bytes")).toBe(a.size + b2.size);
  } finally {
    client.close();
    await daemon.stop();
  }
});

describe("with GCS that goes away and comes back", () => {
  let gcs: FakeGcs;
  let daemon: TestDaemon;
  let client: FileStorageClient;
  let port: number;

  beforeAll(async () => {
    gcs = await startFakeGcs({ backend: "filesystem" });
    port = await freePort();
    daemon = await startDaemon({
      METRICS_PORT: String(port),
      GCS_BUCKET_NAME: "metrics-bucket",
      GCS_PROJECT_ID: "test",
      GCS_API_ENDPOINT: gcs.url,
      MAX_RETRIES: "0",
      TIMEOUT_SECONDS: "2",
      REPLICATION_INTERVAL_MS: "100",
    });
    client = new FileStorageClient(daemon.address, { retries: 0 });
  });
  afterAll(async () => {
    client?.close();
    await daemon?.stop();
    await gcs?.stop();
  });

  test("fallback writes, backlog and breaker state move, then recover", async () => {
    await client.store("g/up", "while GCS is up");
    const up = await scrape(port);
    expect(value(up, "fs_gcs_available")).toBe(1);
    expect(value(up, "fs_gcs_breaker_state")).toBe(0);
    expect(value(up, "fs_fallback_writes_total")).toBe(0);

    await gcs.kill();
    for (let i = 0; i < 5; i++) await client.store(`g/down-${i}`, `written while GCS is down ${i}`);
    const down = await scrape(port);
    expect(value(down, "fs_fallback_writes_total")).toBeGreaterThanOrEqual(1);
    expect(value(down, "fs_replication_backlog")).toBe(5);
    expect(value(down, "fs_replication_oldest_age_seconds")).toBeGreaterThan(0);
    expect(value(down, "fs_gcs_breaker_state")).toBeGreaterThan(0);
    expect(value(down, "fs_gcs_available")).toBe(0);
    const stats = await client.getStats();
    expect(stats.pendingReplication).toBe(5);
    expect(stats.gcsAvailable).toBe(false);

    await gcs.start();
    const deadline = Date.now() + 30_000;
    let now = await scrape(port);
    while (Date.now() < deadline && (value(now, "fs_replication_backlog") !== 0 || value(now, "fs_gcs_breaker_state") !== 0)) {
      // A call through the chain is the breaker's half-open trial.
      await client.store("g/after", "GCS is back").catch(() => undefined);
      await new Promise((r) => setTimeout(r, 200));
      now = await scrape(port);
    }
    expect(value(now, "fs_replication_backlog")).toBe(0);
    expect(value(now, "fs_replication_oldest_age_seconds")).toBe(0);
    expect(value(now, "fs_gcs_breaker_state")).toBe(0);
    expect(value(now, "fs_replicated_total", { op: "put" })).toBeGreaterThanOrEqual(5);
    expect((await client.getStats()).pendingReplication).toBe(0);
  }, 60_000);
});
