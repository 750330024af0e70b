/**
 * Assembles the daemon: engine, gRPC server (FileStorageService, health,
 * reflection), metrics endpoint, and graceful shutdown.
 *
 * Start-up order: the engine opens the local folder and takes its lock before
 * anything else; the server binds; only then are a crash's leftovers swept
 * (tmp/ files, unreferenced blobs), so a daemon that cannot start never
 * deletes a running daemon's files. Shutdown: health NOT_SERVING, drain calls,
 * cancel what is left, then the engine closes (its local tier waits for
 * cancelled uploads to remove their temp files).
 */
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";
import { HealthImplementation, protoPath as healthProtoPath } from "grpc-health-check";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import type { DescFile } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema, type DescriptorProto } from "@bufbuild/protobuf/wkt";
import * as fs from "node:fs";
import { FileStorageService, file_filestorage_v1_file_storage } from "../gen/filestorage/v1/file_storage_pb.js";
import { chunkFastPath, serviceDefinition, serviceImplementation } from "@filestorage/client/grpc-binding";
import { createAuthorizer, type Authorizer } from "./auth/authorizer.js";
import { insecureListenGaps } from "./auth/listen-policy.js";
import { readTokenFile, TokenFileError, type TokenFile } from "./auth/token-file.js";
import { listenPolicyInput, type Config } from "./config/load-config.js";
import type { FsFaults } from "./backends/fs/fs-backend.js";
import { buildStack, type Stack } from "./stack.js";
import { FolderInUseError } from "./backends/fs/folder-lock.js";
import { PRIVATE_FOLDER_MODE } from "./backends/fs/private-files.js";
import { createLogger, type Logger } from "./logger.js";
import { createMetrics, serveMetrics, type Metrics } from "./metrics/metrics.js";
import { createFileStorageHandlers } from "./rpc/file-storage-service.js";
import { startLine, type StartLine } from "./start-line.js";
import { VERSION } from "./version.js";

export interface RunningServer {
  /** host:port actually bound (port 0 resolved). */
  address: string;
  port: number;
  /** The storage stack: its engine, status, replication and sweeps. */
  stack: Stack;
  metrics: Metrics;
  metricsPort?: number;
  /** What the "FileStorage is serving" log line said: address, storage, mode, TLS, auth, encryption, cache, metrics, version. */
  startLine: StartLine;
  /**
   * Reads AUTH_TOKENS_FILE again (the daemon calls it on SIGHUP). A good file
   * takes effect for the calls that start afterwards; a bad one (or an empty
   * one) keeps the entries loaded before. Either way the outcome is logged,
   * with the reason and never a token.
   */
  reload(): ReloadResult;
  /** Health NOT_SERVING, drain in-flight calls for up to graceMs, then force. */
  shutdown(graceMs?: number): Promise<void>;
}

export type ReloadResult = { reloaded: true; entries: number } | { reloaded: false; reason: string };

const SERVICE_NAME = FileStorageService.typeName;

/** Options of startServer beyond the Config: what tests inject. */
export interface ServerOptions {
  logger?: Logger;
  /** Fault injection into the local tier's group commit (tests only). */
  fsFaults?: FsFaults;
}

export async function startServer(config: Config, opts: ServerOptions = {}): Promise<RunningServer> {
  const log = opts.logger ?? createLogger(config.logLevel);
  const metrics = createMetrics();
  // Loaded only when on: with tracing off the daemon never imports the SDK.
  const tracing = config.enableTracing
    ? // eslint-disable-next-line @typescript-eslint/no-require-imports
      (require("./tracing/tracing.js") as typeof import("./tracing/tracing.js")).startTracing({
        endpoint: config.tracingEndpoint,
        sampleRatio: config.tracingSampleRatio,
        version: VERSION,
      })
    : undefined;
  const stack = await buildStack(config, {
    onCompressionSaved: (n) => metrics.compressionSaved(n),
    onFallback: () => metrics.fallbackWrite(),
    onReplicated: (op) => metrics.replicated(op),
    onCacheHit: () => metrics.cacheHit(),
    onCacheMiss: () => metrics.cacheMiss(),
    onCacheRejectedFrame: () => metrics.cacheRejectedFrame(),
    onDiskCacheHit: () => metrics.diskCacheHit(),
    onDiskCacheMiss: () => metrics.diskCacheMiss(),
    onDiskCacheEviction: () => metrics.diskCacheEviction(),
    onIntegrityProblem: (tier, problem) => metrics.integrityProblem(tier, problem),
    onRepaired: (tier) => {
      metrics.repaired(tier);
      log.warn({ tier }, "a bad stored copy was replaced by a good one from another tier");
    },
    onScrubbed: (bytes) => metrics.scrubbed(bytes),
    onBreakerState: (state) => log.warn({ state }, "GCS circuit breaker changed state"),
    tier: metrics,
    tracer: tracing?.tracer,
    log,
  }, { fsFaults: opts.fsFaults }).catch(async (err: unknown) => {
    await tracing?.shutdown().catch(() => undefined);
    if (err instanceof FolderInUseError) throw new Error(`LOCAL_STORAGE_PATH ${err.folder} ${err.holder}`);
    throw err;
  });
  warnIfNotPrivate(config.localStoragePath, log);
  metrics.watchLocalTier(() => stack.parts.local.holdings());
  metrics.setProviders({
    cache: () => stack.status().cache,
    diskCache: () => stack.status().diskCache,
    replication: () => stack.status().pending,
    gcs: () => {
      const s = stack.status();
      return { available: s.gcsAvailable, breaker: s.breaker ?? "closed" };
    },
    disk: () => {
      // The same figure the local tier checks its reserve against (blob-files.ts).
      const s = fs.statfsSync(config.localStoragePath);
      return { freeBytes: s.bavail * s.bsize, sizeBytes: s.blocks * s.bsize, reserveBytes: config.localMinFreeBytes };
    },
  });

  const auth = createAuthorizer(config.authTokens);
  if (config.authTokens) warnLegacy(config.authTokens, log);
  const gaps = insecureListenGaps(listenPolicyInput(config));
  if (gaps.length > 0) {
    log.warn({ address: config.listenAddress, without: gaps }, `ALLOW_INSECURE=true: serving a non-loopback address without ${gaps.join(" and ")}`);
  }

  const server = new grpc.Server({
    // A unary Store carries up to MAX_UNARY_BYTES of data plus key and metadata;
    // stream chunks up to 4 MiB are accepted whatever the unary limit.
    "grpc.max_receive_message_length": Math.max(config.maxUnaryBytes, 4 * 1024 * 1024) + 1024 * 1024,
    // ListKeys pages stop before MAX_LIST_RESPONSE_BYTES, so they always fit.
    "grpc.max_send_message_length": Math.max(config.maxUnaryBytes, config.chunkSize, config.maxListResponseBytes) + 1024 * 1024,
  });
  server.addService(
    // RetrieveStream's data chunks are encoded without protobuf-es's general writer (see chunkFastPath).
    serviceDefinition(FileStorageService, { retrieveStream: { response: chunkFastPath(2, "payload", "chunk", { scratch: true }) } }),
    serviceImplementation(
      createFileStorageHandlers({
      engine: stack.engine,
      uploads: stack.uploads,
      status: () => stack.status(),
      verify: (opts) => stack.verify(opts),
      auth,
      observer: metrics,
      log,
      tracer: tracing?.tracer,
      maxUnaryBytes: config.maxUnaryBytes,
      chunkSize: config.chunkSize,
      version: VERSION,
      startedAt: Date.now(),
      flush: (flushOpts) => stack.flush(flushOpts),
    }),
    ),
  );

  const health = new HealthImplementation({ "": "NOT_SERVING", [SERVICE_NAME]: "NOT_SERVING" });
  health.addToServer(server);
  new ReflectionService(reflectionPackage()).addToServer(server);

  const credentials = serverCredentials(config);
  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(config.listenAddress, credentials, (err, p) => (err ? reject(err) : resolve(p))),
    );
  } catch (err) {
    await stack.close();
    throw new Error(`cannot listen on LISTEN_ADDRESS=${config.listenAddress}: ${(err as Error).message}`);
  }
  widenReceiveWindows(server, log);
  const host = config.listenAddress.slice(0, config.listenAddress.lastIndexOf(":"));
  try {
    const removed = await stack.parts.local.sweepLeftovers();
    if (removed.tmpFiles + removed.blobs + removed.uploadFiles > 0) log.info(removed, "removed what an earlier run left in the storage folder");
  } catch (err) {
    server.forceShutdown();
    await stack.close();
    throw new Error(`cannot clean up LOCAL_STORAGE_PATH ${config.localStoragePath}: ${(err as Error).message}`);
  }

  let shuttingDown = false;
  const setHealth = (serving: boolean) => {
    const status = serving && !shuttingDown ? "SERVING" : "NOT_SERVING";
    health.setStatus("", status);
    health.setStatus(SERVICE_NAME, status);
  };
  const checkHealth = async () => {
    try {
      await stack.probe(AbortSignal.timeout(config.timeoutSeconds * 1000));
      setHealth(true);
    } catch (err) {
      log.warn({ err }, "no tier can take a write: health is NOT_SERVING");
      setHealth(false);
    }
  };
  await checkHealth();
  const healthTimer = setInterval(() => void checkHealth(), config.healthCheckSeconds * 1000);
  healthTimer.unref();

  const metricsServer = config.metricsPort > 0 ? await serveMetrics(metrics, config.metricsHost, config.metricsPort) : undefined;
  const started = startLine(config, { address: `${host}:${port}`, metricsPort: metricsServer?.port, status: stack.status(), version: VERSION });
  log.info({ ...started }, "FileStorage is serving");

  return {
    address: `${host}:${port}`,
    port,
    stack,
    metrics,
    metricsPort: metricsServer?.port,
    startLine: started,
    reload: () => reloadTokens(config, auth, log),
    async shutdown(graceMs = config.shutdownGraceSeconds * 1000) {
      if (shuttingDown) return;
      shuttingDown = true;
      clearInterval(healthTimer);
      setHealth(false);
      // tryShutdown waits for open calls and can hang on streams: race a timer.
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          log.warn({ graceMs }, "grace period over: cancelling the calls still open");
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
      await metricsServer?.close();
      await stack.close();
      // The spans still waiting are sent (or dropped after the exporter's timeout).
      await tracing?.shutdown().catch((err: unknown) => log.warn({ err }, "could not send the last spans"));
      log.info({}, "FileStorage stopped");
    },
  };
}

/**
 * TLS from TLS_CERT_FILE + TLS_KEY_FILE; with TLS_CLIENT_CA_FILE, grpc-js
 * requests a client certificate and refuses the handshake unless the client
 * CA signed it. Plaintext otherwise.
 */
function serverCredentials(config: Config): grpc.ServerCredentials {
  if (!config.tlsCertFile || !config.tlsKeyFile) return grpc.ServerCredentials.createInsecure();
  const clientCa = config.tlsClientCaFile ? fs.readFileSync(config.tlsClientCaFile) : null;
  return grpc.ServerCredentials.createSsl(
    clientCa,
    [{ cert_chain: fs.readFileSync(config.tlsCertFile), private_key: fs.readFileSync(config.tlsKeyFile) }],
    clientCa !== null,
  );
}

function reloadTokens(config: Config, auth: Authorizer, log: Logger): ReloadResult {
  if (!config.authTokensFile) {
    const reason = "AUTH_TOKENS_FILE is not set: there is nothing to reload (authentication stays off)";
    log.warn({ reason }, "tokens not reloaded");
    return { reloaded: false, reason };
  }
  let file: TokenFile;
  try {
    file = readTokenFile(config.authTokensFile, { clientCertificates: Boolean(config.tlsClientCaFile) });
  } catch (err) {
    if (!(err instanceof TokenFileError)) throw err;
    const reason = `invalid AUTH_TOKENS_FILE=${JSON.stringify(config.authTokensFile)}: ${err.message}`;
    log.error({ reason }, "tokens not reloaded: keeping the ones loaded before");
    return { reloaded: false, reason };
  }
  auth.replace(file);
  warnLegacy(file, log);
  log.info({ entries: file.entries.length }, "AUTH_TOKENS_FILE reloaded");
  return { reloaded: true, entries: file.entries.length };
}

function warnLegacy(file: TokenFile, log: Logger): void {
  if (!file.legacyForm) return;
  log.warn(
    { entries: file.entries.length },
    'AUTH_TOKENS_FILE uses the older {"token": [prefixes]} form: its tokens get every right but admin and are named ' +
      'legacy-1, legacy-2, ... in messages; move to the list form with "sha256" digests, so the file holds no token',
  );
}

/** Logs a warning when the storage folder is open to other users (its mode could not be narrowed: not ours). */
function warnIfNotPrivate(folder: string, log: Logger): void {
  try {
    const mode = fs.statSync(folder).mode & 0o777;
    if ((mode & ~PRIVATE_FOLDER_MODE) !== 0) {
      log.warn({ mode: mode.toString(8) }, "LOCAL_STORAGE_PATH is not owned by this user and stays open to others; what is inside is private (0700 folders, 0600 files)");
    }
  } catch {
    // The engine has just opened it; a failure here will show on the first request.
  }
}

/** protobufjs names a map entry after its field ("Statuses"); protoc and Go want "StatusesEntry", fully qualified. */
function fixMapEntries(bin: Uint8Array): Uint8Array {
  const file = fromBinary(FileDescriptorProtoSchema, bin);
  const walk = (msg: DescriptorProto, scope: string) => {
    const fqn = `${scope}.${msg.name}`;
    for (const nested of msg.nestedType) {
      if (!nested.options?.mapEntry) continue;
      const field = msg.field.find((f) => f.typeName === nested.name || f.typeName === `${fqn}.${nested.name}`);
      if (!field) continue;
      nested.name = field.name.replace(/(?:^|_)([a-z0-9])/g, (_m, c: string) => c.toUpperCase()) + "Entry";
      field.typeName = `${fqn}.${nested.name}`;
    }
    msg.nestedType.forEach((n) => walk(n, fqn));
  };
  file.messageType.forEach((m) => walk(m, file.package ? `.${file.package}` : ""));
  return toBinary(FileDescriptorProtoSchema, file);
}

/**
 * The descriptors the reflection service serves: protobuf-es's exact ones for
 * our file and its imports (Struct, Timestamp), and health's from
 * proto-loader with its map entries repaired (Go clients such as grpcurl
 * reject protobufjs's naming of them).
 */
function reflectionPackage(): protoLoader.PackageDefinition {
  const files: DescFile[] = [];
  const visit = (f: DescFile) => {
    if (files.includes(f)) return;
    f.dependencies.forEach(visit);
    files.push(f);
  };
  visit(file_filestorage_v1_file_storage);
  const ours = files.map((f) => Buffer.from(toBinary(FileDescriptorProtoSchema, f.proto)));
  const health = Object.values(protoLoader.loadSync(healthProtoPath))
    .flatMap((d) => ("fileDescriptorProtos" in d ? (d.fileDescriptorProtos as Buffer[]) : []))
    .map((b) => Buffer.from(fixMapEntries(b)));
  return { "filestorage.v1": { fileDescriptorProtos: [...ours, ...health] } } as unknown as protoLoader.PackageDefinition;
}


/** HTTP/2 receive window the daemon grants each connection and stream.
 * Measured on 512 MiB uploads: 4, 8 and 16 MiB all reach ~170-190 MiB/s
 * (64 KiB: ~100-110); 4 MiB keeps the daemon's peak RSS lowest. */
const RECEIVE_WINDOW_BYTES = 4 * 1024 * 1024;

/**
 * Widens the HTTP/2 receive windows of every connection from the default
 * 64 KiB: with the default, an upload stalls every 64 KiB waiting for a
 * WINDOW_UPDATE round trip. grpc-js has a client option for this but none for
 * servers, so this reaches its http2 servers (an internal field) once bound;
 * if a grpc-js version lacks it, uploads are just slower (logged, not fatal).
 * Memory stays bounded: grpc-js pauses a stream whose messages are not read.
 */
function widenReceiveWindows(server: grpc.Server, log: Logger): void {
  const internal = (server as unknown as { http2Servers?: Map<import("node:events").EventEmitter, unknown> }).http2Servers;
  if (!(internal instanceof Map)) {
    log.warn({}, "cannot widen HTTP/2 receive windows with this grpc-js version: uploads use 64 KiB windows");
    return;
  }
  for (const http2Server of internal.keys()) {
    http2Server.on("session", (session: import("node:http2").ServerHttp2Session) => {
      session.settings({ initialWindowSize: RECEIVE_WINDOW_BYTES });
      session.setLocalWindowSize(RECEIVE_WINDOW_BYTES);
    });
  }
}
