/**
 * The descendants of a process, read from Linux /proc, each with its start
 * time so that a later check is not fooled by a reused pid.
 */
import * as fs from "node:fs";

export interface ProcessInfo {
  pid: number;
  ppid: number;
  /** Clock ticks after boot (field 22 of /proc/<pid>/stat). */
  startTime: string;
  cmdline: string;
}

/** /proc/<pid>/stat and cmdline, or undefined once it is gone. */
export function processInfo(pid: number): ProcessInfo | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) is in parentheses and may hold spaces: read after the last ")".
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (fields[0] === "Z") return undefined;
    const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ").trim();
    return { pid, ppid: Number(fields[1]), startTime: fields[19]!, cmdline };
  } catch {
    return undefined;
  }
}

/** Every living descendant of `root` (children, their children, ...). */
export function descendants(root: number): ProcessInfo[] {
  const all = fs
    .readdirSync("/proc")
    .filter((name) => /^\d+$/.test(name))
    .map((name) => processInfo(Number(name)))
    .filter((p): p is ProcessInfo => p !== undefined);
  const found: ProcessInfo[] = [];
  const parents = new Set([root]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const p of all) {
      if (parents.has(p.ppid) && !parents.has(p.pid)) {
        parents.add(p.pid);
        found.push(p);
        grew = true;
      }
    }
  }
  return found;
}

/** True while the process `p` describes still runs (same pid, same start time, not a zombie). */
export function stillRunning(p: ProcessInfo): boolean {
  return processInfo(p.pid)?.startTime === p.startTime;
}
