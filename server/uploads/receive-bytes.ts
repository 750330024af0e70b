/**
 * The receiving half of a resumable upload's stream: chunks go to the
 * session's file as they arrive and are made durable at checkpoints (fsync,
 * then the committed size and CRC32C recorded in the index) every
 * CHECKPOINT_BYTES, or CHECKPOINT_MS after bytes arrived that no checkpoint
 * covers yet (so a stream that stalls still gets what it sent committed),
 * and once more when the stream ends, however it ends. A checkpoint runs
 * beside the next writes instead of stopping them, so the network never
 * waits for an fsync.
 *
 * Why this cadence: a checkpoint costs one fsync of the file and one index
 * commit (an fsync of the WAL), a few milliseconds here, so 16 MiB keeps it
 * to ~64 per GiB (under 1 % of a 1 GiB upload's time, measured in
 * bench/RESULTS.md) while a daemon killed mid-upload loses at most 16 MiB
 * (or a second's worth on a slow link) of what it received; the client sends
 * that again from the committed size.
 */
import type { UploadSessionRecord, UploadWriter } from "../backends/fs/fs-backend.js";
import { abortable } from "../signals.js";

/** Bytes received between checkpoints at most (unless a second passes first). */
export const CHECKPOINT_BYTES = 16 * 1024 * 1024;
/** Milliseconds at most from a byte's arrival to the checkpoint that covers it. */
export const CHECKPOINT_MS = 1000;

export interface ReceiveOptions {
  session: UploadSessionRecord;
  writer: UploadWriter;
  chunks: AsyncIterable<Uint8Array>;
  signal: AbortSignal;
  /** Called before a chunk is written, with the session's size once it is; throwing refuses the chunk (limits, quota). */
  admit: (sizeAfter: number) => Promise<void> | void;
  /** The expiry a checkpoint records (now + UPLOAD_EXPIRY_SECONDS). */
  expiresAt: () => number;
  log?: { warn(obj: object, msg: string): void };
}

/**
 * Writes the chunks until the stream ends (resolves) or breaks (rejects with
 * its error). Either way everything written is checkpointed first, and
 * `session` holds the committed size and CRC32C. A failed checkpoint fails
 * the stream; the session then keeps what the last good one recorded.
 */
export async function receiveBytes(o: ReceiveOptions): Promise<void> {
  const { session, writer } = o;
  let running: Promise<void> | undefined;
  let failed: { err: unknown } | undefined;
  let timer: NodeJS.Timeout | undefined;
  let settling = false;

  const checkpoint = async () => {
    const synced = await o.writer.checkpoint(o.expiresAt());
    session.committedSize = synced.size;
    session.crc32c = synced.crc32c;
  };
  const inBackground = () => {
    clearTimeout(timer);
    timer = undefined;
    if (running || failed || settling) return;
    running = checkpoint()
      .catch((err: unknown) => void (failed ??= { err }))
      .finally(() => {
        running = undefined;
        // Bytes that came during it get their own turn within CHECKPOINT_MS.
        if (writer.size > session.committedSize) arm();
      });
  };
  const arm = () => {
    if (timer || settling) return;
    timer = setTimeout(inBackground, CHECKPOINT_MS);
    timer.unref();
  };
  /** The last checkpoint: waits for one under way, then covers what came after it. */
  const settle = async () => {
    settling = true;
    clearTimeout(timer);
    await running;
    if (failed) throw failed.err;
    if (writer.size > session.committedSize) await checkpoint();
  };

  try {
    for await (const chunk of abortable(o.chunks, o.signal)) {
      if (failed) throw failed.err;
      await o.admit(writer.size + chunk.length);
      await writer.write(chunk);
      if (writer.size - session.committedSize >= CHECKPOINT_BYTES) inBackground();
      else arm();
    }
  } catch (err) {
    // Cancelled, timed out, broken or refused: what arrived before stays, durably, for a resume.
    await settle().catch((cause: unknown) => o.log?.warn({ err: cause, uploadId: session.id }, "could not checkpoint a broken upload stream"));
    throw err;
  }
  await settle();
}
