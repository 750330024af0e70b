/**
 * Where and how objects are kept: the config file, the local tier, GCS, the
 * caches, the scrubber, retries, the breaker and GCS transfers. Part of the
 * settings table (settings.ts, which keeps the order of the README table).
 */
import { z } from "zod";
import type { SettingDef } from "./setting-def.js";
import {
  GiB,
  KiB,
  MiB,
  TiB,
  boolean,
  bytes,
  existingFile,
  folder,
  integer,
  seconds,
  text,
  url,
} from "./value-kinds.js";

export const storageSettings = {
  configFile: {
    env: "CONFIG_FILE",
    ...text,
    allowed: "the path of a JSON config file",
    flag: "--config",
    notInFile: true,
    description: "JSON file of settings; keys are the lower-cased environment names",
  },
  gcsBucketName: {
    env: "GCS_BUCKET_NAME",
    schema: z.string().trim().regex(/^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$/),
    allowed: "a GCS bucket name: 3 to 222 of a-z 0-9 . _ - starting and ending with a letter or digit",
    description: "GCS bucket; unset = local storage only (embedded mode)",
  },
  gcsProjectId: { env: "GCS_PROJECT_ID", ...text, description: "GCS project; lets the daemon create a missing bucket" },
  googleApplicationCredentials: {
    env: "GOOGLE_APPLICATION_CREDENTIALS",
    ...existingFile,
    description: "service-account JSON file; unset = the platform's default credentials",
  },
  gcsLocation: { env: "GCS_LOCATION", ...text, default: "US", description: "location of a bucket the daemon creates" },
  gcsApiEndpoint: {
    env: "GCS_API_ENDPOINT",
    ...url(["http", "https"]),
    description: "GCS API base URL, e.g. an emulator's (without /storage/v1)",
  },
  localStoragePath: {
    env: "LOCAL_STORAGE_PATH",
    ...folder,
    default: "./storage",
    description: "folder of the local tier (fallback, or the only tier)",
  },
  localMinFreeBytes: {
    env: "LOCAL_MIN_FREE_BYTES",
    ...bytes(0, TiB),
    default: "64MiB",
    description: "local writes are refused when the disk has less free; deletes and the index keep working",
  },
  enableLocalFallback: {
    env: "ENABLE_LOCAL_FALLBACK",
    ...boolean,
    default: "true",
    description: "write locally while GCS is unavailable and replicate later",
  },
  enableCache: { env: "ENABLE_CACHE", ...boolean, default: "true", description: "cache small objects in memory" },
  cacheTtlSeconds: {
    env: "CACHE_TTL_SECONDS",
    ...integer(1, 31_536_000),
    default: "3600",
    description: "how long a cached object lives",
  },
  maxCacheSizeMb: {
    env: "MAX_CACHE_SIZE_MB",
    ...integer(1, 65_536),
    default: "100",
    description: "cache bound in MiB of object bytes",
  },
  cacheMaxObjectBytes: {
    env: "CACHE_MAX_OBJECT_BYTES",
    ...bytes(0, 64 * GiB),
    default: "1MiB",
    description: "larger objects are never cached; at most the cache size",
  },
  cacheUrl: {
    env: "CACHE_URL",
    ...url(["redis", "rediss"]),
    secret: true,
    description: "shared cache for several daemons (redis://...); unset = in-memory",
  },
  diskCacheMaxMb: {
    env: "DISK_CACHE_MAX_MB",
    ...integer(0, 16 * 1024 * 1024),
    default: "1024",
    description:
      "with GCS: MiB of GCS objects (stored bytes) kept on the local disk as a read cache, least recently used evicted first; 0 = off",
  },
  diskCacheMinFreeMb: {
    env: "DISK_CACHE_MIN_FREE_MB",
    ...integer(0, 1024 * 1024),
    default: "1024",
    description: "the disk cache admits no copy that would leave the disk with less free, evicting first",
  },
  diskCacheOnWrite: {
    env: "DISK_CACHE_ON_WRITE",
    ...boolean,
    default: "false",
    description: "also keep what is written through the daemon in the disk cache (once GCS committed it)",
  },
  scrubBytesPerSecond: {
    env: "SCRUB_BYTES_PER_SECOND",
    ...bytes(0, 10 * GiB),
    default: "4MiB",
    description: "rate at which the background scrubber re-reads the local tier and the disk cache to find and repair bad copies; 0 = off",
  },
  scrubIntervalSeconds: {
    env: "SCRUB_INTERVAL_SECONDS",
    ...integer(1, 30 * 86_400),
    default: "3600",
    description: "pause between scrubber passes, and before the first one after start-up",
  },
  chunkSize: {
    env: "CHUNK_SIZE",
    ...bytes(16 * KiB, 3 * MiB),
    default: "1MiB",
    description: "bytes per streamed message; one message must stay under gRPC's 4 MiB limit",
  },
  maxRetries: { env: "MAX_RETRIES", ...integer(0, 20), default: "3", description: "retries of a failed GCS call" },
  timeoutSeconds: {
    env: "TIMEOUT_SECONDS",
    ...seconds(3600, false),
    default: "30",
    description: "timeout of one GCS call",
  },
  gcsBreakerFailures: {
    env: "GCS_BREAKER_FAILURES",
    ...integer(2, 1000),
    default: "5",
    description: "consecutive failed GCS calls (each after its retries) that open the circuit breaker",
  },
  gcsBreakerResetSeconds: {
    env: "GCS_BREAKER_RESET_SECONDS",
    ...seconds(3600, false),
    default: "2",
    description: "how long an open breaker fails GCS calls at once before one trial call",
  },
  gcsResumableThresholdBytes: {
    env: "GCS_RESUMABLE_THRESHOLD_BYTES",
    ...bytes(256 * KiB, 256 * MiB),
    default: "8MiB",
    description:
      "uploads up to this size go to GCS in one request (held in memory, so a failure is retried); larger ones go in parts, and parts of at least this size go up resumably",
  },
  gcsParallelUploadPartBytes: {
    env: "GCS_PARALLEL_UPLOAD_PART_BYTES",
    ...bytes(256 * KiB, GiB),
    default: "16MiB",
    description: "uploads over GCS_RESUMABLE_THRESHOLD_BYTES go to GCS in parts of this size, each held in memory while it uploads (so a failed part is sent again)",
  },
  gcsParallelUploadParts: {
    env: "GCS_PARALLEL_UPLOAD_PARTS",
    ...integer(1, 32),
    default: "4",
    description:
      "parts of one upload sent to GCS at once, composed into the key at the end; an upload holds at most (this + 1) x GCS_PARALLEL_UPLOAD_PART_BYTES; 1 = one resumable session sent in requests of that size",
  },
  gcsParallelReadThresholdBytes: {
    env: "GCS_PARALLEL_READ_THRESHOLD_BYTES",
    ...bytes(MiB, 5 * TiB),
    default: "64MiB",
    description: "reads from GCS of at least this many bytes (objects or ranges) go in parallel ranged parts, delivered in order",
  },
  gcsParallelReadParts: {
    env: "GCS_PARALLEL_READ_PARTS",
    ...integer(1, 64),
    default: "8",
    description: "parts of one large read in flight at once (1 = one request); a read holds at most (this - 1) x GCS_PARALLEL_READ_PART_BYTES ahead of its reader",
  },
  gcsParallelReadPartBytes: {
    env: "GCS_PARALLEL_READ_PART_BYTES",
    ...bytes(256 * KiB, GiB),
    default: "16MiB",
    description: "size of one part of a parallel read",
  },
} satisfies Record<string, SettingDef>;
