/** The conformance suite against the local backend alone: SQLite index, blob files and the outbox. */
import { createFsBackend } from "../../server/backends/fs/fs-backend.js";
import { makeTempDir } from "../kit/temp-dir.js";
import { describeBackendConformance } from "./backend-conformance.js";

describeBackendConformance(
  "local (fs)",
  async () => {
    const dir = await makeTempDir("fs-conformance-");
    return { backend: await createFsBackend({ root: dir.path }), cleanup: dir.cleanup };
  },
  { outbox: true },
);
