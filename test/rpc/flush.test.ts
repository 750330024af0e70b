/**
 * Flush through the real gRPC server and the real fake-gcs-server: writes
 * kept locally during an outage (a cut TCP proxy between the daemon and the
 * emulator) are all in GCS when Flush returns, with the backlog at 0, and
 * Flush started them itself (the replicator's schedule and the health check
 * are set to an hour). While GCS is still down it fails UNAVAILABLE after one
 * real attempt; a backlog that does not drain within timeout_seconds is
 * DEADLINE_EXCEEDED; a daemon without GCS answers FAILED_PRECONDITION.
 */
import { Storage } from "@google-cloud/storage";
import { FileStorageClient, type FlushProgress } from "../../client/src/index.js";
import { gcsStorageOptions } from "../../server/backends/gcs/gcs-backend.js";
import { startFakeGcs, type FakeGcs } from "../kit/fake-gcs.js";
import { startHttpFaultProxy } from "../kit/http-fault-proxy.js";
import { startProxy, type TcpProxy } from "../kit/tcp-proxy.js";
import { startDaemon, type TestDaemon } from "../support/daemon.js";
import { failure } from "../support/expect-failure.js";
import { hasLiveObject } from "../support/gcs-objects.js";

let gcs: FakeGcs;
let sdk: Storage;
let buckets = 0;
const cleanups: (() => Promise<unknown> | void)[] = [];

beforeAll(async () => {
  gcs = await startFakeGcs();
  sdk = new Storage(gcsStorageOptions({ apiEndpoint: gcs.url, projectId: "test", timeoutMs: 5000 }));
});
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});
afterAll(async () => {
  await gcs?.stop();
});

const BREAKER_RESET_SECONDS = 1;

/** A daemon on GCS through `endpoint` that replicates only when asked: its schedule and health check are an hour apart. */
async function daemon(endpoint: string, extra: Record<string, string> = {}): Promise<{ daemon: TestDaemon; client: FileStorageClient; bucket: string }> {
  const bucket = `fs-flush-${process.pid}-${++buckets}`;
  const d = await startDaemon({
    GCS_BUCKET_NAME: bucket,
    GCS_PROJECT_ID: "test",
    GCS_API_ENDPOINT: endpoint,
    MAX_RETRIES: "0",
    TIMEOUT_SECONDS: "2",
    GCS_BREAKER_RESET_SECONDS: String(BREAKER_RESET_SECONDS),
    REPLICATION_INTERVAL_MS: "3600000",
    HEALTH_CHECK_SECONDS: "3600",
    ...extra,
  });
  const client = new FileStorageClient(d.address, { retries: 0 });
  cleanups.push(() => d.stop(), () => client.close());
  return { daemon: d, client, bucket };
}

async function proxied(): Promise<TcpProxy> {
  const proxy = await startProxy(gcs.port);
  cleanups.push(() => proxy.close());
  return proxy;
}

/** Writes `keys` while the proxy is cut; each lands on the local tier, pending. */
async function writeDuringOutage(client: FileStorageClient, proxy: TcpProxy, keys: string[]): Promise<void> {
  proxy.cut();
  for (const key of keys) expect(await client.store(key, `value of ${key}`)).toMatchObject({ backend: "local", pendingReplication: true });
  expect((await client.getStats()).pendingReplication).toBe(keys.length);
}

const keysOf = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}/k${String(i).padStart(2, "0")}`);

test("after an outage, Flush replicates every pending write into GCS before it returns, reporting progress", async () => {
  const proxy = await proxied();
  const { client, bucket } = await daemon(proxy.url);
  const keys = keysOf("f", 30);
  await writeDuringOutage(client, proxy, keys);
  proxy.restore();
  // Nothing replicates on its own in this setup: the backlog waits for the flush.
  await new Promise((r) => setTimeout(r, 500));
  expect((await client.getStats()).pendingReplication).toBe(keys.length);

  const reports: FlushProgress[] = [];
  const last = await client.flush({ onProgress: (p) => reports.push(p) });
  expect(last).toMatchObject({ pending: 0, replicated: keys.length, oldestPendingAgeSeconds: 0, done: true });
  expect(reports[0]).toMatchObject({ pending: keys.length, replicated: 0, done: false });
  expect(reports[0]!.oldestPendingAgeSeconds).toBeGreaterThan(0);
  expect(reports.at(-1)).toEqual(last);
  expect(reports.slice(0, -1).every((r) => !r.done)).toBe(true);

  for (const key of keys) {
    const [bytes] = await sdk.bucket(bucket).file(key).download();
    expect(bytes.toString()).toBe(`value of ${key}`);
  }
  const stats = await client.getStats();
  expect(stats).toMatchObject({ pendingReplication: 0, oldestPendingAgeSeconds: 0, gcsAvailable: true });
  expect(await client.stat(keys[0]!)).toMatchObject({ backend: "gcs", pendingReplication: false });
});

test("Flush replays deletes made during the outage too", async () => {
  const proxy = await proxied();
  const { client, bucket } = await daemon(proxy.url);
  await client.store("d/gone", "kept in GCS until the flush");
  proxy.cut();
  expect(await client.delete("d/gone")).toBe(true);
  proxy.restore();
  expect(await client.flush()).toMatchObject({ pending: 0, replicated: 1, done: true });
  expect(await hasLiveObject(sdk.bucket(bucket), "d/gone")).toBe(false);
});

test("while GCS is still down Flush fails UNAVAILABLE naming GCS after one attempt, and the backlog stays", async () => {
  const proxy = await proxied();
  const { client, bucket } = await daemon(proxy.url);
  const keys = keysOf("down", 3);
  await writeDuringOutage(client, proxy, keys);
  const reports: FlushProgress[] = [];
  const started = Date.now();
  const err = await failure(client.flush({ onProgress: (p) => reports.push(p) }));
  // The breaker opened during the writes: the flush waits for its trial call (BREAKER_RESET_SECONDS), which fails.
  expect(Date.now() - started).toBeLessThan((BREAKER_RESET_SECONDS + 4) * 1000);
  expect(err.codeName).toBe("UNAVAILABLE");
  expect(err.details).toMatch(/^GCS is unreachable: 3 writes still pending \(oldest \d+ s\); they replicate on their own once GCS answers, or flush again$/);
  expect(err.details).not.toContain(bucket);
  expect(reports[0]).toMatchObject({ pending: 3, done: false });
  expect((await client.getStats()).pendingReplication).toBe(3);

  // Once GCS is back, the same flush succeeds.
  proxy.restore();
  expect(await client.flush()).toMatchObject({ pending: 0, replicated: 3, done: true });
});

test("a backlog that does not drain within timeout_seconds is DEADLINE_EXCEEDED, with what is left", async () => {
  const http = await startHttpFaultProxy(gcs.port);
  cleanups.push(() => http.close());
  const { client } = await daemon(http.url, { TIMEOUT_SECONDS: "10" });
  http.fail(() => true, 503);
  for (const key of keysOf("slow", 4)) await client.store(key, key);
  http.fail(undefined);
  // GCS answers again, slowly: each request takes 1.5 s, so 4 copies cannot finish in 1 s.
  http.slow(() => true, 1500);
  const started = Date.now();
  const err = await failure(client.flush({ timeoutSeconds: 1 }));
  expect(err.codeName).toBe("DEADLINE_EXCEEDED");
  expect(err.details).toMatch(/^flush stopped after its timeout \(1 s\) with [1-4] writes? still pending \(oldest \d+ s\); replication goes on in the background$/);
  expect(Date.now() - started).toBeLessThan(4000);
  http.slow(undefined);
  expect(await client.flush()).toMatchObject({ pending: 0, done: true });
});

test("with nothing pending Flush succeeds at once", async () => {
  const { client } = await daemon(gcs.url);
  await client.store("up/1", "written straight to GCS");
  const reports: FlushProgress[] = [];
  expect(await client.flush({ onProgress: (p) => reports.push(p) })).toEqual({ pending: 0, replicated: 0, failed: 0, oldestPendingAgeSeconds: 0, done: true });
  expect(reports).toHaveLength(2);
});

test("a daemon without a GCS tier answers FAILED_PRECONDITION; a bad timeout is INVALID_ARGUMENT", async () => {
  const d = await startDaemon();
  const client = new FileStorageClient(d.address, { retries: 0 });
  cleanups.push(() => d.stop(), () => client.close());
  const err = await failure(client.flush());
  expect([err.codeName, err.details]).toEqual([
    "FAILED_PRECONDITION",
    "this daemon has no GCS tier (GCS_BUCKET_NAME is unset): it keeps no replication backlog, there is nothing to flush",
  ]);
  const bad = await failure(client.flush({ timeoutSeconds: -1 }));
  expect([bad.codeName, bad.details]).toEqual(["INVALID_ARGUMENT", "timeout_seconds must be a finite number of seconds from 0 (0 = no limit of its own); got -1"]);
});
