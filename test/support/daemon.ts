/**
 * A real daemon for RPC tests: the gRPC server in this process on
 * 127.0.0.1:0, over a fresh temp storage folder, configured like the daemon
 * (env-style settings through loadConfig, so defaults and validation match).
 */
import { loadConfig } from "../../server/config/load-config.js";
import { createLogger, type Logger } from "../../server/logger.js";
import { startServer, type RunningServer, type ServerOptions } from "../../server/server.js";
import { makeTempDir } from "../kit/temp-dir.js";

export interface TestDaemon {
  address: string;
  storagePath: string;
  server: RunningServer;
  stop(): Promise<void>;
}

/** Starts a daemon with env-style `overrides`; `opts.logger` replaces the default (silent) logger, e.g. to read the log. */
export async function startDaemon(overrides: Record<string, string> = {}, opts: Omit<ServerOptions, "logger"> & { logger?: Logger } = {}): Promise<TestDaemon> {
  const temp = overrides.LOCAL_STORAGE_PATH === undefined ? await makeTempDir("fs-daemon-") : undefined;
  const storagePath = overrides.LOCAL_STORAGE_PATH ?? temp!.path;
  const config = loadConfig({
    env: { LISTEN_ADDRESS: "127.0.0.1:0", METRICS_PORT: "0", LOG_LEVEL: "fatal", ...overrides, LOCAL_STORAGE_PATH: storagePath },
  });
  const server = await startServer(config, { ...opts, logger: opts.logger ?? createLogger(config.logLevel) });
  return {
    address: server.address,
    storagePath,
    server,
    async stop() {
      await server.shutdown(2000);
      await temp?.cleanup();
    },
  };
}
