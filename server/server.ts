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
import { serviceDefinition } from "../client/src/grpc-binding.js";
import { createAuthorizer } from "./auth.js";
import { FolderInUseError } from "./backends/folder-lock.js";
import { PRIVATE_FOLDER_MODE } from "./backends/private-files.js";
import type { Config } from "./config.js";
import { createEngine, type Engine } from "./engine/engine.js";
import { createLogger, type Logger } from "./logger.js";
import { createMetrics, serveMetrics, type Metrics } from "./metrics.js";
import { createFileStorageHandlers } from "./rpc/file-storage-service.js";
import { VERSION } from "./version.js";

export interface RunningServer {
  /** host:port actually bound (port 0 resolved). */
  address: string;
  port: number;
  engine: Engine;
  metrics: Metrics;
  metricsPort?: number;
  /** Health NOT_SERVING, drain in-flight calls for up to graceMs, then force. */
  shutdown(graceMs?: number): Promise<void>;
}

const SERVICE_NAME = FileStorageService.typeName;
const HEALTH_INTERVAL_MS = 5000;

export async function startServer(config: Config, opts: { logger?: Logger } = {}): Promise<RunningServer> {
  const log = opts.logger ?? createLogger(config.logLevel);
  const metrics = createMetrics();
  const engine = await createEngine(config, {
    onCompressionSaved: (n) => metrics.compressionSaved(n),
    onFallback: () => metrics.fallbackWrite(),
    onReplicated: (op) => metrics.replicated(op),
    onCacheHit: () => metrics.cacheHit(),
    onCacheMiss: () => metrics.cacheMiss(),
    onBreakerState: (state) => log.warn({ state }, "GCS circuit breaker changed state"),
    log,
  }).catch((err: unknown) => {
    if (err instanceof FolderInUseError) throw new Error(`LOCAL_STORAGE_PATH ${err.folder} ${err.holder}`);
    throw err;
  });
  warnIfNotPrivate(config.localStoragePath, log);
  metrics.setProviders({
    cache: () => engine.status().cache,
    replication: () => engine.status().pending,
    gcs: () => {
      const s = engine.status();
      return { available: s.gcsAvailable, breaker: s.breaker ?? "closed" };
    },
  });

  const server = new grpc.Server({
    // A unary Store carries up to MAX_UNARY_BYTES of data plus key and metadata;
    // stream chunks up to 4 MiB are accepted whatever the unary limit.
    "grpc.max_receive_message_length": Math.max(config.maxUnaryBytes, 4 * 1024 * 1024) + 1024 * 1024,
    "grpc.max_send_message_length": Math.max(config.maxUnaryBytes, config.chunkSize) + 1024 * 1024,
  });
  server.addService(
    serviceDefinition(FileStorageService),
    createFileStorageHandlers({
      engine,
      auth: createAuthorizer(config.authTokens),
      observer: metrics,
      log,
      maxUnaryBytes: config.maxUnaryBytes,
      chunkSize: config.chunkSize,
      version: VERSION,
      startedAt: Date.now(),
    }) as unknown as grpc.UntypedServiceImplementation,
  );

  const health = new HealthImplementation({ "": "NOT_SERVING", [SERVICE_NAME]: "NOT_SERVING" });
  health.addToServer(server);
  new ReflectionService(reflectionPackage()).addToServer(server);

  const credentials = config.tlsCertFile && config.tlsKeyFile
    ? grpc.ServerCredentials.createSsl(null, [
        { cert_chain: fs.readFileSync(config.tlsCertFile), private_key: fs.readFileSync(config.tlsKeyFile) },
      ])
    : grpc.ServerCredentials.createInsecure();
  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(config.listenAddress, credentials, (err, p) => (err ? reject(err) : resolve(p))),
    );
  } catch (err) {
    await engine.close();
    throw new Error(`cannot listen on LISTEN_ADDRESS=${config.listenAddress}: ${(err as Error).message}`);
  }
  widenReceiveWindows(server, log);
  const host = config.listenAddress.slice(0, config.listenAddress.lastIndexOf(":"));
  try {
    const removed = await engine.sweepLeftovers();
    if (removed.tmpFiles + removed.blobs > 0) log.info(removed, "removed what an earlier run left in the storage folder");
  } catch (err) {
    server.forceShutdown();
    await engine.close();
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
      await engine.probe(AbortSignal.timeout(config.timeoutSeconds * 1000));
      setHealth(true);
    } catch (err) {
      log.warn({ err }, "no tier can take a write: health is NOT_SERVING");
      setHealth(false);
    }
  };
  await checkHealth();
  const healthTimer = setInterval(() => void checkHealth(), HEALTH_INTERVAL_MS);
  healthTimer.unref();

  const metricsServer = config.metricsPort > 0 ? await serveMetrics(metrics, config.metricsHost, config.metricsPort) : undefined;
  log.info({ address: `${host}:${port}`, gcs: Boolean(config.gcsBucketName), metricsPort: metricsServer?.port }, "FileStorage is serving");

  return {
    address: `${host}:${port}`,
    port,
    engine,
    metrics,
    metricsPort: metricsServer?.port,
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
      await engine.close();
      log.info({}, "FileStorage stopped");
    },
  };
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
