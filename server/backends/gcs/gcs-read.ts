/**
 * Reading an object's bytes from GCS: the read is opened and GCS's answer
 * awaited before the body is handed out, so a miss or an outage is an error
 * of the call, not a failure in the middle of the body. Whole objects are
 * checked against GCS's CRC32C (natively, see sdk-options.ts); ranges cannot be.
 */
import { PassThrough, type Readable } from "node:stream";
import type { File } from "@google-cloud/storage";
import { httpStatus, translate } from "./gcs-errors.js";

const MiB = 1024 * 1024;

/** Thrown by openRead when the generation it was pinned to is gone (replaced meanwhile). */
export class PinnedGenerationGone extends Error {}

/** Opens a read of `file` (pinned to a generation by the caller), whole or of `range` (inclusive end). */
export async function openRead(file: File, range: { start: number; end: number } | undefined): Promise<Readable> {
  const sdk = file.createReadStream(range ? { ...range, validation: false } : { validation: "crc32c" });
  await new Promise<void>((resolve, reject) => {
    const done = () => {
      sdk.off("error", fail);
      resolve();
    };
    const fail = (err: unknown) => {
      sdk.off("response", done).off("readable", done).off("end", done);
      reject(httpStatus(err) === 404 ? new PinnedGenerationGone() : translate("read", err));
    };
    sdk.once("response", done).once("readable", done).once("end", done).once("error", fail);
  });
  const body = new PassThrough({ highWaterMark: MiB });
  sdk.on("error", (err) => body.destroy(translate("read", err)));
  body.on("close", () => sdk.destroy());
  sdk.pipe(body);
  return body;
}
