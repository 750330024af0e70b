/**
 * Quotas across daemons: two daemons of one store (one bucket on the real
 * fake-gcs-server) sharing a real redis-server (CACHE_URL) enforce one quota
 * between them: atomic reservations in Redis, and writes of one key taking
 * turns across daemons.
 */
import { randomBytes } from "node:crypto";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { FileStorageClient } from "../../client/src/index.js";
import { startDaemon, type TestDaemon } from "../support/daemon.js";
import { failure } from "../support/expect-failure.js";
import { startFakeGcs, type FakeGcs } from "../kit/fake-gcs.js";
import { startRedis, type RedisServer } from "../kit/redis.js";
import { makeTempDir, type TempDir } from "../kit/temp-dir.js";

const QUOTA = 10_000;
let gcs: FakeGcs;
let redis: RedisServer;
let dir: TempDir;
const daemons: TestDaemon[] = [];
const clients: FileStorageClient[] = [];

beforeAll(async () => {
  gcs = await startFakeGcs();
  redis = await startRedis();
  dir = await makeTempDir("fs-shared-quota-");
  const configPath = path.join(dir.path, "config.json");
  await fs.writeFile(configPath, JSON.stringify({ quotas: { "q/": QUOTA } }));
  for (let i = 0; i < 2; i++) {
    const daemon = await startDaemon({
      CONFIG_FILE: configPath,
      GCS_BUCKET_NAME: "fs-shared-quota",
      GCS_PROJECT_ID: "test",
      GCS_API_ENDPOINT: gcs.url,
      CACHE_URL: redis.url,
      ENABLE_COMPRESSION: "false",
    });
    daemons.push(daemon);
    clients.push(new FileStorageClient(daemon.address, { retries: 0 }));
  }
}, 60_000);

afterAll(async () => {
  for (const c of clients) c.close();
  for (const d of daemons) await d.stop();
  await redis?.stop();
  await gcs?.stop();
  await dir?.cleanup();
});

const [a, b] = [() => clients[0]!, () => clients[1]!];
const held = async () => (await a().listKeys({ prefix: "q/", includeInfo: true })).objects.reduce((n, o) => n + o.size, 0);

test("one daemon's writes count against the other's: the last bytes cannot be taken twice", async () => {
  await a().store("q/a", randomBytes(6000));
  const refused = await failure(b().store("q/b", randomBytes(6000)));
  expect(refused.codeName).toBe("RESOURCE_EXHAUSTED");
  expect(refused.details).toContain('"q/"');
  await b().store("q/b", randomBytes(4000));
  expect((await failure(a().store("q/c", randomBytes(1)))).codeName).toBe("RESOURCE_EXHAUSTED");
  // A delete through one daemon frees the bytes for the other.
  expect(await a().delete("q/b")).toBe(true);
  await b().store("q/c", randomBytes(4000));
  expect(await a().deleteMany({ prefix: "q/" })).toBe(2);
});

test("concurrent writes through both daemons never hold more than the quota together", async () => {
  const settled = await Promise.allSettled(
    Array.from({ length: 12 }, (_, i) => clients[i % 2]!.store(`q/race/${i}`, randomBytes(2000))),
  );
  const stored = settled.filter((o) => o.status === "fulfilled").length;
  expect(stored).toBe(5);
  expect(await held()).toBe(5 * 2000);
  await a().deleteMany({ prefix: "q/" });
});

test("concurrent overwrites of one key through both daemons take turns: the old size is freed once", async () => {
  await a().store("q/big", randomBytes(9000));
  await Promise.all(Array.from({ length: 6 }, (_, i) => clients[i % 2]!.store("q/big", randomBytes(100))));
  expect((await failure(b().store("q/fill", randomBytes(9950)))).codeName).toBe("RESOURCE_EXHAUSTED");
  await b().store("q/fill", randomBytes(9900));
  expect(await held()).toBe(QUOTA);
  await a().deleteMany({ prefix: "q/" });
});
