/**
 * The Go client (clients/go) against a real daemon: `go vet` and `gofmt`
 * are clean, its `go test` suite passes (client tests, the shared client
 * scenario, and TLS/auth tests against daemons it starts itself from dist/),
 * `go run ./cmd/scenario` passes, and so does the same scenario from the
 * shell through grpcurl and server reflection
 * (test/polyglot/scenario-grpcurl.sh). FILESTORAGE_ADDRESS points them all at
 * one daemon in this process.
 *
 * The Go toolchain runs offline (GOPROXY=off): test/setup/install-tools.sh
 * downloads and builds the module's dependencies once per go.sum.
 */
import * as path from "node:path";
import { startDaemon, type TestDaemon } from "../support/daemon.js";
import { describeRun, runTool, type ToolRun } from "../support/run-tool.js";

const ROOT = path.resolve(__dirname, "../..");
const MODULE = path.join(ROOT, "clients/go");
const MODULE_PATH = "github.com/filestorage/filestorage/clients/go";

let daemon: TestDaemon;

beforeAll(async () => {
  daemon = await startDaemon();
});

afterAll(async () => {
  await daemon?.stop();
});

function goEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    ...process.env,
    FILESTORAGE_ADDRESS: daemon.address,
    GOFLAGS: "-mod=mod -buildvcs=false",
    GOPROXY: "off",
    GOTOOLCHAIN: "local",
    ...extra,
  };
}

async function go(args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<ToolRun> {
  const r = await runTool("go", args, { cwd: MODULE, env, timeoutMs });
  if (r.code !== 0) {
    const hint = /GOPROXY=off|missing go.sum entry|cannot find module/.test(r.stderr)
      ? "\n(the module cache lacks a dependency: run `bash test/setup/install-tools.sh`)"
      : "";
    throw new Error(describeRun(`go ${args.join(" ")}`, r) + hint);
  }
  return r;
}

test("go vet and gofmt find nothing", async () => {
  await go(["vet", "./..."], goEnv(), 120_000);
  const fmt = await runTool("gofmt", ["-l", "."], { cwd: MODULE });
  if (fmt.code !== 0) throw new Error(describeRun("gofmt -l .", fmt));
  expect(fmt.stdout.trim().split("\n").filter(Boolean)).toEqual([]);
}, 150_000);

test("go test passes: the client's tests, the shared scenario and TLS/auth", async () => {
  const r = await go(["test", "-count=1", "-timeout=120s", "-v", "./..."], goEnv({ SCENARIO_PREFIX: `go/${process.pid}/` }), 150_000);
  // Each group ran, rather than being compiled away or skipped.
  for (const name of ["TestScenario", "TestTLSAndAuthentication", "TestUploadAndDownloadStreamWithChecks", "TestReceiveCheckFindsWrongBytesAndCounts"]) {
    expect(r.stdout).toMatch(new RegExp(`^--- PASS: ${name} `, "m"));
  }
  expect(r.stdout).not.toMatch(/^--- (FAIL|SKIP)/m);
  expect(r.stdout).toMatch(new RegExp(`^ok\\s+${MODULE_PATH.replace(/\./g, "\\.")}\\s`, "m"));
  expect(r.stdout).toMatch(/scenario: step 10 \(stats\) held/);
}, 180_000);

test("go run ./cmd/scenario passes against the daemon", async () => {
  const r = await go(["run", "./cmd/scenario"], goEnv({ SCENARIO_PREFIX: `go-cmd/${process.pid}/` }), 120_000);
  expect(r.stdout).toMatch(/scenario: every step held/);
});

test("the shared scenario passes through grpcurl and reflection alone", async () => {
  const r = await runTool("bash", [path.join(ROOT, "test/polyglot/scenario-grpcurl.sh")], {
    env: { ...process.env, FILESTORAGE_ADDRESS: daemon.address, SCENARIO_PREFIX: `grpcurl/${process.pid}/` },
    timeoutMs: 90_000,
  });
  if (r.code !== 0) throw new Error(describeRun("scenario-grpcurl.sh", r));
  expect(r.stdout.trim().split("\n")).toEqual([
    ...Array.from({ length: 10 }, (_, i) => expect.stringMatching(new RegExp(`^scenario-grpcurl: step ${i + 1} .* held$`))),
    "scenario-grpcurl: every step held",
  ]);
}, 120_000);
