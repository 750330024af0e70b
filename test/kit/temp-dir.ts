/**
 * Temporary folders for tests and benchmarks: a fresh folder and a cleanup
 * that removes it with everything inside.
 */
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";

export interface TempDir {
  path: string;
  cleanup(): Promise<void>;
}

/** Creates a new empty folder named after `label` under `parent` (default the system temp folder). */
export async function makeTempDir(label = "filestorage-", parent = os.tmpdir()): Promise<TempDir> {
  const dir = await fs.mkdtemp(path.join(parent, label));
  return { path: dir, cleanup: () => fs.rm(dir, { recursive: true, force: true }) };
}
