/**
 * The conformance suite against the composed stack: buildStack
 * (server/stack.ts) from a Config that loadConfig made of daemon settings,
 * exactly as the daemon assembles it; the suite runs against its `store`
 * (the top of the layers, under the engine). Three configurations: the
 * embedded default (local tier alone), GCS as the primary with the local
 * fallback (emulator), and that with encryption and the shared Redis cache.
 */
import { randomBytes } from "node:crypto";
import type { Backend } from "../../server/backends/backend.js";
import { loadConfig } from "../../server/config/load-config.js";
import { buildStack, type Stack } from "../../server/stack.js";
import { startFakeGcs, type FakeGcs } from "../kit/fake-gcs.js";
import { startRedis, type RedisServer } from "../kit/redis.js";
import { makeTempDir, type TempDir } from "../kit/temp-dir.js";
import { CODEC_TOGGLES, describeBackendConformance, type BackendFactory } from "./backend-conformance.js";

let gcs: FakeGcs;
let redis: RedisServer;
beforeAll(async () => {
  [gcs, redis] = await Promise.all([startFakeGcs(), startRedis()]);
});
afterAll(async () => {
  await Promise.all([gcs?.stop(), redis?.stop()]);
});

/**
 * A stack from `env()` (read at the first test, once the peers run) over a
 * fresh storage folder: one per configuration, built at its first test and
 * closed (sweeper, replicator, layers) after the file. Each test works under
 * its own prefix, so they may share it; the suite's close after every test
 * is a no-op here.
 */
function sharedStack(env: () => Record<string, string>): BackendFactory {
  let built: Promise<{ stack: Stack; dir: TempDir }> | undefined;
  afterAll(async () => {
    if (!built) return;
    const { stack, dir } = await built;
    await stack.close();
    await dir.cleanup();
  });
  return async () => {
    built ??= (async () => {
      const dir = await makeTempDir("fs-conformance-stack-");
      return { stack: await buildStack(loadConfig({ env: { ...env(), LOCAL_STORAGE_PATH: dir.path } })), dir };
    })();
    const { stack } = await built;
    const backend: Backend = { ...stack.store, close: async () => undefined };
    return { backend, cleanup: async () => undefined };
  };
}

const gcsEnv = (bucket: string) => ({
  GCS_BUCKET_NAME: bucket,
  GCS_PROJECT_ID: "test",
  GCS_API_ENDPOINT: gcs.url,
  MAX_RETRIES: "1",
  TIMEOUT_SECONDS: "5",
});

// The codec is in every stack (compression is on by default).
describeBackendConformance("stack: embedded default (local tier alone)", sharedStack(() => ({})), CODEC_TOGGLES.plain);

describeBackendConformance(
  "stack: GCS primary with local fallback",
  sharedStack(() => gcsEnv(`fs-conformance-stack-${process.pid}`)),
  CODEC_TOGGLES.plain,
);

const key = randomBytes(32).toString("base64");
describeBackendConformance(
  "stack: GCS primary, encryption, shared Redis cache",
  sharedStack(() => ({
    ...gcsEnv(`fs-conformance-stack-enc-${process.pid}`),
    ENABLE_ENCRYPTION: "true",
    ENCRYPTION_KEY: key,
    CACHE_URL: redis.url,
  })),
  CODEC_TOGGLES.encrypting,
);
