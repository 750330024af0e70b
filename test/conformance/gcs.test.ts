/** The conformance suite against the GCS backend on the real fake-gcs-server emulator. */
import { createGcsBackend } from "../../server/backends/gcs/gcs-backend.js";
import { startFakeGcs, type FakeGcs } from "../kit/fake-gcs.js";
import { describeBackendConformance } from "./backend-conformance.js";

let gcs: FakeGcs;
beforeAll(async () => {
  gcs = await startFakeGcs();
});
afterAll(async () => {
  await gcs?.stop();
});

// One bucket for the whole suite: each conformance test works under its own prefix.
const bucket = `fs-conformance-${process.pid}`;
describeBackendConformance("gcs (emulator)", async () => ({
  backend: await createGcsBackend({ bucket, projectId: "test", apiEndpoint: gcs.url, maxRetries: 2, timeoutMs: 5000 }),
  cleanup: async () => undefined,
}));
