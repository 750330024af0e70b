/**
 * Files on disk are private to the daemon's user: folders 0700, files 0600.
 * The storage folder holds object bytes, metadata and (in the index) whole
 * small objects, so no other local user may list or read any of it.
 */
import * as fs from "node:fs";
import * as path from "node:path";

export const PRIVATE_FOLDER_MODE = 0o700;
export const PRIVATE_FILE_MODE = 0o600;

/**
 * Creates `dir` when missing (its parents with the default mode) with mode
 * 0700, and narrows an existing folder to 0700. A folder this user does not
 * own (EPERM) keeps its mode: what is inside is private all the same.
 * Returns false in that case.
 */
export function makePrivateFolder(dir: string): boolean {
  fs.mkdirSync(path.dirname(dir), { recursive: true });
  try {
    fs.mkdirSync(dir, { mode: PRIVATE_FOLDER_MODE });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
  }
  try {
    fs.chmodSync(dir, PRIVATE_FOLDER_MODE);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EPERM") return false;
    throw err;
  }
}

/**
 * Narrows `file` to mode 0600; with `create`, creates it empty first when
 * missing (so a program that opens it next, such as SQLite, finds it private
 * from its first byte). A missing file without `create` is left missing.
 */
export function makePrivateFile(file: string, opts: { create?: boolean } = {}): void {
  if (opts.create) fs.closeSync(fs.openSync(file, "a", PRIVATE_FILE_MODE));
  try {
    fs.chmodSync(file, PRIVATE_FILE_MODE);
  } catch (err) {
    if (opts.create || (err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
}
