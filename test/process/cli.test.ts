/**
 * The `filestorage` client commands, run as a real process (node
 * bin/filestorage.js) against a daemon on 127.0.0.1:0. Processes are spawned
 * asynchronously: the daemon runs in this process and must keep serving.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { FileStorageClient } from "../../client/src/index.js";
import { startDaemon } from "../support/daemon.js";
import { makeTempDir, type TempDir } from "../kit/temp-dir.js";

const BIN = path.resolve(__dirname, "../../bin/filestorage.js");

interface Run {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

describe("filestorage client commands", () => {
  let daemon: Awaited<ReturnType<typeof startDaemon>>;
  let tmp: TempDir;

  const run = (args: string[], input?: Buffer | string, env: Record<string, string> = {}): Promise<Run> =>
    new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [BIN, ...args], {
        env: { ...process.env, FILESTORAGE_ADDRESS: daemon.address, ...env },
        stdio: ["pipe", "pipe", "pipe"],
      });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout.on("data", (b: Buffer) => out.push(b));
      child.stderr.on("data", (b: Buffer) => err.push(b));
      child.on("error", reject);
      child.on("close", (code) => resolve({ code, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString() }));
      child.stdin.end(input);
    });

  beforeAll(async () => {
    daemon = await startDaemon();
    tmp = await makeTempDir("filestorage-cli-");
  });

  afterAll(async () => {
    await daemon?.stop();
    await tmp?.cleanup();
  });

  it("puts a file and gets it back into a file, quietly when not on a terminal", async () => {
    const source = path.join(tmp.path, "in.bin");
    const data = randomBytes(3 * 1024 * 1024 + 11);
    await fs.writeFile(source, data);
    const put = await run(["put", "cli/file.bin", source]);
    expect(put.code).toBe(0);
    // put is resumable: its upload id is the one line it prints on stderr.
    expect(put.stderr).toMatch(/^filestorage: upload id [A-Za-z0-9_-]{22} \(if interrupted, continue it with: put "cli\/file.bin" ".*in.bin" --resume-id [A-Za-z0-9_-]{22}\)\n$/);
    const info = JSON.parse(put.stdout.toString()) as Record<string, unknown>;
    expect(info).toMatchObject({ key: "cli/file.bin", kind: "bytes", size: data.length });
    expect(typeof info.generation).toBe("string");

    const target = path.join(tmp.path, "out.bin");
    const get = await run(["get", "cli/file.bin", target]);
    expect(get).toMatchObject({ code: 0, stderr: "" });
    expect(Buffer.compare(await fs.readFile(target), data)).toBe(0);
  });

  it("puts stdin and gets to stdout, with kind, content type and metadata", async () => {
    const put = await run(
      ["put", "cli/notes.txt", "-", "--kind", "text", "--content-type", "text/plain", "--metadata", '{"tags":["a"]}'],
      "héllo\n",
    );
    expect(put.code).toBe(0);
    expect(JSON.parse(put.stdout.toString())).toMatchObject({
      kind: "text",
      contentType: "text/plain",
      metadata: { tags: ["a"] },
    });
    const get = await run(["get", "cli/notes.txt"]);
    expect(get.code).toBe(0);
    expect(get.stdout.toString()).toBe("héllo\n");

    const absent = await run(["put", "cli/json"], '{"a":1}');
    expect(absent.code).toBe(0);
    expect((await run(["get", "cli/json", "-"])).stdout.toString()).toBe('{"a":1}');
  });

  it("prints stat and stats as JSON", async () => {
    await run(["put", "cli/stat-me"], "x");
    const stat = await run(["stat", "cli/stat-me"]);
    expect(stat.code).toBe(0);
    expect(JSON.parse(stat.stdout.toString())).toMatchObject({ key: "cli/stat-me", size: 1, kind: "bytes" });
    const stats = await run(["stats"]);
    expect(stats.code).toBe(0);
    expect(JSON.parse(stats.stdout.toString())).toMatchObject({ initialized: true });
  });

  it("lists every page, long and rolled up by a delimiter", async () => {
    const keys = Array.from({ length: 12 }, (_, i) => `ls/k${String(i).padStart(2, "0")}`);
    // Seeded in-process: a process per key would only make the test slow.
    const client = new FileStorageClient(daemon.address);
    try {
      for (const key of [...keys, "ls/dir/inner"]) await client.store(key, key);
    } finally {
      client.close();
    }

    const plain = await run(["ls", "ls/k", "--page-size", "5"]);
    expect(plain.stdout.toString().trim().split("\n")).toEqual(keys);

    const rolled = await run(["ls", "ls/", "--delimiter", "/", "--page-size", "4"]);
    expect(rolled.stdout.toString().trim().split("\n")).toEqual(["ls/dir/", ...keys]);

    const long = await run(["ls", "ls/k0", "--long"]);
    const first = long.stdout.toString().split("\n")[0].split("\t");
    expect(first).toHaveLength(5);
    expect(first[0]).toBe("6"); // size of "ls/k00"
    expect(first[2]).toMatch(/^(local|gcs)$/);
    expect(first[4]).toBe("ls/k00");
  });

  it("removes keys, exiting 2 when one was missing", async () => {
    await run(["put", "rm/a"], "a");
    await run(["put", "rm/b"], "b");
    expect((await run(["rm", "rm/a", "rm/b"])).code).toBe(0);
    const again = await run(["rm", "rm/a"]);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/^filestorage: NOT_FOUND: .*rm\/a/);
    expect((await run(["ls", "rm/"])).stdout.toString()).toBe("");
  });

  it("reports errors as one line with the status name", async () => {
    const missing = await run(["get", "cli/none"]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/^filestorage: NOT_FOUND: [^\n]*\n$/);
    expect((await run(["stat", "cli/none"])).code).toBe(2);

    const badKey = await run(["put", "../escape"], "x");
    expect(badKey.code).toBe(1);
    expect(badKey.stderr).toMatch(/^filestorage: upload id [^\n]*\nfilestorage: INVALID_ARGUMENT: [^\n]*\n$/);

    const badMetadata = await run(["put", "cli/m", "--metadata", "[1]"], "x");
    expect(badMetadata.code).toBe(1);
    expect(badMetadata.stderr).toMatch(/^filestorage: INVALID_ARGUMENT: --metadata/);

    const down = await run(["stats", "--address", "127.0.0.1:1"]);
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/^filestorage: UNAVAILABLE: /);
  });
});
