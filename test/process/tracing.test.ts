/**
 * Tracing (ENABLE_TRACING, TRACING_ENDPOINT) through daemon processes
 * into a real OTLP/HTTP receiver (test/kit/otlp-receiver.ts, which takes the
 * exporter's JSON POSTs to /v1/traces): a SERVER span per RPC named after it
 * with the request id and status code, child spans for the tier calls (local,
 * GCS, cache), a trace of its own per replicated entry, a caller's
 * traceparent followed, a collector that is down costing the caller nothing;
 * and with tracing off the SDK is never loaded.
 *
 * The daemons are processes (dist/): the OTLP exporter loads Node's http
 * module with a dynamic import(), which jest's module sandbox refuses.
 */
import { spawn } from "node:child_process";
import * as path from "node:path";
import { Metadata } from "@grpc/grpc-js";
import { FileStorageClient, FileStorageError, status } from "../../client/src/index.js";
import { REQUEST_ID_METADATA } from "../../server/rpc/grpc-status.js";
import { spawnDaemon, type DaemonProcess } from "../kit/daemon-process.js";
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from "../kit/otlp-receiver.js";
import { startFakeGcs, type FakeGcs } from "../kit/fake-gcs.js";
import { startProxy } from "../kit/tcp-proxy.js";
import { freePort } from "../kit/free-port.js";
import { makeTempDir } from "../kit/temp-dir.js";
import { create } from "@bufbuild/protobuf";
import { ExistsRequestSchema } from "../../gen/filestorage/v1/file_storage_pb.js";
import { rawClient, unaryCall } from "../support/raw-client.js";

const SERVICE = "filestorage.v1.FileStorageService";
const SERVER = 2;
const INTERNAL = 1;
const ERROR = 2;

let receiver: OtlpReceiver;
const cleanups: (() => Promise<void> | void)[] = [];

beforeAll(async () => {
  receiver = await startOtlpReceiver();
});
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
  expect(receiver.defects).toEqual([]);
});
afterAll(async () => {
  await receiver?.close();
});

async function daemonProcess(env: Record<string, string>): Promise<DaemonProcess> {
  const tmp = await makeTempDir("fs-traced-");
  const daemon = await spawnDaemon({ LOCAL_STORAGE_PATH: tmp.path, ...env });
  cleanups.push(() => tmp.cleanup(), () => daemon.stop());
  return daemon;
}

async function tracedDaemon(env: Record<string, string> = {}): Promise<{ daemon: DaemonProcess; client: FileStorageClient }> {
  const daemon = await daemonProcess({ ENABLE_TRACING: "true", TRACING_ENDPOINT: receiver.url, ...env });
  const client = new FileStorageClient(daemon.address, { retries: 0 });
  cleanups.push(() => client.close());
  return { daemon, client };
}

const rpc = (method: string, key: string) => (s: ReceivedSpan) => s.name === `${SERVICE}/${method}` && s.attributes["filestorage.key"] === key;
const childrenOf = (parent: ReceivedSpan) => receiver.spans.filter((s) => s.parentSpanId === parent.spanId && s.traceId === parent.traceId);

test("each RPC is a SERVER span named after it, with the request id and status; its local tier calls are its children", async () => {
  const { client } = await tracedDaemon({ ENABLE_CACHE: "false" });
  await client.store("traced/a", "hello");
  const [store] = await receiver.waitFor(rpc("Store", "traced/a"));
  expect(store).toMatchObject({
    kind: SERVER,
    parentSpanId: "",
    attributes: expect.objectContaining({
      "rpc.system": "grpc",
      "rpc.service": SERVICE,
      "rpc.method": "Store",
      "rpc.grpc.status_code": status.OK,
      "filestorage.request_id": expect.stringMatching(/^[0-9a-f-]{36}$/),
    }),
    resource: expect.objectContaining({ "service.name": "filestorage", "service.version": expect.any(String) }),
  });
  expect(store.endNanos).toBeGreaterThan(store.startNanos);
  const [put] = await receiver.waitFor((s) => s.name === "local.put" && s.parentSpanId === store.spanId);
  expect(put).toMatchObject({ kind: INTERNAL, traceId: store.traceId, attributes: expect.objectContaining({ "filestorage.tier": "local", "filestorage.key": "traced/a" }) });

  // A stream is one span from the first message to the last.
  const { stream } = await client.download("traced/a");
  for await (const _ of stream);
  const [retrieve] = await receiver.waitFor(rpc("RetrieveStream", "traced/a"));
  expect(retrieve.attributes["rpc.grpc.status_code"]).toBe(status.OK);
  await receiver.waitFor((s) => s.name === "local.get" && s.parentSpanId === retrieve.spanId);

  await client.upload("traced/streamed", [Buffer.alloc(300_000, 7)]);
  const [upload] = await receiver.waitFor(rpc("StoreStream", "traced/streamed"));
  expect(upload.attributes["rpc.grpc.status_code"]).toBe(status.OK);
  await receiver.waitFor((s) => s.name === "local.put" && s.parentSpanId === upload.spanId);
});

test("a failed call's span carries its status code and the same request id as its status; only server faults are errors", async () => {
  const { client } = await tracedDaemon();
  const failure = await client.download("traced/missing").then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(FileStorageError.is(failure, status.NOT_FOUND)).toBe(true);
  const requestId = (failure as FileStorageError).metadata?.get(REQUEST_ID_METADATA)[0];
  expect(requestId).toEqual(expect.any(String));
  const [span] = await receiver.waitFor(rpc("RetrieveStream", "traced/missing"));
  expect(span.attributes["rpc.grpc.status_code"]).toBe(status.NOT_FOUND);
  expect(span.attributes["filestorage.request_id"]).toBe(requestId);
  // NOT_FOUND is the caller's: not an error of the server.
  expect(span.statusCode).not.toBe(ERROR);
  // RPC -> cache (the default in-memory cache) -> local tier, each a miss.
  const [cacheGet] = await receiver.waitFor((s) => s.name === "cache.get" && s.parentSpanId === span.spanId);
  const [localGet] = await receiver.waitFor((s) => s.name === "local.get" && s.parentSpanId === cacheGet.spanId);
  expect(cacheGet.attributes["filestorage.miss"]).toBe(true);
  expect(localGet.attributes["filestorage.miss"]).toBe(true);
  // Health checks probe the tiers every few seconds: they make no traces.
  expect(receiver.spans.filter((s) => s.name.endsWith(".probe"))).toEqual([]);
});

test("a caller's W3C traceparent makes the RPC span its child", async () => {
  const { daemon } = await tracedDaemon();
  const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
  const parentId = "00f067aa0ba902b7";
  const raw = rawClient(daemon.address);
  cleanups.push(() => raw.close());
  const md = new Metadata();
  md.set("traceparent", `00-${traceId}-${parentId}-01`);
  const { err } = await unaryCall(raw.exists, raw, create(ExistsRequestSchema, { key: "traced/propagated" }), md);
  expect(err).toBeNull();
  const [span] = await receiver.waitFor(rpc("Exists", "traced/propagated"));
  expect(span.traceId).toBe(traceId);
  expect(span.parentSpanId).toBe(parentId);
});

describe("with GCS", () => {
  let gcs: FakeGcs;
  beforeAll(async () => {
    gcs = await startFakeGcs();
  });
  afterAll(async () => {
    await gcs?.stop();
  });

  const gcsEnv = (endpoint: string, bucket: string) => ({
    GCS_BUCKET_NAME: bucket,
    GCS_PROJECT_ID: "test",
    GCS_API_ENDPOINT: endpoint,
    MAX_RETRIES: "1",
    TIMEOUT_SECONDS: "2",
    REPLICATION_INTERVAL_MS: "200",
  });

  test("GCS and cache calls are children of the RPC: a cached read has a cache span and no GCS read", async () => {
    const { client } = await tracedDaemon(gcsEnv(gcs.url, `traced-${process.pid}-1`));
    await client.store("traced/g", "on gcs");
    const [store] = await receiver.waitFor(rpc("Store", "traced/g"));
    const [cachePut] = await receiver.waitFor((s) => s.name === "cache.put" && s.parentSpanId === store.spanId);
    await receiver.waitFor((s) => s.name === "gcs.put" && s.parentSpanId === cachePut.spanId && s.traceId === store.traceId);

    expect(await client.retrieve("traced/g")).toBe("on gcs");
    const [retrieve] = await receiver.waitFor(rpc("Retrieve", "traced/g"));
    const [cacheGet] = await receiver.waitFor((s) => s.name === "cache.get" && s.parentSpanId === retrieve.spanId);
    // Give the batch time to hold any GCS span of this trace: a cache hit has none.
    await new Promise((r) => setTimeout(r, 1500));
    expect(childrenOf(cacheGet).map((s) => s.name)).toEqual([]);
  });

  test("a write during an outage, replicated later, is a trace of its own: a replicate span over the GCS calls", async () => {
    const proxy = await startProxy(gcs.port);
    cleanups.push(() => proxy.close());
    const { client } = await tracedDaemon({ ...gcsEnv(proxy.url, `traced-${process.pid}-2`), ENABLE_CACHE: "false" });
    proxy.cut();
    await client.store("traced/offline", "written while GCS was away");
    const [store] = await receiver.waitFor(rpc("Store", "traced/offline"));
    // The chain tried GCS (failing UNAVAILABLE, an error of the server side) and wrote locally.
    const tried = await receiver.waitFor((s) => s.name === "gcs.put" && s.traceId === store.traceId);
    expect(tried[0].attributes["rpc.grpc.status_code"]).toBe(status.UNAVAILABLE);
    expect(tried[0].statusCode).toBe(ERROR);
    await receiver.waitFor((s) => s.name === "local.put" && s.traceId === store.traceId);

    // The replicator's next round after the breaker's trial call succeeds.
    proxy.restore();
    const [replicate] = await receiver.waitFor(
      (s) => s.name === "replicate" && s.attributes["filestorage.key"] === "traced/offline" && s.attributes["filestorage.outcome"] === "copied",
    );
    expect(replicate.parentSpanId).toBe("");
    expect(replicate.traceId).not.toBe(store.traceId);
    expect(replicate.attributes["filestorage.op"]).toBe("put");
    const children = (await receiver.waitFor((s) => s.traceId === replicate.traceId && s.parentSpanId === replicate.spanId, 2)).map((s) => s.name);
    expect(children).toEqual(expect.arrayContaining(["gcs.head", "gcs.put"]));
  });
});

test("a collector that does not answer costs callers nothing, and shutdown stays prompt", async () => {
  const closed = await freePort();
  const daemon = await daemonProcess({ ENABLE_TRACING: "true", TRACING_ENDPOINT: `http://127.0.0.1:${closed}` });
  const client = new FileStorageClient(daemon.address, { retries: 0 });
  try {
    for (let i = 0; i < 50; i++) await client.store(`traced/lost/${i}`, "x");
    expect(await client.retrieve("traced/lost/49")).toBe("x");
  } finally {
    client.close();
  }
  const started = Date.now();
  const exit = await daemon.kill("SIGTERM");
  expect(exit.code).toBe(0);
  // The exporter's timeout (3 s) bounds the last flush.
  expect(Date.now() - started).toBeLessThan(6000);
});

test("with tracing off (the default) the daemon never loads the OpenTelemetry SDK", async () => {
  const tmp = await makeTempDir("fs-untraced-");
  cleanups.push(() => tmp.cleanup());
  const root = path.resolve(__dirname, "../..");
  // A daemon in a fresh process (the build's code), asked afterwards which modules it loaded.
  const script = `
    const { loadConfig } = require("./dist/server/config/load-config.js");
    const { startServer } = require("./dist/server/server.js");
    const { createLogger } = require("./dist/server/logger.js");
    (async () => {
      const config = loadConfig({ env: { LISTEN_ADDRESS: "127.0.0.1:0", METRICS_PORT: "0", LOCAL_STORAGE_PATH: ${JSON.stringify(tmp.path)} } });
      const server = await startServer(config, { logger: createLogger("fatal") });
      const loaded = Object.keys(require.cache).filter((m) => m.includes("@opentelemetry/"));
      await server.shutdown(1000);
      console.log(JSON.stringify(loaded.map((m) => m.split("node_modules/")[1].split("/").slice(0, 2).join("/"))));
    })();`;
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn(process.execPath, ["-e", script], { cwd: root, stdio: ["ignore", "pipe", "inherit"] });
    let text = "";
    child.stdout.on("data", (b: Buffer) => (text += b));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve(text) : reject(new Error(`exited ${code}`))));
  });
  const packages = [...new Set(JSON.parse(out) as string[])];
  // The API (a few small modules the call paths reference) only; no SDK, exporter or context manager.
  expect(packages.filter((p) => p !== "@opentelemetry/api")).toEqual([]);
});
