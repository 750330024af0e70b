/**
 * The conformance suite against the chain over two local tiers: an fs
 * backend as the primary and another as the fallback (with its outbox), a
 * circuit breaker and a writer id, as server/stack.ts chains GCS and local.
 * The outbox tests do not run: the chain's outbox is its fallback's, filled
 * by the chain itself when the primary is unavailable (rpc/gcs-outage.test.ts
 * and rpc/replication-schedules.test.ts take the primary away), while the
 * suite's `pending` option asks a tier to record an entry.
 */
import { createFsBackend } from "../../server/backends/fs/fs-backend.js";
import { createChainBackend } from "../../server/engine/chain-backend.js";
import { CircuitBreaker } from "../../server/engine/circuit-breaker.js";
import { makeTempDir } from "../kit/temp-dir.js";
import { describeBackendConformance } from "./backend-conformance.js";

describeBackendConformance("chain (local primary, local fallback)", async () => {
  const primaryDir = await makeTempDir("fs-conformance-primary-");
  const fallbackDir = await makeTempDir("fs-conformance-fallback-");
  const backend = createChainBackend({
    primary: await createFsBackend({ root: primaryDir.path }),
    fallback: await createFsBackend({ root: fallbackDir.path }),
    breaker: new CircuitBreaker({ failureThreshold: 3, resetTimeoutMs: 1000 }),
    fallbackEnabled: true,
    writer: "conformance-writer",
  });
  return {
    backend,
    cleanup: async () => {
      await primaryDir.cleanup();
      await fallbackDir.cleanup();
    },
  };
});
