/**
 * What this process started and must not leave behind when it is
 * interrupted: child processes (daemons, emulators, Redis, a relaunched
 * benchmark) and temporary folders. The kit's helpers register what they make
 * (spawnServerProcess, startFakeGcs, startRedis, makeTempDir) and forget it
 * once it is stopped or removed; anything else (a peer server a bench drives)
 * registers a cleanup of its own. A benchmark's signal handler
 * (bench/support/bench-run.ts) calls releaseAll() to stop and remove the rest.
 */
import type { ChildProcess } from "node:child_process";
import * as fs from "node:fs/promises";

const children = new Set<ChildProcess>();
const folders = new Set<string>();
const removalListeners: ((folder: string) => Promise<void>)[] = [];
const cleanups: (() => Promise<void> | void)[] = [];

const running = (child: ChildProcess) => child.exitCode === null && child.signalCode === null;

/** Registers `child` until it exits. */
export function ownChild(child: ChildProcess): void {
  if (!running(child)) return;
  children.add(child);
  child.once("exit", () => children.delete(child));
}

/** Registers `folder`; the returned function forgets it (after it was removed). */
export function ownFolder(folder: string): () => void {
  folders.add(folder);
  return () => folders.delete(folder);
}

/** Registers `cleanup` (run by releaseAll, newest first, before children are stopped); the returned function forgets it. */
export function ownCleanup(cleanup: () => Promise<void> | void): () => void {
  cleanups.push(cleanup);
  return () => {
    const i = cleanups.indexOf(cleanup);
    if (i >= 0) cleanups.splice(i, 1);
  };
}

/** The temp folders registered and not removed yet. */
export function ownedFolders(): string[] {
  return [...folders];
}

/** `listener` runs (awaited) before each registered folder is removed, e.g. to measure it one last time. */
export function beforeFolderRemoved(listener: (folder: string) => Promise<void>): void {
  removalListeners.push(listener);
}

/** Tells the listeners that `folder` is about to be removed; their failures are ignored. */
export async function folderRemoving(folder: string): Promise<void> {
  for (const listener of removalListeners) await listener(folder).catch(() => undefined);
}

/**
 * Runs the registered cleanups (newest first; a failure is reported and the
 * rest still run), stops every registered child (SIGTERM; SIGKILL for those
 * still running after `graceMs`), waits until all have exited, then removes
 * every registered folder. Resolves when nothing is left.
 */
export async function releaseAll(graceMs = 3000): Promise<void> {
  for (const cleanup of cleanups.splice(0).reverse()) {
    try {
      await cleanup();
    } catch (err) {
      console.error(`cleanup failed: ${(err as Error).message}`);
    }
  }
  const live = [...children].filter(running);
  const exits = live.map((child) => new Promise<void>((resolve) => (running(child) ? child.once("exit", () => resolve()) : resolve())));
  for (const child of live) child.kill("SIGTERM");
  const timer = setTimeout(() => live.filter(running).forEach((child) => child.kill("SIGKILL")), graceMs);
  await Promise.all(exits);
  clearTimeout(timer);
  for (const folder of [...folders]) {
    await folderRemoving(folder);
    // The owner may be removing it at the same moment; what is left shows in the next look.
    await fs.rm(folder, { recursive: true, force: true }).catch(() => undefined);
    folders.delete(folder);
  }
}
