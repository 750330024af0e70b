/**
 * The `filestorage` command: `serve` runs the daemon; the other commands
 * (put, get, ls, rm, stat, stats, verify) talk to one over gRPC. The daemon stops on
 * SIGTERM/SIGINT and reloads AUTH_TOKENS_FILE on SIGHUP.
 */
import * as fs from "node:fs";
import { Command, CommanderError } from "commander";
import { ConfigError, loadConfig, settings } from "../config/load-config.js";
import { createLogger, isPretty } from "../logger.js";
import { startServer, type RunningServer } from "../server.js";
import { startSentence } from "../start-line.js";
import { VERSION } from "../version.js";
import { EXIT_USAGE } from "./cli-errors.js";
import { registerClientCommands } from "./client-commands.js";
import { settingsMarkdown } from "../config/settings-table.js";

export function buildProgram(): Command {
  const program = new Command("filestorage")
    // Before any subcommand is added, so every one inherits both: usage errors
    // read like every other error and exit 2 (run() below), not commander's 1.
    .exitOverride()
    .configureOutput({ outputError: (text, write) => write(`filestorage: INVALID_ARGUMENT: ${text.replace(/^error: /, "")}`) })
    .version(VERSION)
    .description("FileStorage: a gRPC storage daemon");
  const serve = program
    .command("serve")
    .description("run the daemon (settings: flags beat environment beat config file beat defaults)")
    .option("--config <file>", "JSON config file (snake_case keys, e.g. max_retries)");
  for (const s of settings) {
    if (!s.flag || s.flag === "--config" || s.flag === "--config-file") continue;
    serve.option(`${s.flag} <value>`, `${s.description} [${s.env}${s.default !== undefined ? `, default ${s.default}` : ""}]`);
  }
  serve.action(async (flags: Record<string, unknown>) => {
    await runDaemon(flags);
  });
  program
    .command("settings")
    .description("print every setting (environment name, config-file key, flag, default, what is allowed) as the README's table")
    .action(() => {
      process.stdout.write(settingsMarkdown());
    });
  registerClientCommands(program);
  return program;
}

/** Seconds a shutdown may take after SHUTDOWN_GRACE_SECONDS (the engine closing, uploads removing their temp files) before the process exits anyway. */
const CLOSE_SECONDS = 15;

/** Writes a line to stderr, whether or not anyone still reads it. */
function say(line: string): void {
  try {
    fs.writeSync(2, line + "\n");
  } catch {
    // stderr is gone.
  }
}

async function runDaemon(flags: Record<string, unknown>): Promise<void> {
  let config;
  try {
    config = loadConfig({ env: process.env, flags, configFile: flags.config as string | undefined });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`filestorage: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const log = createLogger(config.logLevel, undefined, config.logFormat);
  let server: RunningServer | undefined;
  // Registered before start-up: Node's default for SIGHUP is to exit.
  process.on("SIGHUP", () => {
    if (server) server.reload();
    else log.warn({ signal: "SIGHUP" }, "still starting: AUTH_TOKENS_FILE was read at start-up; send SIGHUP again once serving");
  });
  // Registered before start-up too: a signal that arrives while starting (or
  // between the "serving" line and the end of start-up) stops the daemon as
  // soon as it serves; a second one exits at once.
  let requested: string | undefined;
  const onSignal = (signal: string) => {
    if (server) return stop(server, signal);
    if (requested) process.exit(1);
    requested = signal;
  };
  process.on("SIGTERM", () => onSignal("SIGTERM"));
  process.on("SIGINT", () => onSignal("SIGINT"));
  try {
    server = await startServer(config, { logger: log });
  } catch (err) {
    process.stderr.write(`filestorage: cannot start: ${(err as Error).message}\n`);
    process.exit(1);
  }
  // A person at a terminal gets the start line as a sentence, unless readable logs already show it there.
  if (process.stderr.isTTY && !(isPretty(config.logFormat) && process.stdout.isTTY)) say(startSentence(server.startLine));
  let stopping = false;
  const stop = (running: RunningServer, signal: string) => {
    if (stopping) {
      // A second signal: do not wait for the grace period.
      process.exit(1);
    }
    stopping = true;
    log.info({ signal }, "shutting down");
    // Whatever hangs in the shutdown, the process ends: the grace period, then
    // the time the engine may take to close, then out.
    const deadlineSeconds = config.shutdownGraceSeconds + CLOSE_SECONDS;
    setTimeout(() => {
      say(`filestorage: shutdown did not finish within ${deadlineSeconds} s: exiting`);
      process.exit(1);
    }, deadlineSeconds * 1000);
    running.shutdown().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  if (requested) stop(server, requested);
}

/**
 * Runs the `filestorage` command line. A usage error (unknown command or
 * option, missing argument, bad option value) has been printed by commander
 * as `filestorage: INVALID_ARGUMENT: ...` and exits 2; --help and --version
 * exit 0; anything else unexpected is one line and exit 1.
 */
export async function run(argv: string[]): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode === 0 ? 0 : EXIT_USAGE;
      return;
    }
    process.stderr.write(`filestorage: UNKNOWN: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  }
}

if (require.main === module) void run(process.argv);
