/** Nothing shared outlives a suite: each one stops the peers it started. */
export default function globalTeardown(): void {}
