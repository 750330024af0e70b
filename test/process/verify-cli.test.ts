/**
 * `filestorage verify [PREFIX]` as a real process (node bin/filestorage.js,
 * the built dist/) against a daemon on 127.0.0.1:0 whose local tier has a
 * corrupt blob and an orphaned file: one line per finding on stdout, a
 * summary line, exit code 3 when a copy is corrupt (0 otherwise), --repair,
 * and a progress bar when run on a terminal (a pty from util-linux
 * `script`).
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { FileStorageClient } from "../../client/src/index.js";
import { startDaemon, type TestDaemon } from "../support/daemon.js";
import { flipFileByte, localBlobFile, localRow, plantOrphanBlob } from "../support/stored-copies.js";

const BIN = path.resolve(__dirname, "../../bin/filestorage.js");

let daemon: TestDaemon;
let orphan: string;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, FILESTORAGE_ADDRESS: daemon.address }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
    child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

beforeAll(async () => {
  if (!fs.existsSync(path.resolve(__dirname, "../../dist/server/cli/main.js"))) throw new Error("dist/ is missing: run `npm run build` first");
  daemon = await startDaemon({ ENABLE_CACHE: "false" });
  const client = new FileStorageClient(daemon.address);
  await client.store("v/good", randomBytes(100 * 1024));
  await client.store("v/bad", randomBytes(200 * 1024));
  client.close();
  flipFileByte(localBlobFile(daemon.storagePath, localRow(daemon.storagePath, "v/bad")!.blob!), 1000);
  orphan = plantOrphanBlob(daemon.storagePath, 10 * 60_000);
});
afterAll(async () => {
  await daemon?.stop();
});

test("one line per finding, a summary, exit code 3 when something is corrupt", async () => {
  const out = await run(["verify"]);
  expect(out.stderr).toBe("");
  const lines = out.stdout.trimEnd().split("\n");
  expect(lines).toEqual([
    'corrupt local "v/bad" generation ' + String(localRow(daemon.storagePath, "v/bad")!.generation) + ": its bytes fail their CRC32C",
    `orphan local: blob file ${orphan} is named by no object`,
    expect.stringMatching(/^checked 2 copies \(0\.3 MiB\) in \d+\.\d s: 1 corrupt, 1 orphaned, 0 unchecked, 0 repaired$/),
  ]);
  expect(out.code).toBe(3);
});

test("a prefix with nothing corrupt under it exits 0", async () => {
  const out = await run(["verify", "v/g"]);
  expect(out.stdout).toMatch(/^checked 1 copies .*: 0 corrupt, 0 orphaned, 0 unchecked, 0 repaired\n$/);
  expect(out.code).toBe(0);
});

test("--gcs on a daemon without GCS is FAILED_PRECONDITION naming it, not a check of nothing", async () => {
  const out = await run(["verify", "--gcs"]);
  expect(out).toMatchObject({ code: 1, stdout: "" });
  expect(out.stderr).toBe("filestorage: FAILED_PRECONDITION: this daemon has no GCS tier (GCS_BUCKET_NAME is unset): include_gcs has nothing to check\n");
});

test("--repair removes the orphan (the corrupt copy has no good copy elsewhere and stays)", async () => {
  const out = await run(["verify", "--repair"]);
  expect(out.stdout).toContain(`orphan local: blob file ${orphan} is named by no object (repaired: removed)`);
  expect(out.code).toBe(3);
  expect(fs.existsSync(localBlobFile(daemon.storagePath, orphan))).toBe(false);
});

test("on a terminal it shows a progress bar and still one line per finding", async () => {
  // util-linux `script` runs the command on a pseudo-terminal (stdout and stderr both).
  const command = [process.execPath, BIN, "verify"].map((a) => `'${a}'`).join(" ");
  const out = await new Promise<Run>((resolve, reject) => {
    const child = spawn("script", ["-qfec", command, "/dev/null"], { env: { ...process.env, FILESTORAGE_ADDRESS: daemon.address }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr: "" }));
  });
  expect(out.stdout).toMatch(/verify (local|disk-cache) \[/);
  expect(out.stdout).toContain('corrupt local "v/bad"');
  expect(out.code).toBe(3);
});
