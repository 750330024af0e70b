/**
 * The `filestorage` client commands, run as a real process (node
 * bin/filestorage.js) against a daemon on 127.0.0.1:0. Processes are spawned
 * asynchronously: the daemon runs in this process and must keep serving.
 */
import { execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { FileStorageClient } from "../../client/src/index.js";
import { startDaemon, type TestDaemon } from "../support/daemon.js";
import { startFakeGcs, type FakeGcs } from "../kit/fake-gcs.js";
import { startProxy, type TcpProxy } from "../kit/tcp-proxy.js";
import { makeTempDir, type TempDir } from "../kit/temp-dir.js";

const BIN = path.resolve(__dirname, "../../bin/filestorage.js");
/** Another user than the test's (root), for permission errors root would not meet. */
const NOBODY = { uid: 65534, gid: 65534 };

const shellQuote = (arg: string) => `'${arg.replaceAll("'", `'\\''`)}'`;

/**
 * Runs the CLI with a pseudo-terminal as stdin, stdout and stderr (script(1)
 * from util-linux); what it wrote to the terminal comes back with "\r\n" line ends.
 */
function onTerminal(args: string[], address: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const command = [process.execPath, BIN, ...args].map(shellQuote).join(" ");
    const child = spawn("script", ["-qec", command, "/dev/null"], {
      env: { ...process.env, FILESTORAGE_ADDRESS: address, COLUMNS: "120" },
      stdio: ["pipe", "pipe", "pipe"],
    });
    const out: Buffer[] = [];
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => out.push(b));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, output: Buffer.concat(out).toString("latin1") }));
    child.stdin.end();
  });
}

/** The ISO time of ls --long: UTC, to the second. */
const isoSeconds = (iso: string) => iso.replace(/\.\d{3}Z$/, "Z");

interface Run {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

describe("filestorage client commands", () => {
  let daemon: Awaited<ReturnType<typeof startDaemon>>;
  let tmp: TempDir;

  const run = (args: string[], input?: Buffer | string, env: Record<string, string> = {}, user?: { uid: number; gid: number }): Promise<Run> =>
    new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [BIN, ...args], {
        env: { ...process.env, FILESTORAGE_ADDRESS: daemon.address, ...env },
        stdio: ["pipe", "pipe", "pipe"],
        ...user,
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

    // INVALID_ARGUMENT exits 2 like any usage error, whether the CLI or the daemon found it.
    const badKey = await run(["put", "../escape"], "x");
    expect(badKey.code).toBe(2);
    expect(badKey.stderr).toMatch(/^filestorage: upload id [^\n]*\nfilestorage: INVALID_ARGUMENT: [^\n]*\n$/);

    const badMetadata = await run(["put", "cli/m", "--metadata", "[1]"], "x");
    expect(badMetadata).toMatchObject({ code: 2, stderr: "filestorage: INVALID_ARGUMENT: --metadata must be a JSON object\n" });
  });

  it("names local file problems with the path as typed: missing, a folder, unreadable, unwritable, a full disk", async () => {
    const missing = path.join(tmp.path, "no-such.bin");
    expect(await run(["put", "cli/x", missing])).toMatchObject({ code: 2, stderr: `filestorage: NOT_FOUND: no such file ${missing}\n` });
    expect(await run(["put", "cli/x", tmp.path])).toMatchObject({ code: 2, stderr: `filestorage: INVALID_ARGUMENT: ${tmp.path} is a folder, not a file\n` });

    await run(["put", "cli/small"], "0123456789");
    const noFolder = path.join(tmp.path, "no-folder", "out.bin");
    expect(await run(["get", "cli/small", noFolder])).toMatchObject({
      code: 2,
      stderr: `filestorage: NOT_FOUND: cannot write ${noFolder}: its folder does not exist\n`,
    });
    expect(await run(["get", "cli/small", tmp.path])).toMatchObject({
      code: 2,
      stderr: `filestorage: INVALID_ARGUMENT: ${tmp.path} is a folder: name the file to write, e.g. ${path.join(tmp.path, "small")}\n`,
    });

    // Root reads and writes anything: these run as nobody.
    const shared = path.join(tmp.path, "shared");
    await fs.mkdir(shared, { mode: 0o755 });
    await fs.chmod(tmp.path, 0o755);
    const secret = path.join(shared, "secret.bin");
    await fs.writeFile(secret, "root only", { mode: 0o600 });
    expect(await run(["put", "cli/x", secret], undefined, {}, NOBODY)).toMatchObject({
      code: 1,
      stderr: `filestorage: PERMISSION_DENIED: permission denied reading ${secret}\n`,
    });
    const unwritable = path.join(shared, "out.bin");
    expect(await run(["get", "cli/small", unwritable], undefined, {}, NOBODY)).toMatchObject({
      code: 1,
      stderr: `filestorage: PERMISSION_DENIED: permission denied writing ${unwritable}\n`,
    });

    // A full disk: a 1 MiB tmpfs (root mounts it) and a 2 MiB object.
    const small = path.join(tmp.path, "small-disk");
    await fs.mkdir(small);
    try {
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", small], { stdio: "pipe" });
    } catch (err) {
      throw new Error(`this test mounts a small tmpfs and needs root (CI runs as root): ${(err as Error).message}`);
    }
    try {
      const big = path.join(tmp.path, "big.bin");
      await fs.writeFile(big, randomBytes(2 * 1024 * 1024));
      expect((await run(["put", "cli/big", big])).code).toBe(0);
      const target = path.join(small, "big.bin");
      expect(await run(["get", "cli/big", target])).toMatchObject({
        code: 1,
        stderr: `filestorage: RESOURCE_EXHAUSTED: no space left on the device writing ${target}\n`,
      });
    } finally {
      execFileSync("umount", [small]);
    }
  });

  it("says the daemon cannot be reached, naming the address", async () => {
    for (const args of [["stats"], ["get", "k"], ["ls"], ["flush"]]) {
      expect(await run([...args, "--address", "127.0.0.1:1"])).toMatchObject({
        code: 1,
        stdout: Buffer.alloc(0),
        stderr: "filestorage: UNAVAILABLE: cannot reach the daemon at 127.0.0.1:1 (is it running? --address)\n",
      });
    }
  });

  it("usage errors are one line and exit 2", async () => {
    const cases: [string[], string][] = [
      [["get", "k", "--bogus"], "unknown option '--bogus'"],
      [["bogus"], "unknown command 'bogus'"],
      [["put"], "missing required argument 'key'"],
      [["put", "k", "--kind", "xml"], "option '--kind <kind>' argument 'xml' is invalid. Allowed choices are bytes, text, json."],
      [["ls", "--page-size", "0"], "option '--page-size <n>' argument '0' is invalid. --page-size must be a whole number from 1 to 10000"],
      [["flush", "--timeout", "soon"], "option '--timeout <seconds>' argument 'soon' is invalid. --timeout must be a number of seconds above 0"],
      [["put", "k", "-", "--if-generation-match", "x"], '--if-generation-match must be a whole number, got "x"'],
      [["stats", "--tls-cert", "c.pem"], "--tls-cert and --tls-key go together: give both (mutual TLS) or neither"],
    ];
    for (const [args, message] of cases) {
      const result = await run(args, "");
      expect({ args, code: result.code, stderr: result.stderr }).toEqual({ args, code: 2, stderr: `filestorage: INVALID_ARGUMENT: ${message}\n` });
    }
    const noCa = path.join(tmp.path, "no-ca.pem");
    expect(await run(["stats", "--tls-ca", noCa])).toMatchObject({ code: 2, stderr: `filestorage: NOT_FOUND: no such file ${noCa} (--tls-ca)\n` });
  });

  it("get --resume over a damaged partial file starts over and writes the object", async () => {
    const data = randomBytes(1024 * 1024 + 5);
    const source = path.join(tmp.path, "resume-src.bin");
    await fs.writeFile(source, data);
    const info = JSON.parse((await run(["put", "cli/resume", source])).stdout.toString()) as { generation: string };
    const target = path.join(tmp.path, "resume-out.bin");
    const damaged = Buffer.from(data.subarray(0, 4096));
    damaged[7] ^= 0x55;
    await fs.writeFile(`${target}.g${info.generation}.partial`, damaged);
    expect(await run(["get", "cli/resume", target, "--resume"])).toMatchObject({ code: 0, stderr: "" });
    expect(Buffer.compare(await fs.readFile(target), data)).toBe(0);
    expect((await fs.readdir(tmp.path)).filter((n) => n.startsWith("resume-out.bin."))).toEqual([]);
  });

  it("ls --long prints a header and aligned columns: human sizes (or --bytes), generation, tier, pending, UTC time", async () => {
    await run(["put", "long/a"], "abcdef");
    const big = path.join(tmp.path, "long.bin");
    await fs.writeFile(big, randomBytes(1536 * 1024));
    await run(["put", "long/big", big]);
    await run(["put", "long/dir/inner"], "x");
    const stat = async (key: string) => JSON.parse((await run(["stat", key])).stdout.toString()) as { generation: string; updatedAt: string };
    const a = await stat("long/a");
    const b = await stat("long/big");
    const row = (size: string, sizeWidth: number, s: typeof a, key: string) =>
      `${size.padStart(sizeWidth)}  ${s.generation.padStart(16)}  local  no       ${isoSeconds(s.updatedAt)}  ${key}`;

    const long = await run(["ls", "long/", "--long", "--delimiter", "/"]);
    expect(long).toMatchObject({ code: 0, stderr: "" });
    expect(long.stdout.toString()).toBe(
      [
        "    SIZE        GENERATION  TIER   PENDING  UPDATED               KEY",
        row("6 B", 8, a, "long/a"),
        row("1.5 MiB", 8, b, "long/big"),
        "       -                 -  -      -        -                     long/dir/",
        "",
      ].join("\n"),
    );
    const bytes = await run(["ls", "long/", "--long", "--bytes"]);
    expect(bytes.stdout.toString().split("\n")).toEqual([
      "         SIZE        GENERATION  TIER   PENDING  UPDATED               KEY",
      row("6", 13, a, "long/a"),
      row("1572864", 13, b, "long/big"),
      row("1", 13, await stat("long/dir/inner"), "long/dir/inner"),
      "",
    ]);
  });

  it("get KEY on a terminal refuses bytes that are not text, unless --force; text and files pass", async () => {
    const client = new FileStorageClient(daemon.address);
    try {
      await client.store("tty/binary", Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0xff, 0xfe]));
      await client.store("tty/utf8-bytes", Buffer.from("plain words as bytes\n"));
      await client.store("tty/text", "héllo text\n");
    } finally {
      client.close();
    }
    const refused = await onTerminal(["get", "tty/binary"], daemon.address);
    expect(refused).toEqual({
      code: 1,
      output:
        'filestorage: FAILED_PRECONDITION: "tty/binary" is binary (11 bytes of kind bytes) and stdout is a terminal: ' +
        "write it to a file with `filestorage get tty/binary FILE` or `> FILE`, or pass --force to print it anyway\r\n",
    });
    const forced = await onTerminal(["get", "tty/binary", "--force"], daemon.address);
    expect(forced.code).toBe(0);
    expect(forced.output).toContain("PNG");
    expect(await onTerminal(["get", "tty/utf8-bytes"], daemon.address)).toEqual({ code: 0, output: "plain words as bytes\r\n" });
    expect((await onTerminal(["get", "tty/text"], daemon.address)).code).toBe(0);
    const file = path.join(tmp.path, "tty.bin");
    expect((await onTerminal(["get", "tty/binary", file], daemon.address)).code).toBe(0);
    expect((await fs.readFile(file)).length).toBe(11);
    // Piped, bytes flow as they are.
    expect((await run(["get", "tty/binary"])).stdout.length).toBe(11);
  });

  it("flush on a daemon without GCS is FAILED_PRECONDITION", async () => {
    expect(await run(["flush"])).toMatchObject({
      code: 1,
      stderr: "filestorage: FAILED_PRECONDITION: this daemon has no GCS tier (GCS_BUCKET_NAME is unset): it keeps no replication backlog, there is nothing to flush\n",
    });
  });
});

describe("filestorage against a daemon on GCS", () => {
  let gcs: FakeGcs;
  let proxy: TcpProxy;
  let daemon: TestDaemon;
  let client: FileStorageClient;

  const run = (args: string[]): Promise<Run> =>
    new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, FILESTORAGE_ADDRESS: daemon.address }, stdio: ["ignore", "pipe", "pipe"] });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout.on("data", (b: Buffer) => out.push(b));
      child.stderr.on("data", (b: Buffer) => err.push(b));
      child.on("error", reject);
      child.on("close", (code) => resolve({ code, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString() }));
    });

  beforeAll(async () => {
    gcs = await startFakeGcs();
    proxy = await startProxy(gcs.port);
    // Replication happens only when asked: the schedule and the health check are an hour apart.
    daemon = await startDaemon({
      GCS_BUCKET_NAME: `fs-cli-${process.pid}`,
      GCS_PROJECT_ID: "test",
      GCS_API_ENDPOINT: proxy.url,
      MAX_RETRIES: "0",
      TIMEOUT_SECONDS: "2",
      GCS_BREAKER_RESET_SECONDS: "1",
      REPLICATION_INTERVAL_MS: "3600000",
      HEALTH_CHECK_SECONDS: "3600",
    });
    client = new FileStorageClient(daemon.address, { retries: 0 });
  });
  afterAll(async () => {
    client?.close();
    await daemon?.stop();
    await proxy?.close();
    await gcs?.stop();
  });

  it("ls --long marks writes waiting for replication; flush, piped, prints one summary line; then they are in GCS", async () => {
    proxy.cut();
    await client.store("pend/1", "one");
    await client.store("pend/2", "two");
    proxy.restore();
    const before = (await run(["ls", "pend/", "--long"])).stdout.toString().split("\n");
    expect(before.slice(1, 3).map((l) => l.slice(28, 43))).toEqual(["local  yes     ", "local  yes     "]);

    expect(await run(["flush"])).toEqual({ code: 0, stdout: Buffer.from("flush done: 2 writes replicated to GCS, 0 failed attempts retried, 0 pending\n"), stderr: "" });
    const after = (await run(["ls", "pend/", "--long"])).stdout.toString().split("\n");
    expect(after.slice(1, 3).map((l) => l.slice(28, 43))).toEqual(["gcs    no      ", "gcs    no      "]);
    expect((await client.getStats()).pendingReplication).toBe(0);
  });

  it("flush on a terminal shows a progress bar of writes", async () => {
    proxy.cut();
    await client.store("bar/1", "one");
    await client.store("bar/2", "two");
    proxy.restore();
    const shown = await onTerminal(["flush"], daemon.address);
    expect(shown.code).toBe(0);
    expect(shown.output).toMatch(/flush \[[^\]]+\] 2\/2 writes \| 0 pending, oldest 0 s \| 0 failed attempts/);
    expect(shown.output).toContain("flush done: 2 writes replicated to GCS, 0 failed attempts retried, 0 pending\r\n");
  });

  it("flush while GCS is down fails UNAVAILABLE naming GCS and what is left", async () => {
    proxy.cut();
    try {
      await client.store("down/1", "one");
      const result = await run(["flush"]);
      expect(result.code).toBe(1);
      expect(result.stdout.length).toBe(0);
      expect(result.stderr).toMatch(/^filestorage: UNAVAILABLE: GCS is unreachable: 1 write still pending \(oldest \d+ s\); they replicate on their own once GCS answers, or flush again\n$/);
    } finally {
      proxy.restore();
    }
  });
});
