/**
 * Temporary folders for tests and benchmarks: a fresh folder and a cleanup
 * that removes it with everything inside. Each is registered with
 * owned-resources.ts until removed, so an interrupted benchmark removes it too.
 */
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { folderRemoving, ownFolder } from "./owned-resources.js";

export interface TempDir {
  path: string;
  cleanup(): Promise<void>;
}

/** Creates a new empty folder named after `label` under `parent` (default the system temp folder). */
export async function makeTempDir(label = "filestorage-", parent = os.tmpdir()): Promise<TempDir> {
  const dir = await fs.mkdtemp(path.join(parent, label));
  const forget = ownFolder(dir);
  return {
    path: dir,
    async cleanup() {
      await folderRemoving(dir);
      await fs.rm(dir, { recursive: true, force: true });
      forget();
    },
  };
}
