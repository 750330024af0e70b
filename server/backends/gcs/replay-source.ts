/**
 * The replayable source of a GCS upload: a retried upload must send the same
 * bytes again, but an upload source (a client stream) can be read once. So
 * everything read is kept while it stays under a limit (the resumable
 * threshold): a source that ends within it can be replayed as often as the
 * retries need; past it, nothing is kept behind the reader and the upload is
 * no longer retried.
 */
import { Code, StorageError } from "../../storage-error.js";
import { throwIfAborted } from "../../signals.js";

/**
 * A source that can be read again from the start while everything read so
 * far is still buffered (at most `limit` bytes). Pulls are shared, so a chunk
 * an abandoned attempt pulled is not lost to the next one, and a source
 * failure is remembered and re-thrown to every reader.
 */
export class ReplaySource {
  private readonly chunks: Uint8Array[] = [];
  private buffered = 0;
  private ended = false;
  private failure: { err: unknown } | undefined;
  private pulling: Promise<void> | undefined;
  /** Chunks pulled and let go (once past the limit). */
  private dropped = 0;
  private readonly it: AsyncIterator<Uint8Array>;
  replayable = true;

  constructor(source: AsyncIterable<Uint8Array>, private readonly limit: number) {
    this.it = source[Symbol.asyncIterator]();
  }

  /** Reads ahead up to the limit; true when the whole source fit. */
  async fill(signal?: AbortSignal): Promise<boolean> {
    while (!this.ended && this.replayable) {
      throwIfAborted(signal);
      await this.pull();
    }
    return this.ended && this.replayable;
  }

  async *iterate(): AsyncGenerator<Uint8Array> {
    if (this.dropped > 0) throw new StorageError(Code.Internal, "an upload source cannot be replayed");
    for (let i = 0; ; i++) {
      while (i >= this.dropped + this.chunks.length && !this.ended) await this.pull();
      if (i >= this.dropped + this.chunks.length) return;
      const at = i - this.dropped;
      const chunk = this.chunks[at];
      if (!this.replayable) {
        // Past the replay limit: keep nothing behind the reader.
        this.chunks.splice(0, at + 1);
        this.dropped += at + 1;
      }
      yield chunk;
    }
  }

  private pull(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure.err);
    this.pulling ??= this.it.next().then(
      (r) => {
        this.pulling = undefined;
        if (r.done) {
          this.ended = true;
          return;
        }
        if (r.value.length === 0) return;
        this.chunks.push(r.value);
        this.buffered += r.value.length;
        if (this.buffered > this.limit) this.replayable = false;
      },
      (err) => {
        this.pulling = undefined;
        this.failure = { err };
        throw err;
      },
    );
    return this.pulling;
  }
}
