/**
 * How the daemon runs over time: shutdown, health checks, replication and
 * sweeps, resumable uploads, logging. Part of the settings table (settings.ts,
 * which keeps the order of the README table).
 */
import { z } from "zod";
import type { SettingDef } from "./setting-def.js";
import {
  integer,
  seconds,
} from "./value-kinds.js";

export const operationSettings = {
  shutdownGraceSeconds: {
    env: "SHUTDOWN_GRACE_SECONDS",
    ...seconds(3600, true),
    default: "10",
    description: "how long open calls may finish on shutdown",
  },
  healthCheckSeconds: {
    env: "HEALTH_CHECK_SECONDS",
    ...seconds(3600, false),
    default: "5",
    description: "how often the daemon checks that a write can be made durable (health, and GCS's availability)",
  },
  replicationIntervalMs: {
    env: "REPLICATION_INTERVAL_MS",
    ...integer(10, 3_600_000),
    default: "2000",
    description: "how often the replicator retries the outbox while GCS is down",
  },
  expirySweepSeconds: {
    env: "EXPIRY_SWEEP_SECONDS",
    ...integer(1, 86_400),
    default: "60",
    description: "how often expired objects and abandoned resumable uploads are removed from the local tier (by its index)",
  },
  uploadExpirySeconds: {
    env: "UPLOAD_EXPIRY_SECONDS",
    ...integer(1, 10 * 365 * 86_400),
    default: "86400",
    description:
      "a resumable upload (StoreStream with an upload_id) no stream has touched for this long is deleted with its bytes, " +
      "freeing its space and quota (checked every EXPIRY_SWEEP_SECONDS); a completed one stays queryable this long",
  },
  maxOpenUploads: {
    env: "MAX_OPEN_UPLOADS",
    ...integer(1, 1_000_000),
    default: "1000",
    description: "incomplete resumable uploads kept at once, in total; a new one past it is RESOURCE_EXHAUSTED",
  },
  maxOpenUploadsPerCaller: {
    env: "MAX_OPEN_UPLOADS_PER_CALLER",
    ...integer(1, 1_000_000),
    default: "100",
    description: 'incomplete resumable uploads kept at once per caller (auth entry name; all callers are "anonymous" without auth)',
  },
  gcsSweepSeconds: {
    env: "GCS_SWEEP_SECONDS",
    ...integer(1, 30 * 86_400),
    default: "3600",
    description: "how often the bucket is listed to remove expired objects, old tombstones and upload leftovers",
  },
  tombstoneRetentionSeconds: {
    env: "TOMBSTONE_RETENTION_SECONDS",
    ...integer(1, 10 * 365 * 86_400),
    default: "604800",
    description: "how long GCS keeps a deleted key's tombstone; an outage longer than this may resurrect keys deleted meanwhile",
  },
  logLevel: {
    env: "LOG_LEVEL",
    schema: z.preprocess(
      (value) => (typeof value === "string" ? value.trim().toLowerCase() : value),
      z.enum(["fatal", "error", "warn", "info", "debug", "trace"]),
    ),
    allowed: "fatal, error, warn, info, debug or trace",
    default: "info",
    description: "log level",
  },
  logFormat: {
    env: "LOG_FORMAT",
    schema: z.preprocess(
      (value) => (typeof value === "string" ? value.trim().toLowerCase() : value),
      z.enum(["json", "pretty", "auto"]),
    ),
    allowed: "json, pretty or auto (pretty when stdout is a terminal, else json)",
    default: "json",
    description: "how log lines on stdout read: one JSON object per line, or a readable line per entry (pino-pretty)",
  },
} satisfies Record<string, SettingDef>;
