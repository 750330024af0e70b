/**
 * The conformance suite against the chain over two local tiers: an fs
 * backend as the primary and another as the fallback (with its outbox), a
 * circuit breaker and a writer id, as server/stack.ts chains GCS and local.
 * The outbox tests do not run: the chain's outbox is its fallback's, filled
 * by the chain itself when the primary is unavailable (rpc/gcs-outage.test.ts
 * and rpc/replication-schedules.test.ts take the primary away), while the
 * suite's `pending` option asks a tier to record an entry.
 */
import type { Backend } from "../../server/backends/backend.js";
import { createFsBackend } from "../../server/backends/fs/fs-backend.js";
import { createChainBackend } from "../../server/engine/chain-backend.js";
import { CircuitBreaker } from "../../server/engine/circuit-breaker.js";
import { makeTempDir, type TempDir } from "../kit/temp-dir.js";
import { describeBackendConformance } from "./backend-conformance.js";

/** One chain for the file (each test works under its own prefix), closed with its tiers after the file. */
let built: Promise<{ chain: Backend; dirs: TempDir[] }> | undefined;
afterAll(async () => {
  if (!built) return;
  const { chain, dirs } = await built;
  await chain.close();
  for (const dir of dirs) await dir.cleanup();
});

describeBackendConformance("chain (local primary, local fallback)", async () => {
  built ??= (async () => {
    const dirs = [await makeTempDir("fs-conformance-primary-"), await makeTempDir("fs-conformance-fallback-")];
    const chain = createChainBackend({
      primary: await createFsBackend({ root: dirs[0]!.path }),
      fallback: await createFsBackend({ root: dirs[1]!.path }),
      breaker: new CircuitBreaker({ failureThreshold: 3, resetTimeoutMs: 1000 }),
      fallbackEnabled: true,
      writer: "conformance-writer",
    });
    return { chain, dirs };
  })();
  const { chain } = await built;
  // The suite closes its backend after every test; the chain stays open until the file ends.
  return { backend: { ...chain, close: async () => undefined }, cleanup: async () => undefined };
});
