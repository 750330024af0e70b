/**
 * Quotas shared by every daemon of one store, kept in Redis (CACHE_URL).
 *
 * Per prefix, under the store's namespace: `used` (bytes committed) and a hash
 * of open reservations (id -> "bytes:expiresAtMs"). A reservation is checked
 * and recorded in one Lua script against `used` plus every other daemon's
 * open reservations, so two daemons cannot both take the last bytes. A
 * reservation a crashed daemon left behind stops counting once it expires
 * (RESERVATION_TTL_MS, renewed as the write grows). Writes and deletes of one
 * key take turns across daemons through a Redis lock with a lease (renewed
 * while the write runs), so each knows exactly the size it replaces.
 *
 * `used` is set from a listing by the first daemon that starts (SET NX) and
 * from then on only moved by commits and deletes. Limits: a daemon killed
 * between a commit and its Redis update leaves `used` off by that object until
 * the key is reset (delete it in Redis: the next start recounts); a Redis that
 * loses its data is recounted by the next daemon start, and counts from zero
 * until then. When Redis cannot be reached, covered writes fail UNAVAILABLE
 * (quotas fail closed); deletes still happen and their release is lost.
 */
import { createHash, randomUUID } from "node:crypto";
import { createClient } from "@redis/client";
import { connectRedis, redisClientOptions } from "../redis-connection.js";
import { Code, StorageError, unavailable } from "../storage-error.js";
import { coveringPrefixes, quotaExceeded, type QuotaReservation, type Quotas } from "./quota.js";

/** An open reservation stops counting this long after it last grew (its daemon may be gone). */
const RESERVATION_TTL_MS = 10 * 60 * 1000;
/** A key lock's lease; renewed at a third of it while its holder runs. */
const LOCK_LEASE_MS = 30_000;
/** How long a write waits for another daemon's write of the same key. */
const LOCK_WAIT_MS = 60_000;

// KEYS: used_1, res_1, ..., used_n, res_n. ARGV: id, bytes, replacing, now, expiresAt, limit_1..limit_n.
// Returns {0} when recorded, else {i, used, others} for the first prefix that cannot hold it.
const RESERVE_SCRIPT = `
local id, bytes, replacing, now, expires = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local n = #KEYS / 2
for i = 1, n do
  local used = tonumber(redis.call('GET', KEYS[2*i-1]) or '0')
  local others = 0
  local all = redis.call('HGETALL', KEYS[2*i])
  for j = 1, #all, 2 do
    if all[j] ~= id then
      local b, e = string.match(all[j+1], '^(%d+):(%d+)$')
      if b == nil or tonumber(e) < now then redis.call('HDEL', KEYS[2*i], all[j]) else others = others + tonumber(b) end
    end
  end
  if used - replacing + others + bytes > tonumber(ARGV[5 + i]) then return {i, used, others} end
end
for i = 1, n do redis.call('HSET', KEYS[2*i], id, bytes .. ':' .. expires) end
return {0}`;

// KEYS: used_1, res_1, ... ARGV: id, delta. Drops the reservation and moves `used` (never below 0).
const COMMIT_SCRIPT = `
for i = 1, #KEYS / 2 do
  if ARGV[1] ~= '' then redis.call('HDEL', KEYS[2*i], ARGV[1]) end
  if tonumber(ARGV[2]) ~= 0 then
    local v = redis.call('INCRBY', KEYS[2*i-1], ARGV[2])
    if v < 0 then redis.call('SET', KEYS[2*i-1], 0) end
  end
end
return 1`;

const RENEW_SCRIPT = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0`;
const UNLOCK_SCRIPT = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;

export interface SharedQuotaOptions {
  /** redis://... (CACHE_URL) */
  url: string;
  /** The store's namespace (cache-namespace.ts), so stores sharing a Redis keep apart. */
  namespace: string;
  limits: Record<string, number>;
  /** Usage counted by this daemon's start-up listing; used only where Redis knows nothing yet. */
  initialUsage: Record<string, number>;
}

/** Connects to Redis and returns quotas shared by every daemon of the store; UNAVAILABLE when Redis cannot be reached. */
export async function createSharedQuotas(opts: SharedQuotaOptions): Promise<Quotas> {
  const client = await connectRedis(createClient(redisClientOptions(opts.url)), "the shared quota store");
  const hash = (s: string) => createHash("sha256").update(s, "utf8").digest("hex").slice(0, 24);
  const usedKey = (prefix: string) => `${opts.namespace}:q:${hash(prefix)}:used`;
  const resKey = (prefix: string) => `${opts.namespace}:q:${hash(prefix)}:res`;
  const keysOf = (prefixes: string[]) => prefixes.flatMap((p) => [usedKey(p), resKey(p)]);
  /** Runs a Redis command; a lost connection is UNAVAILABLE naming the quota store. */
  const redis = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (err) {
      throw unavailable(`the shared quota store (CACHE_URL) could not be reached while ${what}`, err);
    }
  };

  for (const [prefix] of Object.entries(opts.limits)) {
    await redis("starting", () => client.set(usedKey(prefix), String(opts.initialUsage[prefix] ?? 0), { condition: "NX" }));
  }

  async function lock(key: string): Promise<() => Promise<void>> {
    const lockKey = `${opts.namespace}:ql:${hash(key)}`;
    const token = randomUUID();
    const deadline = Date.now() + LOCK_WAIT_MS;
    for (let wait = 5; ; wait = Math.min(wait * 2, 200)) {
      const got = await redis("locking a key", () => client.set(lockKey, token, { condition: "NX", expiration: { type: "PX", value: LOCK_LEASE_MS } }));
      if (got === "OK") break;
      if (Date.now() > deadline) {
        throw new StorageError(Code.Aborted, `another daemon has been writing key "${key}" for over ${LOCK_WAIT_MS / 1000} s; retry`);
      }
      await new Promise((r) => setTimeout(r, wait * (0.5 + Math.random())));
    }
    const renew = setInterval(() => {
      void client.eval(RENEW_SCRIPT, { keys: [lockKey], arguments: [token, String(LOCK_LEASE_MS)] }).catch(() => undefined);
    }, LOCK_LEASE_MS / 3);
    renew.unref();
    return async () => {
      clearInterval(renew);
      await client.eval(UNLOCK_SCRIPT, { keys: [lockKey], arguments: [token] }).catch(() => undefined);
    };
  }

  return {
    covers: (key) => coveringPrefixes(opts.limits, key).length > 0,

    async reserve(key, bytes, replacing = 0) {
      const prefixes = coveringPrefixes(opts.limits, key);
      const id = randomUUID();
      let held = 0;
      const take = async (n: number) => {
        const total = held + n;
        const answer = (await redis("reserving quota", () =>
          client.eval(RESERVE_SCRIPT, {
            keys: keysOf(prefixes),
            arguments: [id, String(total), String(replacing), String(Date.now()), String(Date.now() + RESERVATION_TTL_MS), ...prefixes.map((p) => String(opts.limits[p]))],
          }),
        )) as number[];
        if (answer[0] !== 0) {
          const prefix = prefixes[answer[0]! - 1]!;
          throw quotaExceeded(prefix, opts.limits[prefix]!, answer[1]! + answer[2]!, replacing, total);
        }
        held = total;
      };
      await take(bytes);
      let done = false;
      const settle = async (delta: number) => {
        if (done) return;
        done = true;
        await redis("committing quota", () => client.eval(COMMIT_SCRIPT, { keys: keysOf(prefixes), arguments: [id, String(delta)] }));
      };
      const reservation: QuotaReservation = {
        grow: (n) => take(n),
        commit: (finalSize, oldSize) => settle(finalSize - oldSize),
        // A release that cannot reach Redis leaves the reservation to expire.
        release: () => settle(0).catch(() => undefined),
      };
      return reservation;
    },

    async released(key, size) {
      const prefixes = coveringPrefixes(opts.limits, key);
      if (prefixes.length === 0 || size === 0) return;
      await redis("releasing quota", () => client.eval(COMMIT_SCRIPT, { keys: keysOf(prefixes), arguments: ["", String(-size)] })).catch(() => undefined);
    },

    async exclusive(key, fn) {
      const unlock = await lock(key);
      try {
        return await fn();
      } finally {
        await unlock();
      }
    },

    async usage() {
      const out: { prefix: string; used: number; limit: number }[] = [];
      for (const [prefix, limit] of Object.entries(opts.limits)) {
        const used = Number((await redis("reading quota", () => client.get(usedKey(prefix)))) ?? 0);
        out.push({ prefix, used, limit });
      }
      return out;
    },

    async close() {
      if (client.isOpen) await client.close();
      else client.destroy();
    },
  };
}
