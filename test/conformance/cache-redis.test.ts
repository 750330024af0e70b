/**
 * The conformance suite against the cache layer with the shared Redis store
 * (a real redis-server), over the memory backend, built as server/stack.ts
 * builds the shared cache: right above a raw tier, holding stored bytes,
 * frames authenticated with the store's key (kept in the tier, as a GCS
 * store keeps it in its bucket).
 */
import { randomUUID } from "node:crypto";
import { createCacheBackend } from "../../server/cache/cache-backend.js";
import { fixedCacheKey, loadOrCreateCacheKey } from "../../server/cache/cache-key.js";
import { cacheNamespace } from "../../server/cache/cache-namespace.js";
import { startRedis, type RedisServer } from "../kit/redis.js";
import { createMemoryBackend } from "../support/memory-backend.js";
import { describeBackendConformance } from "./backend-conformance.js";

const MiB = 1024 * 1024;
const seen = { hits: 0, misses: 0 };

let redis: RedisServer;
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis?.stop();
});

describeBackendConformance("cache (Redis store) over memory", async () => {
  const inner = createMemoryBackend();
  const backend = await createCacheBackend(inner, {
    maxBytes: 64 * MiB,
    ttlMs: 60_000,
    // Every object of the suite is admitted, so reads after writes are answered by the cache.
    maxObjectBytes: 8 * MiB,
    holds: "stored",
    shared: { url: redis.url, namespace: cacheNamespace({ storeId: randomUUID() }), key: fixedCacheKey(await loadOrCreateCacheKey(inner)) },
    onHit: () => seen.hits++,
    onMiss: () => seen.misses++,
  });
  return { backend, cleanup: async () => undefined };
});

// Runs after the suite (jest keeps the order of a file): the cache took part, or the suite proved only the backend under it.
test("the cache answered reads during the suite", () => {
  expect(seen.hits).toBeGreaterThan(20);
  expect(seen.misses).toBeGreaterThan(0);
});
