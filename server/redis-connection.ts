/**
 * How the daemon talks to a shared Redis (CACHE_URL), for the shared cache
 * and the shared quotas alike: fail fast while disconnected instead of
 * queueing (a cache must not stall reads, and a writer must learn at once
 * that its invalidation or its quota update did not happen), reconnect with
 * backoff, and never crash the process on a connection error (failures
 * surface per command).
 */
import { unavailable } from "./storage-error.js";

/** The @redis/client options for `url`. */
export function redisClientOptions(url: string) {
  return {
    url,
    disableOfflineQueue: true,
    socket: { reconnectStrategy: (retries: number) => Math.min(100 * 2 ** retries, 5000), connectTimeout: 5000 },
  };
}

/** Connects `client`; UNAVAILABLE naming `what` (never the URL: it may carry a password) when Redis cannot be reached. */
export async function connectRedis<C extends { connect(): Promise<unknown>; destroy(): void; on(event: "error", fn: () => void): unknown }>(
  client: C,
  what: string,
): Promise<C> {
  client.on("error", () => undefined);
  try {
    await client.connect();
  } catch (err) {
    client.destroy();
    throw unavailable(`cannot connect to ${what} (CACHE_URL)`, err);
  }
  return client;
}
