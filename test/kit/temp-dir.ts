/**
 * Temporary folders for tests: a fresh folder under os.tmpdir() and a
 * cleanup that removes it with everything inside.
 */
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";

export interface TempDir {
  path: string;
  cleanup(): Promise<void>;
}

/** Creates a new empty folder named after `label`. */
export async function makeTempDir(label = "filestorage-"): Promise<TempDir> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), label));
  return { path: dir, cleanup: () => fs.rm(dir, { recursive: true, force: true }) };
}
