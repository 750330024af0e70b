/**
 * Where the daemon's log lines go: a file descriptor (stdout), written
 * synchronously, so nothing is left to flush at exit and an exit never waits
 * on a reader.
 *
 * Why not pino's default destination (sonic-boom): at exit it flushes what is
 * buffered and retries a failed write forever (100 ms sleeps on the main
 * thread), so with stdout a pipe whose reader has gone (`filestorage serve |
 * head -1`, `npm start | tee` then Ctrl-C) the daemon never exited, not even
 * on a second signal, whose handler needs the blocked event loop.
 *
 * - EPIPE, EBADF or any other failure: the reader is gone, logging stops for
 *   good (said once on stderr, if stderr still works).
 * - EAGAIN (a non-blocking descriptor whose reader is slow): a line is retried
 *   for up to EAGAIN_WAIT_MS, then dropped; while lines are being dropped each
 *   gets one try, so a stalled reader cannot slow the daemon down. The next
 *   line that gets through is preceded by one saying how many were dropped.
 * A blocking descriptor whose reader stalls blocks like any program's stdout.
 */
import * as fs from "node:fs";

/** How long one log line may wait for a full non-blocking pipe before it is dropped. */
export const EAGAIN_WAIT_MS = 100;
const EAGAIN_STEP_MS = 5;

/** A pino destination (anything with `write(line)`) over a file descriptor. */
export interface FdDestination {
  write(line: string): void;
  /** True once a write failed for good: nothing more is written. */
  readonly stopped: boolean;
  /** Lines dropped because the reader was too slow, since the last notice. */
  readonly dropped: number;
}

/** Options of fdDestination. */
export interface FdDestinationOptions {
  /**
   * Rewrites each JSON line (the dropped-lines notice too) before it is
   * written, e.g. into a readable line; it runs in the writing thread, so it
   * must be synchronous and must not throw.
   */
  format?: (line: string) => string;
}

/** A destination writing each line to `fd` (default stdout) synchronously. */
export function fdDestination(fd = 1, opts: FdDestinationOptions = {}): FdDestination {
  const format = opts.format ?? ((line: string) => line);
  const pause = new Int32Array(new SharedArrayBuffer(4));
  let stopped = false;
  let dropped = 0;
  // A line cut off by a drop: the next write starts a new line first.
  let torn = false;

  /** Writes all of `bytes` or throws; on EAGAIN retries until `waitMs` are spent. */
  function writeAll(bytes: Buffer, waitMs: number): void {
    let at = 0;
    let waited = 0;
    while (at < bytes.length) {
      try {
        at += fs.writeSync(fd, bytes, at);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EAGAIN" || waited >= waitMs) {
          if (at > 0) torn = true;
          throw err;
        }
        Atomics.wait(pause, 0, 0, EAGAIN_STEP_MS);
        waited += EAGAIN_STEP_MS;
      }
    }
  }

  return {
    write(line: string) {
      if (stopped) return;
      let text = format(line);
      if (dropped > 0) {
        const notice = { level: 40, time: Date.now(), pid: process.pid, msg: `${dropped} log lines were dropped: stdout was not being read` };
        text = format(JSON.stringify(notice) + "\n") + text;
      }
      if (torn) text = "\n" + text;
      try {
        writeAll(Buffer.from(text), dropped > 0 ? 0 : EAGAIN_WAIT_MS);
        torn = false;
        dropped = 0;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "EAGAIN") {
          dropped++;
          return;
        }
        stopped = true;
        try {
          fs.writeSync(2, `filestorage: stdout failed (${(err as NodeJS.ErrnoException).code ?? err}): logging stopped\n`);
        } catch {
          // stderr is gone too.
        }
      }
    },
    get stopped() {
      return stopped;
    },
    get dropped() {
      return dropped;
    },
  };
}
