/**
 * The conformance suite against the disk cache of GCS objects over the memory
 * backend (standing in for the raw GCS tier it wraps; the emulator-backed
 * route is test/rpc/disk-cache.test.ts), its copies in a local tier's folder.
 * Every object is kept on write too, so reads after writes come from disk.
 */
import { createFsBackend } from "../../server/backends/fs/fs-backend.js";
import { createDiskCacheBackend } from "../../server/cache/disk/disk-cache-backend.js";
import { makeTempDir } from "../kit/temp-dir.js";
import { createMemoryBackend } from "../support/memory-backend.js";
import { describeBackendConformance } from "./backend-conformance.js";

const MiB = 1024 * 1024;
const seen = { hits: 0, misses: 0 };

describeBackendConformance("disk cache over memory", async () => {
  const dir = await makeTempDir("disk-cache-conformance-");
  const local = await createFsBackend({ root: dir.path });
  const backend = await createDiskCacheBackend(createMemoryBackend(), {
    local,
    maxBytes: 256 * MiB,
    minFreeBytes: 0,
    onWrite: true,
    events: { onHit: () => seen.hits++, onMiss: () => seen.misses++ },
  });
  return {
    backend,
    cleanup: async () => {
      await backend.close();
      await local.close();
      await dir.cleanup();
    },
  };
});

// Runs after the suite (jest keeps the order of a file): the disk cache took part, or the suite proved only the backend under it.
test("the disk cache answered reads during the suite", () => {
  expect(seen.hits).toBeGreaterThan(10);
  expect(seen.misses).toBeGreaterThan(0);
});
