/**
 * Access control in the real daemon process (dist/, `npm run build` first):
 * SIGHUP reloads AUTH_TOKENS_FILE (a good file takes effect, a bad one keeps
 * the old entries and the log says why), and start-up refuses an empty or
 * bad tokens file and an insecure public listen address, with one line.
 */
import { spawnSync } from "node:child_process";
import { FileStorageClient } from "../../client/src/index.js";
import { BIN, spawnDaemon, type DaemonProcess } from "../kit/daemon-process.js";
import { codeOf } from "../support/expect-failure.js";
import { makeTempDir, type TempDir } from "../kit/temp-dir.js";
import { tokenEntry, writeTokenFile } from "../support/tokens.js";

const token = (name: string) => `secret-${name}-91d2c7aa`;

let tmp: TempDir;
const clients: FileStorageClient[] = [];

function client(address: string, bearer?: string): FileStorageClient {
  const c = new FileStorageClient(address, { token: bearer, retries: 0 });
  clients.push(c);
  return c;
}

/** Parsed JSON log lines the daemon wrote so far. */
function logs(d: DaemonProcess): { level: number; msg: string; reason?: string; entries?: number }[] {
  return d
    .stdout()
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as { level: number; msg: string; reason?: string; entries?: number });
}

/** Waits until the daemon has logged `count` lines with message `msg`. */
async function untilLogged(d: DaemonProcess, msg: string, count: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (logs(d).filter((l) => l.msg === msg).length < count) {
    if (Date.now() > deadline) throw new Error(`no ${count}x "${msg}" in the daemon's log:\n${d.stdout()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Runs `filestorage serve` to its end (it must refuse to start). */
function serve(env: Record<string, string>) {
  const r = spawnSync(process.execPath, [BIN, "serve"], {
    env: { PATH: process.env.PATH, LOCAL_STORAGE_PATH: tmp.path, METRICS_PORT: "0", ...env },
    encoding: "utf8",
    timeout: 20_000,
  });
  return { status: r.status, lines: r.stderr.trim().split("\n"), stderr: r.stderr, stdout: r.stdout };
}

beforeAll(async () => {
  tmp = await makeTempDir("fs-auth-process-");
});
afterAll(async () => {
  clients.forEach((c) => c.close());
  await tmp?.cleanup();
});

describe("SIGHUP", () => {
  test("reloads the tokens file: a good file takes effect, a bad one keeps the old entries and logs why", async () => {
    const file = writeTokenFile(tmp.path, "hup.json", [tokenEntry("first", token("first"), [""], ["read", "write"])]);
    const d = await spawnDaemon({ AUTH_TOKENS_FILE: file, LOCAL_STORAGE_PATH: `${tmp.path}/hup-store` });
    try {
      const first = client(d.address, token("first"));
      const second = client(d.address, token("second"));
      await first.store("h/1", "x");
      expect(await codeOf(second.store("h/2", "x"))).toBe("UNAUTHENTICATED");

      writeTokenFile(tmp.path, "hup.json", [tokenEntry("second", token("second"), ["h/"], ["read", "write"])]);
      d.child.kill("SIGHUP");
      await untilLogged(d, "AUTH_TOKENS_FILE reloaded", 1);
      await second.store("h/2", "x");
      expect(await codeOf(first.store("h/3", "x"))).toBe("UNAUTHENTICATED");

      writeTokenFile(tmp.path, "hup.json", [{ name: "typo", sha256: "abc", prefixes: [""], rights: ["read"] }]);
      d.child.kill("SIGHUP");
      await untilLogged(d, "tokens not reloaded: keeping the ones loaded before", 1);
      writeTokenFile(tmp.path, "hup.json", "[]");
      d.child.kill("SIGHUP");
      await untilLogged(d, "tokens not reloaded: keeping the ones loaded before", 2);

      const failures = logs(d).filter((l) => l.msg.startsWith("tokens not reloaded"));
      expect(failures.map((l) => [l.level, l.reason])).toEqual([
        [50, `invalid AUTH_TOKENS_FILE="${file}": entry 0 ("typo"), field "sha256": ${expectedSha256Words}`],
        [50, `invalid AUTH_TOKENS_FILE="${file}": it holds no entries; an empty file would turn authentication off: add entries, or unset AUTH_TOKENS_FILE to run without authentication`],
      ]);
      // Still serving, with the last good file.
      expect(await second.retrieve("h/2")).toBe("x");
      expect(await codeOf(first.retrieve("h/1"))).toBe("UNAUTHENTICATED");
      expect(d.stdout()).not.toContain(token("first"));
      expect(d.stdout()).not.toContain(token("second"));
    } finally {
      expect((await d.kill()).code).toBe(0);
    }
  });

  test("without a tokens file it is logged and the daemon keeps serving", async () => {
    const d = await spawnDaemon({ LOCAL_STORAGE_PATH: `${tmp.path}/hup-none` });
    try {
      d.child.kill("SIGHUP");
      await untilLogged(d, "tokens not reloaded", 1);
      await client(d.address).store("k", "v");
    } finally {
      expect((await d.kill()).code).toBe(0);
    }
  });
});

const expectedSha256Words =
  'expected 64 hex digits: the SHA-256 of the token (e.g. `printf %s "$TOKEN" | sha256sum`), never the token itself';

describe("start-up refuses, with one line", () => {
  test.each([
    ["an empty list", "[]"],
    ["an empty object", "{}"],
  ])("a tokens file holding %s", (_name, content) => {
    const file = writeTokenFile(tmp.path, "empty.json", content);
    const r = serve({ AUTH_TOKENS_FILE: file });
    expect(r.status).toBe(2);
    expect(r.lines).toEqual([`filestorage: invalid AUTH_TOKENS_FILE="${file}": it holds no entries; an empty file would turn authentication off: add entries, or unset AUTH_TOKENS_FILE to run without authentication`]);
  });

  test("a bad tokens file, naming the file, the entry and the field, never the token", () => {
    const file = writeTokenFile(tmp.path, "bad.json", [
      tokenEntry("ok", token("ok"), [""], ["read"]),
      { name: "ci", sha256: token("pasted"), prefixes: ["ci/"], rights: ["read"] },
    ]);
    const r = serve({ AUTH_TOKENS_FILE: file });
    expect(r.status).toBe(2);
    expect(r.lines).toEqual([`filestorage: invalid AUTH_TOKENS_FILE="${file}": entry 1 ("ci"), field "sha256": ${expectedSha256Words}`]);
    const legacy = writeTokenFile(tmp.path, "bad-legacy.json", { [token("old")]: "not-a-list" });
    const old = serve({ AUTH_TOKENS_FILE: legacy });
    expect(old.status).toBe(2);
    expect(old.lines).toHaveLength(1);
    expect(old.stderr + old.stdout).not.toContain(token("old"));
  });

  test.each<[Record<string, string>, string]>([
    [{ LISTEN_ADDRESS: "0.0.0.0:0" }, "LISTEN_ADDRESS=0.0.0.0:0 is not a loopback address and would be served without TLS and authentication"],
    [{ LISTEN_ADDRESS: "[::]:0" }, "LISTEN_ADDRESS=[::]:0 is not a loopback address and would be served without TLS and authentication"],
    [{ LISTEN_ADDRESS: "0.0.0.0:0", AUTH_TOKENS_FILE: "tokens" }, "LISTEN_ADDRESS=0.0.0.0:0 is not a loopback address and would be served without TLS"],
  ])("an insecure public listen address: %j", (env, message) => {
    const tokens = writeTokenFile(tmp.path, "listen.json", [tokenEntry("x", token("x"), [""], ["read"])]);
    const r = serve({ ...env, ...(env.AUTH_TOKENS_FILE ? { AUTH_TOKENS_FILE: tokens } : {}) });
    expect(r.status).toBe(2);
    expect(r.lines).toEqual([`filestorage: ${message}: set TLS_CERT_FILE/TLS_KEY_FILE and AUTH_TOKENS_FILE, or ALLOW_INSECURE=true`]);
  });

  test("ALLOW_INSECURE=true serves the public address, with a warning", async () => {
    const d = await spawnDaemon({ LISTEN_ADDRESS: "0.0.0.0:0", ALLOW_INSECURE: "true", LOCAL_STORAGE_PATH: `${tmp.path}/insecure` });
    try {
      expect(d.address).toMatch(/^0\.0\.0\.0:\d+$/);
      const port = d.address.slice(d.address.lastIndexOf(":") + 1);
      await client(`127.0.0.1:${port}`).store("k", "v");
      const warning = logs(d).find((l) => l.msg.startsWith("ALLOW_INSECURE=true"));
      expect(warning).toMatchObject({ level: 40, msg: "ALLOW_INSECURE=true: serving a non-loopback address without TLS and authentication" });
    } finally {
      expect((await d.kill()).code).toBe(0);
    }
  });
});
