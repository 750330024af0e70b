/**
 * What a process holds, read from Linux /proc: resident memory now (VmRSS)
 * and at its peak (VmHWM), open file descriptors (entries of /proc/<pid>/fd),
 * once or sampled on a timer.
 */
import * as fs from "node:fs";

export interface Usage {
  /** Milliseconds since the sampler started (0 for a single reading). */
  atMs: number;
  rssBytes: number;
  fds: number;
}

/** A "Name:  N kB" field of /proc/<pid>/status in bytes; throws when the process is gone. */
function statusKb(pid: number, field: "VmRSS" | "VmHWM"): number {
  const kb = new RegExp(`${field}:\\s+(\\d+) kB`).exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
  return kb ? Number(kb[1]) * 1024 : NaN;
}

/** The process's usage now; throws when the process is gone. */
export function usageOf(pid: number): Usage {
  return { atMs: 0, rssBytes: statusKb(pid, "VmRSS"), fds: fdCount(pid) };
}

/** Open file descriptors of the process now; throws when the process is gone. */
export function fdCount(pid: number): number {
  return fs.readdirSync(`/proc/${pid}/fd`).length;
}

/** Peak resident memory (VmHWM) since start or the last resetPeakRss(), bytes; NaN once the process is gone. */
export function peakRssOf(pid: number): number {
  try {
    return statusKb(pid, "VmHWM");
  } catch {
    return NaN;
  }
}

/** Restarts the process's peak (Linux clear_refs "5"); false when the kernel does not allow it. */
export function resetPeakRss(pid: number): boolean {
  try {
    fs.writeFileSync(`/proc/${pid}/clear_refs`, "5");
    return true;
  } catch {
    return false;
  }
}

export interface Sampler {
  /** Stops sampling; returns every sample taken (one at the start, then one per interval). */
  stop(): Usage[];
}

/** Samples `pid` now and every `everyMs` until stop(). */
export function sampleUsage(pid: number, everyMs = 1000): Sampler {
  const started = Date.now();
  const samples: Usage[] = [];
  const take = () => {
    try {
      samples.push({ ...usageOf(pid), atMs: Date.now() - started });
    } catch {
      // The process ended; the caller finds out on its own.
    }
  };
  take();
  const timer = setInterval(take, everyMs);
  return {
    stop() {
      clearInterval(timer);
      take();
      return samples;
    },
  };
}
