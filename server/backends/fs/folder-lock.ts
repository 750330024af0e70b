/**
 * One process per storage folder: an exclusive lock on `<root>/lock` that the
 * kernel releases when the process dies, so a restart right after kill -9
 * takes it at once.
 *
 * The lock file is a tiny SQLite database opened in EXCLUSIVE locking mode
 * with no busy timeout: its first write transaction takes SQLite's exclusive
 * (fcntl) lock and keeps it until the connection closes. Node has no flock;
 * SQLite is already here and handles the traps of fcntl locks for its own
 * connections. The holder writes its pid into the database header
 * (user_version, bytes 60..63), which a refused opener reads with a plain read:
 * SQLite cannot read a database another connection holds exclusively.
 *
 * fcntl locks belong to a process, and closing ANY descriptor of the file in
 * that process drops them. So this process never opens the lock file of a
 * folder it holds: a second lock of the same folder in this process is refused
 * from a table of held folders before the file is touched. index.sqlite is not
 * locked: operators and tests may read it while the daemon runs.
 *
 * Limits: fcntl locks protect only where the filesystem honours them (local
 * filesystems do; some network filesystems do not), and only against other
 * FileStorage processes: nothing stops a person from editing the folder.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import Database from "better-sqlite3";
import { Code, StorageError } from "../../storage-error.js";
import { makePrivateFile } from "./private-files.js";

/** The name of the lock file inside a storage folder. */
export const LOCK_FILE = "lock";

/** A held folder lock. */
export interface FolderLock {
  /** Releases the lock (idempotent). */
  release(): void;
}

/** Another process (or another backend of this process) holds the folder. */
export class FolderInUseError extends StorageError {
  /** Who holds it: "is in use by another FileStorage process (pid N)" or "is already open in this process (pid N)". */
  readonly holder: string;

  constructor(
    readonly folder: string,
    /** The holder's pid when it could be read. */
    readonly pid: number | undefined,
    sameProcess: boolean,
  ) {
    const holder = sameProcess
      ? `is already open in this process (pid ${process.pid})`
      : `is in use by another FileStorage process${pid ? ` (pid ${pid})` : ""}`;
    super(Code.FailedPrecondition, `the storage folder ${folder} ${holder}`);
    this.holder = holder;
  }
}

/** Folders this process holds, by the folder's device and inode (a path may have many spellings). */
const held = new Set<string>();

/**
 * Takes the lock of the existing folder `root`, creating its lock file with
 * mode 0600. Throws FolderInUseError when another process or another backend
 * of this process holds it; other failures are thrown as they come.
 */
export function lockFolder(root: string): FolderLock {
  const st = fs.statSync(root);
  const id = `${st.dev}:${st.ino}`;
  if (held.has(id)) throw new FolderInUseError(root, process.pid, true);
  const file = path.join(root, LOCK_FILE);
  // Private before SQLite opens it (SQLite gives its journal the same mode).
  makePrivateFile(file, { create: true });
  const db = new Database(file, { timeout: 0 });
  try {
    db.pragma("locking_mode = EXCLUSIVE");
    // A write transaction: takes the exclusive lock, kept until close.
    db.pragma(`user_version = ${process.pid}`);
  } catch (err) {
    db.close();
    if ((err as { code?: string }).code === "SQLITE_BUSY") throw new FolderInUseError(root, holderPid(file), false);
    throw err;
  }
  held.add(id);
  let open = true;
  return {
    release() {
      if (!open) return;
      open = false;
      db.close();
      held.delete(id);
    },
  };
}

/** The pid the holder wrote into the header, or undefined. Safe: this process holds no lock on `file`. */
function holderPid(file: string): number | undefined {
  try {
    const header = Buffer.alloc(4);
    const fd = fs.openSync(file, "r");
    try {
      if (fs.readSync(fd, header, 0, 4, 60) !== 4) return undefined;
    } finally {
      fs.closeSync(fd);
    }
    const pid = header.readUInt32BE(0);
    return pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}
