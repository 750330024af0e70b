/**
 * The daemon's logger: pino, one JSON object per line on stdout (LOG_FORMAT
 * json), or one readable line per entry (pretty: pino-pretty turns each JSON
 * line into "[time] LEVEL: message" plus its fields). Fields named
 * like key material or credentials are censored wherever they appear up to
 * two levels deep (e.g. `{ config: { encryptionKey } }`,
 * `{ req: { headers: { authorization } } }`), so logging a Config or request
 * metadata cannot leak a key or a token.
 *
 * Lines are written synchronously (log-destination.ts): an exit never waits on
 * the reader of stdout, and a reader that has gone stops logging instead of
 * stopping the exit.
 */
import * as tty from "node:tty";
import pino, { type DestinationStream, type Logger } from "pino";
import type { LogFormat, LogLevel } from "./config/load-config.js";
import { fdDestination } from "./log-destination.js";

export type { Logger };

const SECRET_FIELDS = [
  "encryptionKey",
  "encryptionPreviousKeys",
  "authTokens",
  "authorization",
  "token",
  "cacheUrl", // may carry a redis password
  "password",
];

/** Each field at the top level, one level down and two levels down. */
const REDACT_PATHS = SECRET_FIELDS.flatMap((f) => [f, `*.${f}`, `*.*.${f}`]);

/**
 * Creates the logger at `level`. `destination` defaults to stdout (written
 * synchronously, see fdDestination) in `format` (default json); tests pass a
 * stream to read what was written.
 */
export function createLogger(level: LogLevel, destination?: DestinationStream, format: LogFormat = "json"): Logger {
  return pino({ level, redact: { paths: REDACT_PATHS, censor: "[redacted]" } }, destination ?? stdoutDestination(format));
}

/** Whether `format` means readable lines on stdout now ("auto": when stdout is a terminal). */
export function isPretty(format: LogFormat): boolean {
  return format === "pretty" || (format === "auto" && tty.isatty(1));
}

/**
 * Stdout in `format`. Pretty lines are made in the same synchronous write as
 * JSON ones (pino-pretty's prettyFactory, not its worker-thread transport),
 * so a reader that has gone or stalls is handled exactly as for JSON
 * (log-destination.ts). pino-pretty is loaded only for pretty logs.
 */
function stdoutDestination(format: LogFormat): DestinationStream {
  if (!isPretty(format)) return fdDestination(1);
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { prettyFactory } = require("pino-pretty") as typeof import("pino-pretty");
  const pretty = prettyFactory({ colorize: tty.isatty(1), translateTime: "SYS:standard", ignore: "pid,hostname" });
  return fdDestination(1, { format: (line) => pretty(line) });
}
