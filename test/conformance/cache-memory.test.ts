/** The conformance suite against the cache layer with its in-memory store, over the memory backend. */
import { createCacheBackend } from "../../server/cache/cache-backend.js";
import { createMemoryBackend } from "../support/memory-backend.js";
import { describeBackendConformance } from "./backend-conformance.js";

const MiB = 1024 * 1024;
const seen = { hits: 0, misses: 0 };

describeBackendConformance("cache (memory store) over memory", async () => ({
  // Every object of the suite is admitted, so reads after writes are answered by the cache.
  backend: await createCacheBackend(createMemoryBackend(), {
    maxBytes: 64 * MiB,
    ttlMs: 60_000,
    maxObjectBytes: 8 * MiB,
    onHit: () => seen.hits++,
    onMiss: () => seen.misses++,
  }),
  cleanup: async () => undefined,
}));

// Runs after the suite (jest keeps the order of a file): the cache took part, or the suite proved only the backend under it.
test("the cache answered reads during the suite", () => {
  expect(seen.hits).toBeGreaterThan(20);
  expect(seen.misses).toBeGreaterThan(0);
});
