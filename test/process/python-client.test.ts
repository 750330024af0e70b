/**
 * The Python client (clients/python, `filestorage_client`) as a Python service
 * gets it: `pip install ./clients/python` into a fresh venv (offline, from the
 * pinned wheelhouse test/setup/install-tools.sh fills, so the resolver proves
 * the package needs nothing but grpcio and protobuf), then its own pytest suite
 * and the shared conformance scenario (clients/SCENARIO.md) against a real
 * daemon child process. The pytest suite starts a few daemons of its own (TLS,
 * tokens, limits, restarts) from the built dist/.
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { spawnDaemon, type DaemonProcess } from "../kit/daemon-process.js";
import { makeTempDir, type TempDir } from "../kit/temp-dir.js";

const ROOT = path.resolve(__dirname, "../..");
const TOOLS_PYTHON = path.join(ROOT, ".test-tools/venv/bin/python");
const WHEELS = path.join(ROOT, ".test-tools/python-wheels");

interface RunResult {
  code: number | null;
  output: string;
  timedOut: boolean;
}

/** Runs a command asynchronously, stdout and stderr together; never rejects on a non-zero exit. */
function run(file: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs: number }): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { cwd: opts.cwd ?? ROOT, env: opts.env ?? process.env, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    let timedOut = false;
    child.stdout.setEncoding("utf8").on("data", (s: string) => (output += s));
    child.stderr.setEncoding("utf8").on("data", (s: string) => (output += s));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, opts.timeoutMs);
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${file}: ${err.message} (test/setup/install-tools.sh installs the Python tools)`));
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, output, timedOut });
    });
  });
}

function report(what: string, r: RunResult): string {
  return `${what} ${r.timedOut ? "timed out" : `exited ${r.code}`}:\n${r.output}`;
}

async function runOk(what: string, file: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs: number }): Promise<RunResult> {
  const r = await run(file, args, opts);
  if (r.code !== 0) throw new Error(report(what, r));
  return r;
}

let tmp: TempDir;
let daemon: DaemonProcess;
let python: string;

beforeAll(async () => {
  tmp = await makeTempDir("fs-pyclient-");
  daemon = await spawnDaemon({ LOCAL_STORAGE_PATH: path.join(tmp.path, "storage") }, { mallocTuning: true });
  // A copy, so pip's in-tree build (build/, *.egg-info) never lands in the checkout.
  const pkg = path.join(tmp.path, "pkg");
  await fs.cp(path.join(ROOT, "clients/python"), pkg, {
    recursive: true,
    filter: (src) => !/(^|\/)(build|__pycache__|\.pytest_cache|[^/]*\.egg-info)$/.test(src),
  });
  const venv = path.join(tmp.path, "venv");
  python = path.join(venv, "bin/python");
  await runOk("python -m venv", TOOLS_PYTHON, ["-m", "venv", "--without-pip", venv], { timeoutMs: 60_000 });
  const pip = ["-m", "pip", "--python", python, "install", "--quiet", "--disable-pip-version-check", "--no-index", "--find-links", WHEELS];
  await runOk("pip install ./clients/python[crc32c,gcs] pytest pytest-asyncio", TOOLS_PYTHON, [...pip, `${pkg}[crc32c,gcs]`, "pytest", "pytest-asyncio", "aiofiles"], {
    timeoutMs: 120_000,
  });
  await runOk("pip install --no-deps aiecs (the old component)", TOOLS_PYTHON, [...pip, "--no-deps", "aiecs"], { timeoutMs: 60_000 });
}, 240_000);

afterAll(async () => {
  await daemon?.kill();
  await tmp?.cleanup();
});

test("pip installs filestorage-client with grpcio and protobuf as its only dependencies", async () => {
  const r = await runOk("pip show", python, ["-c", "import importlib.metadata as m; print('\\n'.join(m.requires('filestorage-client')))"], {
    timeoutMs: 30_000,
  });
  const plain = r.output.split("\n").filter((line) => line && !line.includes("extra =="));
  expect(plain.map((line) => line.split(/[<>=!~ ;]/)[0]).sort()).toEqual(["grpcio", "protobuf"]);
});

test("the Python client's pytest suite passes against the daemon", async () => {
  const env = { ...process.env, FILESTORAGE_ADDRESS: daemon.address, PYTHONDONTWRITEBYTECODE: "1" };
  const r = await run(python, ["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], {
    cwd: path.join(ROOT, "clients/python"),
    env,
    timeoutMs: 150_000,
  });
  if (r.code !== 0) throw new Error(report("pytest clients/python/tests", r));
  expect(r.output).toMatch(/\d+ passed/);
}, 180_000);

test("the shared conformance scenario passes from Python", async () => {
  const env = { ...process.env, FILESTORAGE_ADDRESS: daemon.address, SCENARIO_PREFIX: `py/${process.pid}/` };
  const r = await runOk("python -m filestorage_client.scenario", python, ["-m", "filestorage_client.scenario"], { env, timeoutMs: 60_000 });
  expect(r.output).toContain("scenario: all 10 steps held");
}, 90_000);
