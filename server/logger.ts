/**
 * The daemon's logger: pino, one JSON object per line on stdout. Fields named
 * like key material or credentials are censored wherever they appear up to
 * two levels deep (e.g. `{ config: { encryptionKey } }`,
 * `{ req: { headers: { authorization } } }`), so logging a Config or request
 * metadata cannot leak a key or a token.
 *
 * Lines are written synchronously (log-destination.ts): an exit never waits on
 * the reader of stdout, and a reader that has gone stops logging instead of
 * stopping the exit.
 */
import pino, { type DestinationStream, type Logger } from "pino";
import type { LogLevel } from "./config/load-config.js";
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
 * synchronously, see fdDestination); tests pass a stream to read what was written.
 */
export function createLogger(level: LogLevel, destination: DestinationStream = fdDestination(1)): Logger {
  return pino({ level, redact: { paths: REDACT_PATHS, censor: "[redacted]" } }, destination);
}
