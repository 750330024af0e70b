/**
 * The @google-cloud/storage client settings every user of the GCS tier needs
 * (the backend, tests and benches that look at the bucket directly).
 */
import type { CRC32CValidator } from "@google-cloud/storage";
import { crc32c } from "@node-rs/crc32";

export interface SdkOptions {
  /** Needed to create a missing bucket. */
  projectId?: string;
  /** A service-account key file; without it, application default credentials. */
  keyFilename?: string;
  /** An emulator's base URL (without /storage/v1); no credentials are used then. */
  apiEndpoint?: string;
  /** Deadline of one HTTP request. */
  timeoutMs: number;
}

/**
 * SDK retries off (ours are counted and bounded), a native CRC32C for upload
 * and download validation (the SDK's pure-JS one runs at ~200 MiB/s), and no
 * credentials for an emulator.
 */
export function gcsStorageOptions(opts: SdkOptions) {
  return {
    projectId: opts.projectId,
    keyFilename: opts.keyFilename,
    apiEndpoint: opts.apiEndpoint,
    timeout: opts.timeoutMs,
    retryOptions: { autoRetry: false, maxRetries: 0 },
    crc32cGenerator: nativeCrc32cValidator,
  };
}

/** The SDK's CRC32C validator on the native implementation. */
function nativeCrc32cValidator(): CRC32CValidator {
  let crc = 0;
  const toString = () => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(crc >>> 0);
    return b.toString("base64");
  };
  return {
    update: (data: Buffer) => {
      crc = crc32c(data, crc);
    },
    toString,
    validate: (value: string) => value === toString(),
  };
}
