/**
 * Runs every benchmark in turn, each in its own process (so one bench's heap,
 * sockets and page cache habits do not colour the next), with the malloc
 * tuning `npm start` uses. Stops at nothing: a failing bench is reported and
 * the rest still run; the exit code is 1 if any failed.
 *
 * Run:  npm run bench                       (builds first, then runs all)
 *       node dist/bench/run-all.js stream gcs   (only those, by name)
 *       node dist/bench/run-all.js soak         (on request only: not part of "all")
 * Settings pass through the environment (BENCH_RUNS, BENCH_MIB, ...; see each bench).
 */
import { spawn } from "node:child_process";
import * as path from "node:path";
import { machineLine, mallocEnv } from "./support/bench-settings.js";
import { secondsSince } from "./support/bench-report.js";

const BENCHES = ["stream", "small-writes", "gcs", "disk-cache", "codec", "json-check"] as const;
/** Run only when named: long-running checks rather than measurements to compare. */
const ON_REQUEST = ["soak"] as const;

async function main(): Promise<void> {
  const wanted = process.argv.slice(2);
  const known: readonly string[] = [...BENCHES, ...ON_REQUEST];
  const unknown = wanted.filter((w) => !known.includes(w));
  if (unknown.length > 0) throw new Error(`unknown bench ${unknown.join(", ")}; choose from ${known.join(", ")}`);
  const selected = wanted.length > 0 ? known.filter((b) => wanted.includes(b)) : [...BENCHES];
  console.log(`benchmarks ${selected.join(", ")} on ${new Date().toISOString()}`);
  console.log(`machine: ${machineLine()}`);
  const failed: string[] = [];
  for (const name of selected) {
    const script = path.join(__dirname, `${name}.bench.js`);
    console.log(`\n## ${name}: node ${path.relative(process.cwd(), script)}\n`);
    const started = process.hrtime.bigint();
    const code = await new Promise<number | null>((resolve) => {
      const child = spawn(process.execPath, [script], { stdio: "inherit", env: { ...process.env, ...mallocEnv() } });
      child.once("exit", (c, signal) => resolve(signal ? null : c));
      child.once("error", () => resolve(null));
    });
    console.log(`\n(${name} took ${secondsSince(started).toFixed(0)} s${code === 0 ? "" : `, FAILED with ${code ?? "a signal"}`})`);
    if (code !== 0) failed.push(name);
  }
  if (failed.length > 0) {
    console.error(`failed: ${failed.join(", ")}`);
    process.exitCode = 1;
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
