/** What the parts of the GCS tier share: the bucket, the request client and the retry policy. */
import type { Bucket } from "@google-cloud/storage";
import type { GcsHttp } from "./gcs-http.js";

export interface GcsContext {
  readonly bucket: Bucket;
  /** The hot-path requests (reads, stats, uploads, compose); the SDK's bucket does the rest. */
  readonly http: GcsHttp;
  /** Retries after the first attempt of a retry-safe call (MAX_RETRIES). */
  readonly maxRetries: number;
  /** Deadline of one attempt; for uploads, the longest GCS may make no progress (TIMEOUT_SECONDS). */
  readonly timeoutMs: number;
  /** Runs a retry-safe call with those retries and deadlines, stopping when `signal` aborts. */
  retry<T>(fn: (attemptSignal: AbortSignal) => Promise<T>, signal?: AbortSignal): Promise<T>;
}
