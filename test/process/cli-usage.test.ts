/**
 * `filestorage usage [PREFIX]` as a real process against a daemon: one
 * summary line (or JSON) on stdout, exact, with human sizes; on a terminal
 * (a pseudo-terminal from util-linux `script`) a running count while the
 * daemon lists page by page; errors in the `filestorage: CODE: message` form.
 */
import { spawn } from "node:child_process";
import * as path from "node:path";
import { FileStorageClient } from "../../client/src/index.js";
import { startDaemon, type TestDaemon } from "../support/daemon.js";
import { startFakeGcs, type FakeGcs } from "../kit/fake-gcs.js";

const BIN = path.resolve(__dirname, "../../bin/filestorage.js");

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(file: string, args: string[], env: Record<string, string>): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (b: Buffer) => (stdout += b));
    child.stderr.on("data", (b: Buffer) => (stderr += b));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

const cli = (daemon: TestDaemon, args: string[]) => run(process.execPath, [BIN, ...args], { FILESTORAGE_ADDRESS: daemon.address });

let gcs: FakeGcs;
let local: TestDaemon;
let withGcs: TestDaemon;
beforeAll(async () => {
  gcs = await startFakeGcs();
  local = await startDaemon();
  withGcs = await startDaemon({ GCS_BUCKET_NAME: `fs-cli-usage-${process.pid}`, GCS_PROJECT_ID: "test", GCS_API_ENDPOINT: gcs.url });
  for (const d of [local, withGcs]) {
    const c = new FileStorageClient(d.address);
    await c.store("u/a", Buffer.alloc(1536, 1), { kind: "bytes" });
    for (let i = 0; i < 30; i++) await c.store(`u/many/${i}`, "x".repeat(10));
    await c.store("other", "not counted under u/");
    c.close();
  }
});
afterAll(async () => {
  await local?.stop();
  await withGcs?.stop();
  await gcs?.stop();
});

test("one exact line on stdout, with human sizes; --json for scripts", async () => {
  const r = await cli(local, ["usage", "u/"]);
  expect(r).toMatchObject({ code: 0, stderr: "" });
  expect(r.stdout).toMatch(/^u\/: 31 objects, 1\.8 KiB \(1836 bytes\), stored [\d.]+ (B|KiB) \(\d+ bytes\)\n$/);
  const all = await cli(local, ["usage"]);
  expect(all.stdout).toMatch(/^every key: 32 objects, /);
  const json = await cli(withGcs, ["usage", "u/", "--json", "--page-size", "7"]);
  expect(json.code).toBe(0);
  expect(JSON.parse(json.stdout)).toEqual({ prefix: "u/", objectCount: 31, totalBytes: 1836, storedBytes: expect.any(Number), fromIndex: false });
});

test("on a terminal it shows the running count as the daemon lists, then the summary", async () => {
  // script(1) gives the CLI a pseudo-terminal for stdin, stdout and stderr.
  const command = [process.execPath, BIN, "usage", "u/", "--page-size", "7"].map((a) => `'${a}'`).join(" ");
  const r = await run("script", ["-qec", command, "/dev/null"], { FILESTORAGE_ADDRESS: withGcs.address, TERM: "xterm" });
  expect(r.code).toBe(0);
  expect(r.stdout).toMatch(/usage u\/ \| 7 objects \| /);
  expect(r.stdout).toMatch(/usage u\/ \| 31 objects \| /);
  expect(r.stdout).toMatch(/u\/: 31 objects, 1\.8 KiB \(1836 bytes\)/);
});

test("errors in the CLI's one-line form", async () => {
  // INVALID_ARGUMENT exits 2, like usage errors (README "The CLI").
  const bad = await cli(local, ["usage", "bad\nprefix"]);
  expect(bad.code).toBe(2);
  expect(bad.stderr).toMatch(/^filestorage: INVALID_ARGUMENT: prefix .*\n$/);
  const page = await cli(local, ["usage", "--page-size", "0"]);
  expect(page.code).toBe(2);
  expect(page.stderr).toMatch(/^filestorage: INVALID_ARGUMENT: .*--page-size must be a whole number from 1 to 10000/);
});
