/**
 * README "Backup and restore", done as written: the backup and restore
 * blocks are taken out of README.md (the fenced blocks after their
 * `<!-- backup: ... -->` / `<!-- restore: ... -->` markers) and run with
 * bash. A folder copied with its daemon stopped restores into a daemon that
 * serves every object as it was. A copy taken while the daemon runs (SQLite's
 * online backup of the index, then the blobs) does not match, in the two ways
 * the README says: blobs written after the index copy are orphans the
 * restored daemon removes at start-up, and a key whose blob was unlinked
 * between the copies fails with ABORTED. Spawned daemons: `npm run build` first.
 */
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import Database from "better-sqlite3";
import { status } from "@grpc/grpc-js";
import { FileStorageClient, FileStorageError, type ObjectInfo } from "../../client/src/index.js";
import { spawnDaemon, type DaemonProcess } from "../kit/daemon-process.js";
import { repoRoot } from "../kit/repo-root.js";
import { makeTempDir, type TempDir } from "../kit/temp-dir.js";
import { describeRun, runTool } from "../support/run-tool.js";

const readme = fs.readFileSync(path.join(repoRoot(), "README.md"), "utf8");

/** The fenced block right after the `<!-- name: ... -->` marker. */
function readmeBlock(name: string): string {
  const m = new RegExp(`<!-- ${name}: [^>]*-->\\n\`\`\`sh\\n([\\s\\S]*?)\`\`\``).exec(readme);
  if (!m) throw new Error(`README.md has no "${name}" block`);
  return m[1]!;
}

async function runBlock(name: string, env: Record<string, string>): Promise<void> {
  const r = await runTool("bash", ["-euo", "pipefail", "-c", readmeBlock(name)], { env: { PATH: process.env.PATH ?? "", ...env } });
  if (r.code !== 0) throw new Error(describeRun(`README ${name} block`, r));
}

/** The blob files of a storage folder. */
function blobFiles(folder: string): string[] {
  const blobs = path.join(folder, "blobs");
  return fs.readdirSync(blobs).flatMap((shard) => fs.readdirSync(path.join(blobs, shard)));
}

async function stopped(daemon: DaemonProcess): Promise<void> {
  expect(await daemon.kill("SIGTERM")).toEqual({ code: 0, signal: null });
}

let tmp: TempDir;
const daemons: DaemonProcess[] = [];
const clients: FileStorageClient[] = [];
beforeEach(async () => {
  tmp = await makeTempDir("fs-backup-");
});
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  for (const d of daemons.splice(0)) await d.stop();
  await tmp.cleanup();
});

async function daemonOn(folder: string): Promise<FileStorageClient> {
  const daemon = await spawnDaemon({ LOCAL_STORAGE_PATH: folder });
  daemons.push(daemon);
  const client = new FileStorageClient(daemon.address);
  clients.push(client);
  return client;
}

test("a folder copied with the daemon stopped restores, and a daemon on it serves every object as it was", async () => {
  const original = path.join(tmp.path, "original");
  const client = await daemonOn(original);
  const bytes: Record<string, Buffer> = {
    "small/bytes": randomBytes(1000),
    "large/unary": randomBytes(300 * 1024),
    "large/stream": randomBytes(5 * 1024 * 1024 + 3),
    "over/written": randomBytes(200 * 1024),
  };
  await client.store("small/text", "héllo", { metadata: { a: 1 } });
  await client.store("small/json", { x: [1, 2] }, { metadata: { tags: ["t"] } });
  await client.store("small/bytes", bytes["small/bytes"]!, { contentType: "application/x-test" });
  await client.store("large/unary", bytes["large/unary"]!);
  await client.upload("large/stream", [bytes["large/stream"]!], { size: bytes["large/stream"]!.length });
  await client.store("over/written", randomBytes(200 * 1024));
  await client.store("over/written", bytes["over/written"]!);
  await client.store("gone", randomBytes(100 * 1024));
  await client.delete("gone");
  const keys = ["large/stream", "large/unary", "over/written", "small/bytes", "small/json", "small/text"];
  const before = new Map<string, ObjectInfo>();
  for (const key of keys) before.set(key, (await client.stat(key))!);
  expect(blobFiles(original).length).toBe(3);
  await stopped(daemons.pop()!);

  const restored = path.join(tmp.path, "restored");
  await runBlock("backup", { LOCAL_STORAGE_PATH: original, BACKUP: path.join(tmp.path, "backup.tgz") });
  await runBlock("restore", { RESTORE: restored, BACKUP: path.join(tmp.path, "backup.tgz") });

  const back = await daemonOn(restored);
  const listed: string[] = [];
  for await (const key of back.iterateKeys()) listed.push(key);
  expect(listed).toEqual(keys);
  for (const key of keys) {
    const { updatedAt: _u, createdAt: _c, ...info } = (await back.stat(key))!;
    const { updatedAt: _u0, createdAt: _c0, ...was } = before.get(key)!;
    expect(info).toEqual(was);
  }
  expect(await back.retrieve("small/text")).toBe("héllo");
  expect(await back.retrieve("small/json")).toEqual({ x: [1, 2] });
  for (const [key, data] of Object.entries(bytes)) {
    const { stream } = await back.download(key);
    const parts: Buffer[] = [];
    for await (const chunk of stream) parts.push(chunk as Buffer);
    expect(Buffer.concat(parts).equals(data)).toBe(true);
  }
  expect(await back.stat("gone")).toBeNull();
  await stopped(daemons.pop()!);
  const index = new Database(path.join(restored, "index.sqlite"), { readonly: true });
  expect(index.pragma("integrity_check", { simple: true })).toBe("ok");
  index.close();
}, 120_000);

test("a copy taken while the daemon runs does not match: orphans are removed at start-up, a blob unlinked meanwhile fails ABORTED", async () => {
  const original = path.join(tmp.path, "original");
  const client = await daemonOn(original);
  const keep = randomBytes(200 * 1024);
  await client.store("keep", keep);
  await client.store("replaced", randomBytes(200 * 1024));

  // SQLite's online backup of the index while the daemon serves, then writes, then the blobs.
  const copy = path.join(tmp.path, "copy");
  fs.mkdirSync(copy, { mode: 0o700 });
  const live = new Database(path.join(original, "index.sqlite"), { readonly: true, fileMustExist: true });
  await live.backup(path.join(copy, "index.sqlite"));
  live.close();
  await client.store("replaced", randomBytes(200 * 1024));
  await client.store("later", randomBytes(200 * 1024));
  fs.cpSync(path.join(original, "blobs"), path.join(copy, "blobs"), { recursive: true });
  await stopped(daemons.pop()!);
  // Copied: keep's blob and the two written after the index copy; replaced's old blob was unlinked.
  const copied = blobFiles(copy);
  expect(copied).toHaveLength(3);

  const back = await daemonOn(copy);
  // The two blobs the index copy does not name are gone after start-up.
  expect(blobFiles(copy)).toHaveLength(1);
  expect(Buffer.from((await back.retrieve<Buffer>("keep"))!).equals(keep)).toBe(true);
  expect(await back.stat("later")).toBeNull();
  const err = await back.retrieve("replaced").then(() => undefined, (e: unknown) => e);
  expect(FileStorageError.is(err, status.ABORTED)).toBe(true);
}, 120_000);
