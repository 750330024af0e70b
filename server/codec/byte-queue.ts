/**
 * A FIFO of byte chunks that hands out exact-size pieces, so stages that work
 * in fixed units (encryption segments, samples) neither copy every chunk nor
 * Buffer.concat a whole stream. Memory is what was pushed and not yet taken.
 */
export class ByteQueue {
  private chunks: Buffer[] = [];
  private head = 0; // bytes already taken from chunks[0]
  private total = 0;

  /** Bytes queued. */
  get length(): number {
    return this.total;
  }

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length));
    this.total += chunk.length;
  }

  /** Removes and returns the first `n` bytes (n <= length). A view into a
   * pushed chunk when one holds them all, a fresh copy otherwise. */
  take(n: number): Buffer {
    if (n > this.total) throw new RangeError(`take(${n}) from a queue of ${this.total} bytes`);
    this.total -= n;
    const first = this.chunks[0];
    if (first !== undefined && first.length - this.head >= n) {
      const piece = first.subarray(this.head, this.head + n);
      this.advance(first, n);
      return piece;
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const chunk = this.chunks[0]!;
      const count = Math.min(chunk.length - this.head, n - filled);
      chunk.copy(out, filled, this.head, this.head + count);
      filled += count;
      this.advance(chunk, count);
    }
    return out;
  }

  /** Removes the first `n` bytes (n <= length) and returns them as views
   * into the pushed chunks, in order: no copy. */
  takeViews(n: number): Buffer[] {
    if (n > this.total) throw new RangeError(`takeViews(${n}) from a queue of ${this.total} bytes`);
    this.total -= n;
    const out: Buffer[] = [];
    for (let left = n; left > 0; ) {
      const chunk = this.chunks[0]!;
      const count = Math.min(chunk.length - this.head, left);
      out.push(chunk.subarray(this.head, this.head + count));
      left -= count;
      this.advance(chunk, count);
    }
    return out;
  }

  /** A copy of the first min(n, length) bytes, left in the queue. */
  peek(n: number): Buffer {
    const out = Buffer.allocUnsafe(Math.min(n, this.total));
    let filled = 0;
    for (let i = 0; filled < out.length; i++) {
      const chunk = this.chunks[i]!;
      filled += chunk.copy(out, filled, i === 0 ? this.head : 0);
    }
    return out;
  }

  /** Removes and returns everything queued, chunk by chunk, without copying. */
  drain(): Buffer[] {
    const out = this.chunks.map((c, i) => (i === 0 ? c.subarray(this.head) : c));
    this.chunks = [];
    this.head = 0;
    this.total = 0;
    return out;
  }

  private advance(chunk: Buffer, count: number): void {
    this.head += count;
    if (this.head === chunk.length) {
      this.chunks.shift();
      this.head = 0;
    }
  }
}
