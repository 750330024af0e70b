/** The conformance suite against the test's own memory backend (test/support/memory-backend.ts), which the layer combinations run over. */
import { createMemoryBackend } from "../support/memory-backend.js";
import { describeBackendConformance } from "./backend-conformance.js";

describeBackendConformance("memory", async () => ({ backend: createMemoryBackend(), cleanup: async () => undefined }));
