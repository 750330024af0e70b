/**
 * kill -9 during random operations, KILL9_ROUNDS (default 100) rounds over one
 * storage folder. Each round starts the daemon (a child process on dist/),
 * checks what the previous round left, runs random concurrent Store /
 * StoreStream (0 B..2 MiB, inline and blob-sized, compressible or not),
 * overwrites and deletes for a random short time, and kills it with SIGKILL at
 * a random moment. After each restart:
 *   - every acknowledged write reads back byte for byte (or the newer
 *     acknowledged version, or absent after an acknowledged delete); an
 *     operation in flight at the kill shows the old or the new state, never a
 *     torn or mixed object;
 *   - tmp/ is empty and no blob file is unreferenced (the restart's sweep);
 *   - the index passes PRAGMA integrity_check.
 * Operations on one key are sequential (so "the newest acknowledged" is
 * defined); many keys are written at once. Seeded by KILL9_SEED for a replay.
 */
import { randomBytes } from "node:crypto";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import Database from "better-sqlite3";
import { FileStorageClient } from "../../client/src/index.js";
import { spawnDaemon, type DaemonProcess } from "../kit/daemon-process.js";
import { makeTempDir, type TempDir } from "../kit/temp-dir.js";

const ROUNDS = Number(process.env.KILL9_ROUNDS ?? 100);
const SEED = Number(process.env.KILL9_SEED ?? Date.now() % 1_000_000);
const KEYS = 16;
const WORKERS = 6;
const KiB = 1024;
const MiB = 1024 * KiB;
const MAX_SIZE = 2 * MiB;

/** mulberry32: a small seeded PRNG, so a failing run can be replayed with KILL9_SEED. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A version of a key: its bytes follow from (id, size, compressible), so nothing is kept but these. */
interface Version {
  id: number;
  size: number;
  compressible: boolean;
}
/** What a key holds: a version, or null (absent). */
type State = Version | null;

const POOL = randomBytes(MAX_SIZE + 64 * KiB);

/** The bytes of `v`: distinct for every id (the id is stamped at both ends). */
function bytesOf(v: Version): Buffer {
  const out = v.compressible
    ? Buffer.alloc(v.size, v.id % 251)
    : Buffer.from(POOL.subarray((v.id * 4099) % (64 * KiB), ((v.id * 4099) % (64 * KiB)) + v.size));
  if (v.size >= 16) {
    out.writeUInt32BE(v.id, 0);
    out.writeUInt32BE(v.id, v.size - 4);
  }
  return out;
}

const describeState = (s: State) => (s === null ? "absent" : `v${s.id} (${s.size} B${s.compressible ? ", compressible" : ""})`);

interface KeyModel {
  /** The state the key must have now, as far as anything was acknowledged. */
  acked: State;
  /** The target of the operation in flight on this key, if any (undefined: none). */
  inFlight?: State;
  busy: boolean;
}

interface Stats {
  startupMs: number[];
  acked: number;
  inFlightAtKill: number;
  resolvedAfterKill: number;
}

let dir: TempDir;
beforeAll(async () => {
  dir = await makeTempDir("fs-kill9-");
});
afterAll(() => dir.cleanup());

test(`kill -9 during random operations, ${ROUNDS} rounds with restarts: acknowledged writes survive, nothing torn or stray`, async () => {
  const storage = path.join(dir.path, "store");
  const random = prng(SEED);
  const pick = <T>(items: readonly T[]) => items[Math.floor(random() * items.length)]!;
  const keys = Array.from({ length: KEYS }, (_, i) => `k9/${i % 4}/key-${i}`);
  const model = new Map<string, KeyModel>(keys.map((k) => [k, { acked: null, busy: false }]));
  const stats: Stats = { startupMs: [], acked: 0, inFlightAtKill: 0, resolvedAfterKill: 0 };
  let nextId = 1;
  const started = Date.now();

  for (let round = 0; round <= ROUNDS; round++) {
    const t0 = Date.now();
    const daemon = await spawnDaemon({ LOCAL_STORAGE_PATH: storage });
    stats.startupMs.push(Date.now() - t0);
    const client = new FileStorageClient(daemon.address, { retries: 0 });
    try {
      await checkFolder(storage, round);
      await checkKeys(client, model, round);
      if (round === ROUNDS) break;
      await runAndKill(daemon, client, model, round);
    } catch (err) {
      // The daemon's side of a failure: did it exit, and what did it say.
      const exit = await Promise.race([daemon.exited, new Promise<undefined>((r) => setTimeout(() => r(undefined), 500))]);
      const state = exit ? `the daemon had exited (${exit.code ?? exit.signal})` : "the daemon was still running";
      throw new Error(`round ${round} (KILL9_SEED=${SEED}): ${(err as Error).message}; ${state}; its stderr: ${daemon.stderr().slice(-2000) || "(empty)"}; its last log lines: ${daemon.stdout().split("\n").slice(-6).join("\n")}`, { cause: err });
    } finally {
      client.close();
      await daemon.kill("SIGKILL");
    }
  }

  const sorted = [...stats.startupMs].sort((a, b) => a - b);
  console.log(
    `kill -9 rounds: ${ROUNDS} rounds in ${((Date.now() - started) / 1000).toFixed(1)} s (seed ${SEED}); ` +
      `${stats.acked} operations acknowledged, ${stats.inFlightAtKill} in flight at a kill ` +
      `(${stats.resolvedAfterKill} of them acknowledged after it); start-up p50 ${sorted[Math.floor(sorted.length / 2)]} ms, ` +
      `max ${sorted.at(-1)} ms`,
  );

  /** Random operations by WORKERS workers until a random moment, then SIGKILL. */
  async function runAndKill(daemon: DaemonProcess, client: FileStorageClient, model: Map<string, KeyModel>, round: number) {
    let killed = false;
    const errors: string[] = [];
    const settled: Promise<void>[] = [];

    const operate = async (key: string, m: KeyModel) => {
      const roll = random();
      const target: State =
        roll < 0.25
          ? null
          : {
              id: nextId++,
              size: random() < 0.5 ? Math.floor(random() * 64 * KiB) : 64 * KiB + Math.floor(random() * (MAX_SIZE - 64 * KiB)),
              compressible: random() < 0.3,
            };
      m.busy = true;
      m.inFlight = target;
      try {
        if (target === null) await client.delete(key);
        else if (roll < 0.6) await client.store(key, bytesOf(target));
        else await client.upload(key, chunks(bytesOf(target), 256 * KiB), { size: target.size });
        // Acknowledged (even after the kill: the daemon answered, so it was durable).
        m.acked = target;
        if (killed) stats.resolvedAfterKill++;
        else stats.acked++;
      } catch (err) {
        // Before the kill no operation may fail; after it, the key may hold either state.
        if (!killed) errors.push(`${key}: ${(err as Error).message}`);
        else return; // leave inFlight: the check accepts old or new
      } finally {
        m.busy = false;
      }
      m.inFlight = undefined;
    };

    const worker = async () => {
      while (!killed) {
        const free = keys.filter((k) => !model.get(k)!.busy);
        if (free.length === 0) {
          await new Promise((r) => setTimeout(r, 1));
          continue;
        }
        const key = pick(free);
        const op = operate(key, model.get(key)!);
        settled.push(op);
        await op;
      }
    };
    const workers = Array.from({ length: WORKERS }, worker);
    await new Promise((r) => setTimeout(r, 20 + random() * 400));
    killed = true;
    stats.inFlightAtKill += keys.filter((k) => model.get(k)!.busy).length;
    daemon.child.kill("SIGKILL");
    await daemon.exited;
    await Promise.all(workers);
    await Promise.all(settled);
    if (errors.length > 0) throw new Error(`operations failed before the kill in round ${round}:\n${errors.join("\n")}`);
  }
}, 300_000);

async function* chunks(data: Buffer, size: number): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < data.length; at += size) yield data.subarray(at, at + size);
}

/** Each key holds its acknowledged state, or (after an interrupted operation) that operation's target. */
async function checkKeys(client: FileStorageClient, model: Map<string, KeyModel>, round: number): Promise<void> {
  for (const [key, m] of model) {
    const got = (await client.retrieve(key)) as Buffer | null;
    const allowed: State[] = m.inFlight === undefined ? [m.acked] : [m.acked, m.inFlight];
    const match = allowed.find((s) => (s === null ? got === null : got !== null && got.equals(bytesOf(s))));
    if (match === undefined) {
      const seen = got === null ? "absent" : `${got.length} bytes matching none`;
      throw new Error(`after round ${round - 1}, ${key} is ${seen}; allowed: ${allowed.map(describeState).join(" or ")}`);
    }
    // What the interrupted operation left is now the key's state.
    m.acked = match;
    m.inFlight = undefined;
  }
}

/** tmp/ empty, every blob file named by a row (and every row's blob present), index intact. */
async function checkFolder(storage: string, round: number): Promise<void> {
  if (round === 0) return;
  const tmp = await fs.readdir(path.join(storage, "tmp"));
  if (tmp.length > 0) throw new Error(`tmp/ holds ${tmp.length} files after the restart's sweep`);
  const files = new Set<string>();
  for (const shard of await fs.readdir(path.join(storage, "blobs"))) {
    for (const name of await fs.readdir(path.join(storage, "blobs", shard))) files.add(name);
  }
  const db = new Database(path.join(storage, "index.sqlite"), { readonly: true });
  try {
    const integrity = db.pragma("integrity_check", { simple: true });
    if (integrity !== "ok") throw new Error(`index integrity_check: ${String(integrity)}`);
    const referenced = new Set((db.prepare("SELECT blob FROM objects WHERE blob IS NOT NULL").pluck().all() as string[]));
    const stray = [...files].filter((f) => !referenced.has(f));
    const missing = [...referenced].filter((f) => !files.has(f));
    if (stray.length > 0) throw new Error(`${stray.length} unreferenced blob files after the restart's sweep`);
    if (missing.length > 0) throw new Error(`${missing.length} rows name a blob file that is missing`);
  } finally {
    db.close();
  }
}
