/** The local tier's platform failures, translated where they arise. */
import { Code, StorageError, unavailable } from "../../storage-error.js";

/** A StorageError for a file-system or SQLite failure while `what`; messages carry no paths. */
export function translate(err: unknown, what: string): StorageError {
  if (err instanceof StorageError) return err;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === "ENOSPC" || code === "EDQUOT" || code === "SQLITE_FULL") {
    return new StorageError(Code.ResourceExhausted, `the local disk is full (${what})`, { cause: err });
  }
  return unavailable(`local storage failed while ${what}`, err);
}

/** "12.5 MiB" */
export function mib(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}
