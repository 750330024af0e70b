/**
 * The soak: a mixed load against a running daemon, then cancelled streams,
 * while the daemon's memory and open descriptors are sampled every second.
 * Shared by bench/soak.bench.ts (64 clients, 60 s, 1000 cancels of each) and
 * its bounded twin in the test suite.
 *
 * Load: `clients` callers, each with its own connection and its own key
 * prefix (so what it reads back is known exactly), back to back for
 * `seconds`: store (unary, 1 KiB..1 MiB log-uniform, incompressible or
 * compressible), retrieve (bytes checked), stat (size checked), list (keys
 * checked), delete. Any failure or wrong answer counts as an error.
 * Then `cancelledUploads` StoreStreams cancelled mid-stream and
 * `cancelledDownloads` RetrieveStreams destroyed after their first chunk, 16
 * at a time; before and after each phase the daemon's descriptors and memory
 * are read once it is quiet and a burst of reads has made it collect garbage
 * (an idle daemon runs no GC).
 */
import { randomBytes } from "node:crypto";
import * as fsp from "node:fs/promises";
import * as path from "node:path";
import { crc32c } from "@node-rs/crc32";
import { FileStorageClient } from "../../client/src/index.js";
import { KiB, MiB } from "./bench-settings.js";
import { msSince } from "./bench-report.js";
import { sampleUsage, usageOf, type Usage } from "../../test/kit/process-usage.js";
import { jsMemoryOf } from "./daemon-metrics.js";
import { flatness } from "./flatness.js";

export const OPERATIONS = ["store", "retrieve", "stat", "list", "delete"] as const;
export type Operation = (typeof OPERATIONS)[number];

/** How often each operation is picked (a missing key turns a read into a store). */
const WEIGHTS: Record<Operation, number> = { store: 0.35, retrieve: 0.3, stat: 0.15, list: 0.1, delete: 0.1 };
const KEYS_PER_CLIENT = 16;
const CANCEL_CONCURRENCY = 16;
/**
 * Before each memory reading, reads of a SETTLE_BYTES object: each allocates
 * its message, and V8 runs a full collection once external memory grew by
 * ~64 MiB, so SETTLE_ROUNDS x SETTLE_READS x SETTLE_BYTES (125 MiB) makes one
 * happen between the readings, whose lowest is taken.
 */
const SETTLE_BYTES = 256 * KiB;
const SETTLE_READS = 100;
const SETTLE_ROUNDS = 5;

export interface SoakOptions {
  address: string;
  /** The daemon's pid, for /proc. */
  pid: number;
  /** The daemon's METRICS_PORT, to read its heap and external memory; without it memory is not judged. */
  metricsPort?: number;
  /** How long the daemon is left alone before a reading (default 2000 ms). */
  quietMs?: number;
  /** Its storage folder, to check no temp file outlives the cancelled uploads. */
  storagePath: string;
  seconds: number;
  clients: number;
  cancelledUploads: number;
  cancelledDownloads: number;
  minBytes?: number;
  maxBytes?: number;
  /** Called with a line of progress now and then. */
  progress?: (line: string) => void;
}

/** The daemon at rest: descriptors, RSS, and what JavaScript holds (heap used + external). */
export interface Reading extends Usage {
  jsBytes: number;
}

export interface CancelPhase {
  count: number;
  /** Calls that did not end cancelled (they must all be). */
  errors: number;
  before: Reading;
  after: Reading;
  /** Temp files left in tmp/ once quiet (uploads only). */
  tmpFilesAfter?: number;
}

export interface SoakResult {
  seconds: number;
  latenciesMs: Record<Operation, number[]>;
  errors: number;
  /** The first few error messages. */
  errorSamples: string[];
  /** Once connected and idle, before the load. */
  idle: Reading;
  /** Usage every second during the load. */
  samples: Usage[];
  /** Once quiet after the load, connections still open. */
  afterLoad: Reading;
  uploads: CancelPhase;
  downloads: CancelPhase;
}

/** Runs the load and both cancel phases; never throws for the daemon's errors (they are counted). */
export async function runSoak(opts: SoakOptions): Promise<SoakResult> {
  const minBytes = opts.minBytes ?? KiB;
  const maxBytes = opts.maxBytes ?? MiB;
  const pool = randomBytes(maxBytes * 2);
  const latenciesMs = Object.fromEntries(OPERATIONS.map((op) => [op, [] as number[]])) as Record<Operation, number[]>;
  const errorSamples: string[] = [];
  let errors = 0;
  const fail = (what: string) => {
    errors++;
    if (errorSamples.length < 20) errorSamples.push(what);
  };

  // Each client its own connection (grpc-js would otherwise share one between same-target channels).
  const clients = Array.from(
    { length: opts.clients },
    () => new FileStorageClient(opts.address, { retries: 0, channelOptions: { "grpc.use_local_subchannel_pool": 1 } }),
  );
  try {
    await Promise.all(clients.map((c) => c.exists("soak/warm-up")));
    await clients[0]!.store("soak/settle", randomBytes(SETTLE_BYTES));
    const idle = await reading();

    const sampler = sampleUsage(opts.pid, 1000);
    const started = process.hrtime.bigint();
    const deadline = started + BigInt(opts.seconds) * 1_000_000_000n;
    const progress = setInterval(() => {
      const done = OPERATIONS.reduce((n, op) => n + latenciesMs[op].length, 0);
      opts.progress?.(`  ${Math.round(msSince(started) / 1000)} s: ${done} operations, ${errors} errors`);
    }, 10_000);
    try {
      await Promise.all(clients.map((client, i) => caller(client, `soak/c${i}/`, deadline)));
    } finally {
      clearInterval(progress);
    }
    const samples = sampler.stop();
    const afterLoad = await reading();

    const big = await prepareDownloads(clients[0]!);
    const uploads = await cancelPhase(opts.cancelledUploads, (c, n) => cancelledUpload(c, n), clients);
    uploads.tmpFilesAfter = (await fsp.readdir(path.join(opts.storagePath, "tmp")).catch(() => [])).length;
    const downloads = await cancelPhase(opts.cancelledDownloads, (c, n) => cancelledDownload(c, big[n % big.length]!), clients);
    return { seconds: opts.seconds, latenciesMs, errors, errorSamples, idle, samples, afterLoad, uploads, downloads };
  } finally {
    for (const c of clients) c.close();
  }

  /** One caller's closed loop over its own keys; what it knows of them is exact. */
  async function caller(client: FileStorageClient, prefix: string, deadline: bigint): Promise<void> {
    const known = new Map<string, { size: number; crc: number }>();
    const keyAt = (j: number) => `${prefix}k${String(j).padStart(2, "0")}`;
    const anyKnown = () => [...known.keys()][Math.floor(Math.random() * known.size)]!;
    while (process.hrtime.bigint() < deadline) {
      let op = pickOperation();
      if (op !== "store" && op !== "list" && known.size === 0) op = "store";
      const t0 = process.hrtime.bigint();
      try {
        switch (op) {
          case "store": {
            const key = keyAt(Math.floor(Math.random() * KEYS_PER_CLIENT));
            const data = makeObject();
            const info = await client.store(key, data);
            if (Number(info.size) !== data.length) throw new Error(`store answered size ${info.size} for ${data.length} bytes`);
            known.set(key, { size: data.length, crc: crc32c(data) });
            break;
          }
          case "retrieve": {
            const key = anyKnown();
            const got = (await client.retrieve(key)) as Buffer | null;
            const want = known.get(key)!;
            if (got === null || got.length !== want.size || crc32c(got) !== want.crc) throw new Error(`retrieve of ${key}: wrong bytes`);
            break;
          }
          case "stat": {
            const key = anyKnown();
            const info = await client.stat(key);
            if (info === null || Number(info.size) !== known.get(key)!.size) throw new Error(`stat of ${key}: wrong size`);
            break;
          }
          case "list": {
            const page = await client.listKeys({ prefix });
            const want = [...known.keys()].sort();
            if (page.keys.join("\n") !== want.join("\n")) throw new Error(`list of ${prefix}: ${page.keys.length} keys, expected ${want.length}`);
            break;
          }
          case "delete": {
            const key = anyKnown();
            if (!(await client.delete(key))) throw new Error(`delete of ${key}: not found`);
            known.delete(key);
            break;
          }
        }
        latenciesMs[op].push(msSince(t0));
      } catch (err) {
        fail(`${op}: ${(err as Error).message}`);
      }
    }
  }

  function pickOperation(): Operation {
    let r = Math.random();
    for (const op of OPERATIONS) {
      r -= WEIGHTS[op];
      if (r < 0) return op;
    }
    return "store";
  }

  /** minBytes..maxBytes, log-uniform; 30% compressible. A fresh buffer, as a caller's would be. */
  function makeObject(): Buffer {
    const size = Math.round(minBytes * Math.pow(maxBytes / minBytes, Math.random()));
    if (Math.random() < 0.3) return Buffer.alloc(size, "soak text ");
    const at = Math.floor(Math.random() * (pool.length - size));
    return Buffer.from(pool.subarray(at, at + size));
  }

  /** Objects the cancelled downloads open: 8 MiB each, so a download is cut well before its end. */
  async function prepareDownloads(client: FileStorageClient): Promise<string[]> {
    const keys = ["soak/big/0", "soak/big/1", "soak/big/2", "soak/big/3"];
    for (const key of keys) await client.upload(key, [randomBytes(8 * MiB)]);
    return keys;
  }

  /** `count` calls, CANCEL_CONCURRENCY at a time over the clients; usage before and after, once quiet. */
  async function cancelPhase(count: number, one: (c: FileStorageClient, n: number) => Promise<boolean>, over: FileStorageClient[]): Promise<CancelPhase> {
    const before = await reading();
    let next = 0;
    let phaseErrors = 0;
    const lane = async (l: number) => {
      while (next < count) {
        const n = next++;
        if (!(await one(over[(l + n) % over.length]!, n))) phaseErrors++;
      }
    };
    await Promise.all(Array.from({ length: CANCEL_CONCURRENCY }, (_, l) => lane(l)));
    const after = await reading();
    errors += phaseErrors;
    if (phaseErrors > 0 && errorSamples.length < 20) errorSamples.push(`${phaseErrors} of ${count} cancelled calls did not end cancelled`);
    return { count, errors: phaseErrors, before, after };
  }

  /** A StoreStream cancelled after 1 MiB of an announced 8 MiB; true when it ended cancelled. */
  async function cancelledUpload(client: FileStorageClient, n: number): Promise<boolean> {
    const ac = new AbortController();
    const piece = pool.subarray(0, 256 * KiB);
    async function* source(): AsyncGenerator<Uint8Array> {
      for (let i = 0; i < 32; i++) yield piece;
    }
    let cancelling = false;
    const outcome = client
      .upload(`soak/cancelled/${n % 64}`, source(), {
        size: 8 * MiB,
        chunkSize: 256 * KiB,
        signal: ac.signal,
        onProgress: (sent) => {
          // Mid-stream: after some chunks were handed over, give the daemon a moment to take them.
          if (sent >= MiB && !cancelling) {
            cancelling = true;
            setTimeout(() => ac.abort(), 5);
          }
        },
      })
      .then(
        () => false,
        () => ac.signal.aborted,
      );
    return outcome;
  }

  /** A RetrieveStream destroyed after its first chunk; true when it ended before the object did. */
  async function cancelledDownload(client: FileStorageClient, key: string): Promise<boolean> {
    try {
      const { stream } = await client.download(key);
      let received = 0;
      for await (const chunk of stream) {
        received += (chunk as Buffer).length;
        break; // leaving the loop destroys the stream, which cancels the call
      }
      return received > 0 && received < 8 * MiB;
    } catch {
      return false;
    }
  }

  /**
   * The daemon once quiet. JavaScript memory is the lowest of a few readings,
   * each after a burst of reads: garbage goes at a full collection, a leak
   * stays in all of them.
   */
  async function reading(): Promise<Reading> {
    await new Promise((r) => setTimeout(r, opts.quietMs ?? 2000));
    if (opts.metricsPort === undefined) return { ...usageOf(opts.pid), jsBytes: NaN };
    let jsBytes = Infinity;
    for (let i = 0; i < SETTLE_ROUNDS; i++) {
      for (let j = 0; j < SETTLE_READS; j++) await clients[0]!.retrieve("soak/settle");
      await new Promise((r) => setTimeout(r, 200));
      jsBytes = Math.min(jsBytes, await jsMemoryOf(opts.metricsPort));
    }
    return { ...usageOf(opts.pid), jsBytes };
  }
}

/** One pass/fail line of a soak, with the numbers it was decided on. */
export interface Verdict {
  name: string;
  ok: boolean;
  detail: string;
}

/** Descriptors a quiet daemon may hold beyond its earlier quiet level (lazily opened handles). */
export const FD_SLACK = 2;
/** RSS may grow this much during the load once warmed up (the cache and heap settle). */
export const rssSlack = (level: number) => Math.max(32 * MiB, 0.1 * level);
/** JavaScript memory (heap + external) a settled daemon may hold beyond an earlier settled level. */
export const jsSlack = (level: number) => Math.max(16 * MiB, 0.1 * level);

/**
 * The soak's verdicts: no errors; RSS and descriptors flat during the load
 * (median of the last `windowMs` vs the window after `warmupMs`, which the
 * bench puts at half the run: RSS ramps up for about a minute while the cache
 * fills and V8 sizes its heap; descriptors move with the files of calls in
 * flight, hence a slack of 8 + 10%);
 * descriptors back at their quiet level after the load and after each cancel
 * phase, and the memory JavaScript holds back at its level before each phase.
 * RSS after a phase is shown, not judged: glibc keeps memory that was freed.
 * No temp file may be left by the cancelled uploads.
 */
export function soakVerdicts(r: SoakResult, opts: { warmupMs: number; windowMs: number }): Verdict[] {
  const mb = (b: number) => `${(b / MiB).toFixed(0)} MiB`;
  const rss = flatness(r.samples, "rssBytes", { ...opts, allowed: rssSlack });
  const fds = flatness(r.samples, "fds", { ...opts, allowed: (early) => 8 + 0.1 * early });
  const fdsBack = (name: string, before: Usage, after: Usage): Verdict => ({
    name: `${name}: descriptors back`,
    ok: after.fds <= before.fds + FD_SLACK,
    detail: `${before.fds} -> ${after.fds} (allowed +${FD_SLACK})`,
  });
  const memoryBack = (name: string, p: CancelPhase): Verdict => ({
    name: `${name}: memory back`,
    ok: p.after.jsBytes <= p.before.jsBytes + jsSlack(p.before.jsBytes),
    detail:
      `heap+external ${mb(p.before.jsBytes)} -> ${mb(p.after.jsBytes)} (allowed +${mb(jsSlack(p.before.jsBytes))}); ` +
      `RSS ${mb(p.before.rssBytes)} -> ${mb(p.after.rssBytes)}`,
  });
  const back = (name: string, p: CancelPhase): Verdict[] =>
    Number.isNaN(p.before.jsBytes) ? [fdsBack(name, p.before, p.after)] : [fdsBack(name, p.before, p.after), memoryBack(name, p)];
  return [
    { name: "no errors", ok: r.errors === 0, detail: `${r.errors} errors${r.errorSamples.length ? `: ${r.errorSamples.slice(0, 3).join("; ")}` : ""}` },
    {
      name: "load: RSS flat",
      ok: rss.flat,
      detail: `start ${mb(rss.start)}, early ${mb(rss.early)}, max ${mb(rss.max)}, end ${mb(rss.end)} (growth ${mb(rss.growth)}, allowed ${mb(rss.allowed)})`,
    },
    {
      name: "load: descriptors flat",
      ok: fds.flat,
      detail: `start ${fds.start}, early ${fds.early}, max ${fds.max}, end ${fds.end} (growth ${fds.growth}, allowed ${fds.allowed.toFixed(0)})`,
    },
    fdsBack("after the load", r.idle, r.afterLoad),
    ...back(`${r.uploads.count} cancelled uploads`, r.uploads),
    {
      name: `${r.uploads.count} cancelled uploads: all cancelled, no temp file left`,
      ok: r.uploads.errors === 0 && r.uploads.tmpFilesAfter === 0,
      detail: `${r.uploads.errors} not cancelled, ${r.uploads.tmpFilesAfter} files in tmp/`,
    },
    ...back(`${r.downloads.count} cancelled downloads`, r.downloads),
    { name: `${r.downloads.count} cancelled downloads: all cut short`, ok: r.downloads.errors === 0, detail: `${r.downloads.errors} not cut short` },
  ];
}
