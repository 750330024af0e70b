/**
 * Concurrency: BENCH_STREAMS (default 4) concurrent streams of BENCH_MIB
 * (default 1024) MiB each way, each from its own client (connection), to the
 * daemon's local tier on its defaults and to the bare grpc-js echo server in
 * the same run; aggregate MiB/s, the ratio and the daemon's peak RSS (target
 * of issue 9: aggregate >= 0.8x of echo, peak RSS < 256 MiB). Then cache-hit
 * unary Retrieves of one 1 KiB object with BENCH_IN_FLIGHT (default 32) in
 * flight for BENCH_SECONDS (default 3) against the echo's unary Echo of 1 KiB
 * (target >= 0.8x). Runs are interleaved (BENCH_RUNS, default 2).
 *
 * Run:  npm run build && node dist/bench/concurrency.bench.js
 *       (or node dist/bench/run-all.js concurrency); BENCH_MIB=256 BENCH_STREAMS=8 ...
 */
import { randomBytes } from "node:crypto";
import * as path from "node:path";
import { FileStorageClient } from "../client/src/index.js";
import { spawnDaemon, type DaemonProcess } from "../test/kit/daemon-process.js";
import { makeTempDir } from "../test/kit/temp-dir.js";
import { KiB, machineLine, mallocTuningWanted, MiB, positiveInt, scratchRoot } from "./support/bench-settings.js";
import { runBench } from "./support/bench-run.js";
import { fixed, median, mib, printTable, ratio, secondsSince } from "./support/bench-report.js";
import { echoClient, startEchoServer, type EchoClient } from "./support/echo-server.js";
import { CHUNK, echoDown, echoUp, productDown, productUp } from "./support/stream-paths.js";

interface Target {
  name: string;
  server: DaemonProcess;
  up(streams: number, total: number): Promise<void>;
  down(streams: number, total: number): Promise<void>;
  /** One 1 KiB call (a cache-hit Retrieve, or an Echo). */
  small(): Promise<void>;
  upRates: number[];
  downRates: number[];
  smallRates: number[];
  peakRss: number;
}

async function main(): Promise<void> {
  const total = positiveInt("BENCH_MIB", 1024) * MiB;
  const streams = positiveInt("BENCH_STREAMS", 4);
  const runs = positiveInt("BENCH_RUNS", 2);
  const inFlight = positiveInt("BENCH_IN_FLIGHT", 32);
  const seconds = positiveInt("BENCH_SECONDS", 3);
  const block = randomBytes(CHUNK);
  const small = randomBytes(KiB);
  const dir = await makeTempDir("fs-bench-concurrency-", scratchRoot());

  const daemon = await spawnDaemon({ LOCAL_STORAGE_PATH: path.join(dir.path) }, { mallocTuning: mallocTuningWanted() });
  const clients = Array.from({ length: Math.max(streams, 1) }, () => new FileStorageClient(daemon.address));
  await clients[0]!.store("bench/small", small);
  const echo = await startEchoServer();
  const bare: EchoClient[] = Array.from({ length: streams }, () => echoClient(echo.address));
  const keyOf = (i: number) => `bench/concurrent-${i}.bin`;
  const targets: Target[] = [
    {
      name: "daemon local (defaults)",
      server: daemon,
      up: (n, t) => Promise.all(clients.slice(0, n).map((c, i) => productUp(c, block, t, keyOf(i)))).then(() => undefined),
      down: (n, t) => Promise.all(clients.slice(0, n).map((c, i) => productDown(c, t, keyOf(i)))).then(() => undefined),
      small: async () => {
        const got = await clients[0]!.retrieve<Buffer>("bench/small");
        if (got?.length !== small.length) throw new Error("the 1 KiB object came back wrong");
      },
      upRates: [],
      downRates: [],
      smallRates: [],
      peakRss: 0,
    },
    {
      name: "bare grpc-js echo",
      server: echo,
      up: (n, t) => Promise.all(bare.slice(0, n).map((c) => echoUp(c, block, t))).then(() => undefined),
      down: (n, t) => Promise.all(bare.slice(0, n).map((c) => echoDown(c, t))).then(() => undefined),
      small: () =>
        new Promise<void>((resolve, reject) => bare[0]!.echo(small, (err, res) => (err ? reject(err) : res?.length === small.length ? resolve() : reject(new Error("bad echo"))))),
      upRates: [],
      downRates: [],
      smallRates: [],
      peakRss: 0,
    },
  ];
  try {
    console.log(
      `concurrency: ${streams} concurrent streams x ${total / MiB} MiB each way (own connections, 1 MiB chunks, incompressible); ` +
        `1 KiB cache-hit Retrieve vs unary echo with ${inFlight} in flight for ${seconds} s; median of ${runs} interleaved runs`,
    );
    console.log(`machine: ${machineLine()}`);
    for (const t of targets) {
      await t.up(streams, 16 * MiB);
      await t.down(streams, 16 * MiB);
      await closedLoop(t.small, inFlight, 0.5);
    }
    for (let run = 0; run < runs; run++) {
      for (const t of run % 2 === 0 ? targets : [...targets].reverse()) {
        t.server.resetPeakRss();
        let started = process.hrtime.bigint();
        await t.up(streams, total);
        t.upRates.push((streams * total) / MiB / secondsSince(started));
        started = process.hrtime.bigint();
        await t.down(streams, total);
        t.downRates.push((streams * total) / MiB / secondsSince(started));
        t.peakRss = Math.max(t.peakRss, t.server.peakRss());
        t.smallRates.push(await closedLoop(t.small, inFlight, seconds));
      }
    }
    const [d, e] = targets as [Target, Target];
    const runsOf = (rates: number[]) => rates.map((r) => r.toFixed(0)).join("/");
    printTable(
      ["path", "aggregate up MiB/s", "aggregate down MiB/s", "up vs echo", "down vs echo", `1 KiB calls/s (${inFlight} in flight)`, "calls vs echo", "server peak RSS MiB", "up runs", "down runs", "calls runs"],
      targets.map((t) => [
        t.name,
        fixed(median(t.upRates)),
        fixed(median(t.downRates)),
        ratio(median(t.upRates), median(e.upRates)),
        ratio(median(t.downRates), median(e.downRates)),
        fixed(median(t.smallRates), 0),
        ratio(median(t.smallRates), median(e.smallRates)),
        mib(t.peakRss),
        runsOf(t.upRates),
        runsOf(t.downRates),
        runsOf(t.smallRates),
      ]),
    );
    console.log(
      `key ratios: ${streams} streams up ${ratio(median(d.upRates), median(e.upRates))} down ${ratio(median(d.downRates), median(e.downRates))} of echo (target >= 0.80x), ` +
        `daemon peak RSS ${mib(d.peakRss)} MiB (target < 256); 1 KiB cache hits ${ratio(median(d.smallRates), median(e.smallRates))} of echo (target >= 0.80x)`,
    );
  } finally {
    for (const c of clients) c.close();
    for (const c of bare) c.close();
    await daemon.stop();
    await echo.stop();
    await dir.cleanup();
  }
}

/** Calls per second of `call` kept `inFlight` deep for `seconds`. */
async function closedLoop(call: () => Promise<void>, inFlight: number, seconds: number): Promise<number> {
  const started = process.hrtime.bigint();
  const until = Date.now() + seconds * 1000;
  let done = 0;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (Date.now() < until) {
        await call();
        done++;
      }
    }),
  );
  return done / secondsSince(started);
}

runBench("concurrency", main, { mallocTuning: true });
