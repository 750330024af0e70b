/**
 * TLS and mutual TLS through the real gRPC server, with certificates made by
 * openssl (test/support/certs.ts): the client package and the CLI connect
 * with a CA, a client certificate and a server name; the daemon refuses
 * clients without a certificate or with one from another CA; a client_cn
 * entry grants its rights and prefixes; a bearer token, when sent, wins.
 */
import { spawn } from "node:child_process";
import * as path from "node:path";
import { FileStorageClient, type TlsOptions } from "../../client/src/index.js";
import { makePki, type TestPki } from "../support/certs.js";
import { startDaemon, type TestDaemon } from "../support/daemon.js";
import { codeOf, failure } from "../support/expect-failure.js";
import { makeTempDir, type TempDir } from "../kit/temp-dir.js";
import { ALL_RIGHTS, tokenEntry, writeTokenFile } from "../support/tokens.js";

const ADMIN_TOKEN = "secret-admin-token-0b7e";

let tmp: TempDir;
let pki: TestPki;
const clients: FileStorageClient[] = [];

function connect(address: string, tls: TlsOptions, token?: string): FileStorageClient {
  const c = new FileStorageClient(address, { tls, token, retries: 0, deadlineMs: 10_000 });
  clients.push(c);
  return c;
}

beforeAll(async () => {
  tmp = await makeTempDir("fs-tls-");
  pki = makePki(tmp.path);
});

afterAll(async () => {
  clients.forEach((c) => c.close());
  await tmp?.cleanup();
});

describe("mutual TLS with client_cn entries", () => {
  let daemon: TestDaemon;
  const withCert = (cn: string, token?: string) =>
    connect(daemon.address, { rootCerts: pki.ca.cert, certChain: pki.client(cn).cert, privateKey: pki.client(cn).key }, token);

  beforeAll(async () => {
    const tokens = writeTokenFile(tmp.path, "tokens.json", [
      { name: "ci-runner", client_cn: "ci.internal", prefixes: ["ci/"], rights: ["read", "write", "list"] },
      { name: "ops", client_cn: "ops.internal", prefixes: [""], rights: ALL_RIGHTS },
      tokenEntry("admin", ADMIN_TOKEN, [""], ["admin"]),
    ]);
    daemon = await startDaemon({
      TLS_CERT_FILE: pki.server.certFile,
      TLS_KEY_FILE: pki.server.keyFile,
      TLS_CLIENT_CA_FILE: pki.ca.certFile,
      AUTH_TOKENS_FILE: tokens,
    });
  });
  afterAll(() => daemon?.stop());

  test("a verified certificate's common name carries its entry's rights and prefixes, no token needed", async () => {
    const ci = withCert("ci.internal");
    await ci.store("ci/build-1", "log");
    expect(await ci.retrieve("ci/build-1")).toBe("log");
    expect((await ci.listKeys({ prefix: "ci/" })).keys).toEqual(["ci/build-1"]);

    const outside = await failure(ci.store("prod/x", "x"));
    expect([outside.codeName, outside.details]).toEqual([
      "PERMISSION_DENIED",
      'key "prod/x" is outside the prefixes of client certificate "ci-runner"',
    ]);
    const noDelete = await failure(ci.delete("ci/build-1"));
    expect([noDelete.codeName, noDelete.details]).toEqual(["PERMISSION_DENIED", 'client certificate "ci-runner" lacks the "delete" right']);

    const ops = withCert("ops.internal");
    expect(await ops.delete("ci/build-1")).toBe(true);
    expect((await ops.getStats()).initialized).toBe(true);
  });

  test("a certificate whose common name has no entry is UNAUTHENTICATED", async () => {
    const err = await failure(withCert("stranger.internal").stat("ci/x"));
    expect([err.codeName, err.details]).toEqual(["UNAUTHENTICATED", 'the client certificate "stranger.internal" has no entry in the tokens file']);
  });

  test("with a certificate and a bearer token, the token's entry decides", async () => {
    // The ci certificate cannot GetStats; the admin token can, and it has no other right.
    const both = withCert("ci.internal", ADMIN_TOKEN);
    expect((await both.getStats()).initialized).toBe(true);
    const err = await failure(both.store("ci/with-token", "x"));
    expect([err.codeName, err.details]).toEqual(["PERMISSION_DENIED", 'token "admin" lacks the "write" right']);
    // An unknown token is refused, even with a good certificate.
    expect(await codeOf(withCert("ops.internal", "not-a-token").stat("ci/x"))).toBe("UNAUTHENTICATED");
  });

  test("a client without a certificate cannot connect", async () => {
    const c = connect(daemon.address, { rootCerts: pki.ca.cert }, ADMIN_TOKEN);
    expect(await codeOf(c.getStats())).toBe("UNAVAILABLE");
  });

  test("a certificate from another CA is refused at the handshake", async () => {
    const foreign = pki.foreignClient("ops.internal");
    const c = connect(daemon.address, { rootCerts: pki.ca.cert, certChain: foreign.cert, privateKey: foreign.key }, ADMIN_TOKEN);
    expect(await codeOf(c.getStats())).toBe("UNAVAILABLE");
  });

  test("the CLI connects with --tls-ca, --tls-cert and --tls-key", async () => {
    const ci = pki.client("ci.internal");
    // A host name, not 127.0.0.1: grpc-js sends an IP as the TLS server name, which makes Node
    // print a deprecation warning (DEP0123, grpc/grpc-node#1919) on stderr.
    const base = ["--address", `localhost:${daemon.server.port}`, "--tls-ca", pki.ca.certFile];
    const put = await runCli([...base, "--tls-cert", ci.certFile, "--tls-key", ci.keyFile, "put", "ci/cli.txt", "-"], "from the cli");
    // put is resumable: its one stderr line is the upload id to continue it with.
    expect(put).toMatchObject({ code: 0, stderr: expect.stringMatching(/^filestorage: upload id \S+ \(if interrupted, [^\n]*\)\n$/) });
    const get = await runCli([...base, "--tls-cert", ci.certFile, "--tls-key", ci.keyFile, "get", "ci/cli.txt"]);
    expect(get).toMatchObject({ code: 0, stdout: "from the cli" });
    const noCert = await runCli([...base, "stat", "ci/cli.txt"]);
    expect(noCert.code).toBe(1);
    expect(noCert.stderr).toMatch(/^filestorage: UNAVAILABLE: /);
    const half = await runCli([...base, "--tls-cert", ci.certFile, "stat", "ci/cli.txt"]);
    expect(half).toMatchObject({ code: 2, stderr: "filestorage: INVALID_ARGUMENT: --tls-cert and --tls-key go together: give both (mutual TLS) or neither\n" });
  });
});

describe("mutual TLS without a tokens file", () => {
  test("every certificate of the client CA is let in with every right; others are refused", async () => {
    const daemon = await startDaemon({
      TLS_CERT_FILE: pki.server.certFile,
      TLS_KEY_FILE: pki.server.keyFile,
      TLS_CLIENT_CA_FILE: pki.ca.certFile,
    });
    try {
      const any = pki.client("anyone.internal");
      const c = connect(daemon.address, { rootCerts: pki.ca.cert, certChain: any.cert, privateKey: any.key });
      await c.store("x/1", "v");
      expect((await c.getStats()).initialized).toBe(true);
      const foreign = pki.foreignClient("anyone.internal");
      expect(await codeOf(connect(daemon.address, { rootCerts: pki.ca.cert, certChain: foreign.cert, privateKey: foreign.key }).stat("x/1"))).toBe(
        "UNAVAILABLE",
      );
    } finally {
      await daemon.stop();
    }
  });
});

describe("server TLS", () => {
  let daemon: TestDaemon;
  beforeAll(async () => {
    const tokens = writeTokenFile(tmp.path, "server-tls-tokens.json", [tokenEntry("admin", ADMIN_TOKEN, [""], ALL_RIGHTS)]);
    daemon = await startDaemon({ TLS_CERT_FILE: pki.server.certFile, TLS_KEY_FILE: pki.server.keyFile, AUTH_TOKENS_FILE: tokens });
  });
  afterAll(() => daemon?.stop());

  test("the client verifies the server against its roots, by address or by serverNameOverride", async () => {
    const port = daemon.address.slice(daemon.address.lastIndexOf(":") + 1);
    await connect(daemon.address, { rootCerts: pki.ca.cert }, ADMIN_TOKEN).store("s/1", "v");
    expect(await connect(`localhost:${port}`, { rootCerts: pki.ca.cert }, ADMIN_TOKEN).retrieve("s/1")).toBe("v");
    // The override replaces the name checked against the certificate (and sent as SNI).
    expect(await connect(daemon.address, { rootCerts: pki.ca.cert, serverNameOverride: "localhost" }, ADMIN_TOKEN).retrieve("s/1")).toBe("v");
    const wrongName = connect(daemon.address, { rootCerts: pki.ca.cert, serverNameOverride: "elsewhere.example" }, ADMIN_TOKEN);
    expect(await codeOf(wrongName.retrieve("s/1"))).toBe("UNAVAILABLE");
  });

  test("a server certificate from a CA the client does not trust is refused", async () => {
    const other = pki.foreignClient("localhost");
    expect(await codeOf(connect(daemon.address, { rootCerts: other.cert }, ADMIN_TOKEN).stat("s/1"))).toBe("UNAVAILABLE");
  });

  test("a plaintext client cannot talk to a TLS daemon", async () => {
    const plain = new FileStorageClient(daemon.address, { token: ADMIN_TOKEN, retries: 0, deadlineMs: 5000 });
    clients.push(plain);
    expect(await codeOf(plain.stat("s/1"))).toBe("UNAVAILABLE");
  });

  test("a client key without its certificate (or the reverse) is a RangeError", () => {
    const ci = pki.client("ci.internal");
    expect(() => new FileStorageClient(daemon.address, { tls: { privateKey: ci.key } })).toThrow(
      new RangeError("FileStorageClient option tls: privateKey and certChain go together (mutual TLS)"),
    );
    expect(() => new FileStorageClient(daemon.address, { tls: { certChain: ci.cert } })).toThrow(RangeError);
  });
});

const BIN = path.resolve(__dirname, "../../bin/filestorage.js");

function runCli(args: string[], input?: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { PATH: process.env.PATH }, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
    child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input);
  });
}
