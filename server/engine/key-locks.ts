/**
 * Per-key mutual exclusion within one process: `run(key, fn)` waits for the
 * calls already running for `key`, then runs `fn`. Used where a write must
 * know exactly what it replaces (quota accounting): concurrent writes of one
 * key then replace one another in turn instead of all subtracting the same
 * old size. Keys nobody holds cost nothing.
 */
export class KeyLocks {
  private readonly tails = new Map<string, Promise<void>>();

  /** Runs `fn` once every earlier `run` of the same key has settled. */
  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const before = this.tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    const tail = before.then(() => mine);
    this.tails.set(key, tail);
    await before;
    try {
      return await fn();
    } finally {
      release();
      // The last holder leaves no entry behind.
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }

  /** Keys with a call running or waiting (for tests and metrics). */
  get size(): number {
    return this.tails.size;
  }
}
