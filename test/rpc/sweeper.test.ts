/**
 * The expiry sweeper through the real server, watched at an HTTP proxy in
 * front of the real fake-gcs-server: the frequent sweep reads the local
 * index and never lists the bucket; the rare bucket sweep never overlaps
 * itself, however slow GCS answers.
 */
import { FileStorageClient } from "../../client/src/index.js";
import { startDaemon } from "../support/daemon.js";
import { startFakeGcs, type FakeGcs } from "../kit/fake-gcs.js";
import { startHttpFaultProxy, type HttpFaultProxy, type ProxiedRequest } from "../kit/http-fault-proxy.js";

let gcs: FakeGcs;
let proxy: HttpFaultProxy;
beforeAll(async () => {
  gcs = await startFakeGcs();
  proxy = await startHttpFaultProxy(gcs.port);
});
afterAll(async () => {
  await proxy?.close();
  await gcs?.stop();
});

/** An object listing of a bucket (not a read of one object, not the bucket's own metadata). */
const isListing = (r: ProxiedRequest) => r.method === "GET" && /^\/storage\/v1\/b\/[^/]+\/o(\?|$)/.test(r.url);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const env = (bucket: string, extra: Record<string, string>) => ({
  GCS_BUCKET_NAME: bucket,
  GCS_PROJECT_ID: "test",
  GCS_API_ENDPOINT: proxy.url,
  HEALTH_CHECK_SECONDS: "3600",
  REPLICATION_INTERVAL_MS: "3600000",
  ...extra,
});

test("the sweep every EXPIRY_SWEEP_SECONDS reads the local index: it never lists the bucket, yet removes expired local copies", async () => {
  const daemon = await startDaemon(env("fs-sweep-index", { EXPIRY_SWEEP_SECONDS: "1", GCS_SWEEP_SECONDS: "3600", ENABLE_CACHE: "false" }));
  const client = new FileStorageClient(daemon.address, { retries: 0 });
  try {
    for (let i = 0; i < 5; i++) await client.store(`idx/${i}`, `v${i}`, { expiresAt: new Date(Date.now() + 60_000) });
    // A copy waiting for replication that expires: the local sweep finds it by the index.
    proxy.fail(() => true);
    const expiresAt = Date.now() + 3000;
    await client.store("idx/pending", "short", { expiresAt: new Date(expiresAt) });
    proxy.fail(undefined);
    expect(await client.stat("idx/pending")).toMatchObject({ pendingReplication: true });
    const before = proxy.requests.filter(isListing).length;
    await sleep(expiresAt - Date.now() + 2200);
    expect(proxy.requests.filter(isListing).length).toBe(before);
    const local = daemon.server.stack.status();
    expect(local.pending.count).toBe(1); // the pending copy became a pending delete
    expect(await client.retrieve("idx/pending")).toBeNull();
  } finally {
    client.close();
    await daemon.stop();
  }
});

test("the bucket sweep never overlaps itself while GCS answers slowly", async () => {
  const daemon = await startDaemon(env("fs-sweep-slow", { EXPIRY_SWEEP_SECONDS: "3600", GCS_SWEEP_SECONDS: "1" }));
  try {
    proxy.slow(isListing, 2500);
    const slowedBefore = proxy.slowed.count;
    // Six sweep ticks while each listing takes 2.5 s: at most one listing at a time.
    await sleep(6000);
    expect(proxy.slowed.count - slowedBefore).toBeGreaterThanOrEqual(1);
    expect(proxy.slowed.mostAtOnce).toBe(1);
  } finally {
    proxy.slow(undefined);
    await daemon.stop();
  }
});
