/**
 * Runs every benchmark in turn, each in its own process (so one bench's heap,
 * sockets and page cache habits do not colour the next), with the malloc
 * tuning `npm start` uses. Benches that need test tools (fake-gcs-server) get
 * them first from test/setup/install-tools.sh, the installer the tests use;
 * if it fails, those benches are reported failed and the others still run.
 * Stops at nothing else: a failing bench is reported and the rest still run;
 * the exit code is 1 if any failed. SIGINT or SIGTERM (Ctrl-C) goes to the
 * bench running, which stops its servers and removes its temp folders; then
 * this exits 130 without starting another.
 *
 * Run:  npm run bench                       (builds first, then runs all)
 *       node dist/bench/run-all.js stream gcs   (only those, by name)
 *       node dist/bench/run-all.js soak         (on request only: not part of "all";
 *                                               so are legacy and peers)
 * Settings pass through the environment (BENCH_RUNS, BENCH_MIB, ...; see each bench).
 */
import { spawn, type ChildProcess } from "node:child_process";
import * as path from "node:path";
import { repoRoot } from "../test/kit/repo-root.js";
import { machineLine, mallocEnv } from "./support/bench-settings.js";
import { INTERRUPTED_EXIT_CODE } from "./support/bench-run.js";

const BENCHES = ["stream", "concurrency", "resumable", "small-writes", "gcs", "disk-cache", "codec", "json-check"] as const;
/** Run only when named: long-running checks rather than measurements to compare. */
const ON_REQUEST = ["soak", "legacy", "peers"] as const;
/** Benches that run tools test/setup/install-tools.sh installs. */
const NEED_TOOLS: readonly string[] = ["gcs"];
/** How long an interrupted bench may take to clean up before it is killed. */
const CLEANUP_MS = 30_000;

let current: ChildProcess | undefined;
let interrupted = false;

function onSignal(signal: NodeJS.Signals): void {
  if (interrupted) return;
  interrupted = true;
  if (!current) process.exit(INTERRUPTED_EXIT_CODE);
  current.kill(signal);
  setTimeout(() => current?.kill("SIGKILL"), CLEANUP_MS).unref();
}

/** Runs `file args` with our stdout and stderr; resolves with its exit code (null for a signal). */
function run(file: string, args: string[], env: NodeJS.ProcessEnv): Promise<number | null> {
  return new Promise((resolve) => {
    const child = spawn(file, args, { stdio: "inherit", env });
    current = child;
    child.once("exit", (code, signal) => {
      current = undefined;
      resolve(signal ? null : code);
    });
    child.once("error", (err) => {
      console.error(`cannot run ${file}: ${err.message}`);
      current = undefined;
      resolve(null);
    });
  });
}

async function main(): Promise<void> {
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  const wanted = process.argv.slice(2);
  const known: readonly string[] = [...BENCHES, ...ON_REQUEST];
  const unknown = wanted.filter((w) => !known.includes(w));
  if (unknown.length > 0) throw new Error(`unknown bench ${unknown.join(", ")}; choose from ${known.join(", ")}`);
  const selected = wanted.length > 0 ? known.filter((b) => wanted.includes(b)) : [...BENCHES];
  console.log(`benchmarks ${selected.join(", ")} on ${new Date().toISOString()}`);
  console.log(`machine: ${machineLine()}`);
  const failed: string[] = [];

  let toolsReady = true;
  const needing = selected.filter((b) => NEED_TOOLS.includes(b));
  if (needing.length > 0) {
    const installer = path.join(repoRoot(), "test", "setup", "install-tools.sh");
    console.log(`\n## tools for ${needing.join(", ")}: bash ${path.relative(process.cwd(), installer)}\n`);
    const code = await run("bash", [installer], process.env);
    if (interrupted) process.exit(INTERRUPTED_EXIT_CODE);
    toolsReady = code === 0;
    if (!toolsReady) console.error(`install-tools.sh failed (${code ?? "a signal"}): skipping ${needing.join(", ")}`);
  }

  for (const name of selected) {
    if (!toolsReady && NEED_TOOLS.includes(name)) {
      failed.push(name);
      continue;
    }
    const script = path.join(__dirname, `${name}.bench.js`);
    console.log(`\n## ${name}: node ${path.relative(process.cwd(), script)}\n`);
    const code = await run(process.execPath, [script], { ...process.env, ...mallocEnv() });
    if (interrupted) process.exit(INTERRUPTED_EXIT_CODE);
    if (code !== 0) {
      console.log(`(${name} FAILED with ${code ?? "a signal"})`);
      failed.push(name);
    }
  }
  if (failed.length > 0) {
    console.error(`failed: ${failed.join(", ")}`);
    process.exitCode = 1;
  }
}

main().catch((err: unknown) => {
  console.error(`run-all: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
});
