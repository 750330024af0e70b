/**
 * Access control through the real gRPC server (AUTH_TOKENS_FILE): every
 * right against every RPC, prefixes on keys and on listings, missing and
 * unknown tokens, the older file form with its warning, reloads, and the
 * services that stay open (health, reflection).
 */
import * as grpc from "@grpc/grpc-js";
import { FileStorageClient, FileStorageError } from "../../client/src/index.js";
import { create } from "@bufbuild/protobuf";
import { FileStorageService, StatRequestSchema } from "../../gen/filestorage/v1/file_storage_pb.js";
import { createLogger } from "../../server/logger.js";
import { startDaemon, type TestDaemon } from "../support/daemon.js";
import { codeOf, failure } from "../support/expect-failure.js";
import { rawClient, unaryCall } from "../support/raw-client.js";
import { makeTempDir, type TempDir } from "../kit/temp-dir.js";
import { ALL_RIGHTS, tokenEntry, writeTokenFile, type RightName } from "../support/tokens.js";

const token = (name: string) => `secret-${name}-6f1c9a0d4e`;

let tmp: TempDir;
let daemon: TestDaemon;
const clients: FileStorageClient[] = [];
const logLines: string[] = [];

/** A client of the daemon sending `bearer` (none when undefined). */
function as(bearer: string | undefined, address = daemon.address): FileStorageClient {
  const c = new FileStorageClient(address, { token: bearer, retries: 0 });
  clients.push(c);
  return c;
}

beforeAll(async () => {
  tmp = await makeTempDir("fs-auth-");
  const file = writeTokenFile(tmp.path, "tokens.json", [
    ...ALL_RIGHTS.map((r) => tokenEntry(`only-${r}`, token(`only-${r}`), ["t/"], [r])),
    tokenEntry("root", token("root"), [""], ALL_RIGHTS),
    tokenEntry("tenant-a", token("tenant-a"), ["a/", "shared/x"], ["read", "write", "delete", "list"]),
  ]);
  daemon = await startDaemon(
    { AUTH_TOKENS_FILE: file, LOG_LEVEL: "debug" },
    { logger: createLogger("debug", { write: (l: string) => void logLines.push(l) }) },
  );
  const root = as(token("root"));
  for (const key of ["t/obj", "t/gone-1", "t/gone-2", "a/1", "a/2", "b/1", "shared/x1", "shared/y1"]) await root.store(key, `v:${key}`);
});

afterAll(async () => {
  clients.forEach((c) => c.close());
  await daemon?.stop();
  await tmp?.cleanup();
});

interface Case {
  right: RightName;
  /** Runs the RPC on keys under "t/"; resolves when the call succeeded. */
  run(c: FileStorageClient, n: number): Promise<unknown>;
}

/** One case per RPC of the service: a new RPC fails the table test until it gets a case (and a right). */
const cases: Record<string, Case> = {
  Store: { right: "write", run: (c, n) => c.store(`t/store-${n}`, "x") },
  StoreStream: { right: "write", run: (c, n) => c.upload(`t/stream-${n}`, [Buffer.from("streamed")]) },
  Retrieve: { right: "read", run: async (c) => expect(await c.retrieve("t/obj")).toBe("v:t/obj") },
  RetrieveStream: {
    right: "read",
    run: async (c) => {
      const { stream } = await c.download("t/obj");
      let text = "";
      for await (const chunk of stream) text += String(chunk);
      expect(text).toBe("v:t/obj");
    },
  },
  Stat: { right: "read", run: async (c) => expect((await c.stat("t/obj"))?.key).toBe("t/obj") },
  Exists: { right: "read", run: async (c) => expect(await c.exists("t/obj")).toBe(true) },
  Delete: { right: "delete", run: (c, n) => c.delete(`t/absent-${n}`) },
  DeleteMany: { right: "delete", run: (c, n) => c.deleteMany({ keys: [`t/absent-${n}`], prefix: `t/none-${n}/` }) },
  ListKeys: { right: "list", run: async (c) => expect((await c.listKeys({ prefix: "t/" })).keys).toContain("t/obj") },
  GetStats: { right: "admin", run: async (c) => expect((await c.getStats()).initialized).toBe(true) },
  GetUsage: { right: "admin", run: async (c) => expect((await c.getUsage("t/")).objectCount).toBeGreaterThan(0) },
  // This daemon has no GCS tier: an allowed Flush is FAILED_PRECONDITION (nothing to flush), never a denial.
  Flush: {
    right: "admin",
    run: (c) =>
      c.flush().then(
        () => Promise.reject(new Error("Flush of a local-only daemon succeeded")),
        (err: unknown) => (FileStorageError.is(err, grpc.status.FAILED_PRECONDITION) ? undefined : Promise.reject(err)),
      ),
  },
  QueryUpload: {
    right: "write",
    run: async (c, n) => {
      // An explicit upload id: the client asks QueryUpload first, then uploads, then the test asks again.
      await c.upload(`t/resumable-${n}`, [Buffer.from("resumable")], { uploadId: `auth-${n}` });
      expect((await c.queryUpload(`auth-${n}`))?.complete).toBe(true);
    },
  },
  Verify: {
    right: "admin",
    run: async (c) => {
      let summary;
      for await (const event of c.verify({ prefix: "t/" })) if (event.type === "summary") summary = event;
      expect(summary).toMatchObject({ corrupt: 0 });
    },
  },
};

describe("rights", () => {
  test("the table has a case for every RPC of the service", () => {
    expect(Object.keys(cases).sort()).toEqual(FileStorageService.methods.map((m) => m.name).sort());
  });

  test("every right against every RPC: allowed with the right, PERMISSION_DENIED naming it without", async () => {
    let n = 0;
    for (const [method, c] of Object.entries(cases)) {
      for (const right of ALL_RIGHTS) {
        const client = as(token(`only-${right}`));
        const call = c.run(client, n++);
        if (right === c.right) {
          await expect(call.then(() => "ok")).resolves.toBe("ok");
        } else {
          const err = await failure(call);
          expect({ method, right, code: err.codeName, details: err.details }).toEqual({
            method,
            right,
            code: "PERMISSION_DENIED",
            details: `token "only-${right}" lacks the "${c.right}" right`,
          });
        }
      }
    }
  });

  test("no token and an unknown token are UNAUTHENTICATED on every RPC, and the token is never echoed", async () => {
    let n = 1000;
    for (const [method, c] of Object.entries(cases)) {
      const missing = await failure(c.run(as(undefined), n++));
      expect({ method, code: missing.codeName, details: missing.details }).toEqual({
        method,
        code: "UNAUTHENTICATED",
        details: 'missing credentials: send "authorization: Bearer <token>"',
      });
      const unknown = await failure(c.run(as("not-a-known-token-123"), n++));
      expect({ method, code: unknown.codeName, details: unknown.details }).toEqual({ method, code: "UNAUTHENTICATED", details: "unknown token" });
    }
    expect(logLines.join("\n")).not.toContain("not-a-known-token-123");
    expect(logLines.join("\n")).not.toContain(token("root"));
  });

  test("an authorization header that is not a bearer token is UNAUTHENTICATED", async () => {
    const raw = rawClient(daemon.address);
    try {
      const md = new grpc.Metadata();
      md.set("authorization", `Basic ${token("root")}`);
      const { err } = await unaryCall(raw.stat, raw, create(StatRequestSchema, { key: "t/obj" }), md);
      expect([err?.code, err?.details]).toEqual([grpc.status.UNAUTHENTICATED, 'the authorization header must read "Bearer <token>"']);
    } finally {
      raw.close();
    }
  });
});

describe("prefixes", () => {
  const tenant = () => as(token("tenant-a"));

  test("keys outside the token's prefixes are PERMISSION_DENIED on every keyed RPC, naming the key and the token", async () => {
    const c = tenant();
    const outside = [
      c.store("b/1", "x"),
      c.upload("b/streamed", [Buffer.from("x")]),
      c.retrieve("b/1"),
      c.download("b/1"),
      c.stat("b/1"),
      c.exists("b/1"),
      c.delete("b/1"),
    ];
    for (const p of outside) {
      const err = await failure(p);
      expect(err.codeName).toBe("PERMISSION_DENIED");
      expect(err.details).toMatch(/^key "b\/(1|streamed)" is outside the prefixes of token "tenant-a"$/);
    }
    // Nothing was written or deleted.
    const root = as(token("root"));
    expect(await root.retrieve("b/1")).toBe("v:b/1");
    expect(await root.exists("b/streamed")).toBe(false);
  });

  test("keys inside any of the prefixes are allowed; a prefix is a plain string prefix", async () => {
    const c = tenant();
    await c.store("a/new", "n");
    expect(await c.retrieve("a/new")).toBe("n");
    expect(await c.retrieve("shared/x1")).toBe("v:shared/x1");
    expect(await codeOf(c.retrieve("shared/y1"))).toBe("PERMISSION_DENIED");
  });

  test("ListKeys: its prefix must lie inside an allowed prefix", async () => {
    const c = tenant();
    expect((await c.listKeys({ prefix: "a/" })).keys).toEqual(["a/1", "a/2", "a/new"]);
    expect((await c.listKeys({ prefix: "shared/x" })).keys).toEqual(["shared/x1"]);
    for (const prefix of ["", "a", "shared/", "b/"]) {
      const err = await failure(c.listKeys({ prefix }));
      expect([err.codeName, err.details]).toEqual(["PERMISSION_DENIED", `prefix ${JSON.stringify(prefix)} is outside the prefixes of token "tenant-a"`]);
    }
  });

  test("DeleteMany checks every key and its prefix before deleting anything", async () => {
    const c = tenant();
    const mixed = await failure(c.deleteMany({ keys: ["a/1", "b/1"] }));
    expect([mixed.codeName, mixed.details]).toEqual(["PERMISSION_DENIED", 'key "b/1" is outside the prefixes of token "tenant-a"']);
    const prefix = await failure(c.deleteMany({ keys: ["a/1"], prefix: "b/" }));
    expect([prefix.codeName, prefix.details]).toEqual(["PERMISSION_DENIED", 'prefix "b/" is outside the prefixes of token "tenant-a"']);
    const root = as(token("root"));
    expect(await root.exists("a/1")).toBe(true);
    expect(await root.exists("b/1")).toBe(true);
    expect(await c.deleteMany({ keys: ["a/1"], prefix: "a/" })).toBe(3);
    expect(await root.exists("b/1")).toBe(true);
  });

  test("an entry without admin cannot GetStats, whatever its other rights", async () => {
    const err = await failure(tenant().getStats());
    expect([err.codeName, err.details]).toEqual(["PERMISSION_DENIED", 'token "tenant-a" lacks the "admin" right']);
  });
});

describe("open services", () => {
  const generic = () => new grpc.Client(daemon.address, grpc.credentials.createInsecure());
  const bytes = (b: Buffer) => b;

  test("health answers without a token", async () => {
    const c = generic();
    try {
      // HealthCheckRequest{service: ""} is the empty message; SERVING is field 1 = 1.
      const res = await new Promise<Buffer>((resolve, reject) =>
        c.makeUnaryRequest("/grpc.health.v1.Health/Check", bytes, bytes, Buffer.alloc(0), (err, r) => (err ? reject(err) : resolve(r!))),
      );
      expect([...res]).toEqual([0x08, 0x01]);
    } finally {
      c.close();
    }
  });

  test("reflection answers without a token", async () => {
    const c = generic();
    try {
      const call = c.makeBidiStreamRequest("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", bytes, bytes);
      const first = new Promise<Buffer>((resolve, reject) => {
        call.once("data", resolve);
        call.once("error", reject);
      });
      // ServerReflectionRequest{list_services: ""}: field 7, length 0.
      call.write(Buffer.from([0x3a, 0x00]));
      const res = await first;
      call.end();
      expect(res.toString("latin1")).toContain("filestorage.v1.FileStorageService");
    } finally {
      c.close();
    }
  });
});

describe("reload", () => {
  let reloadDaemon: TestDaemon;
  let file: string;
  const lines: string[] = [];
  const write = (content: unknown) => writeTokenFile(tmp.path, "reload.json", content);

  beforeAll(async () => {
    file = write([tokenEntry("first", token("first"), [""], ["read", "write"])]);
    reloadDaemon = await startDaemon({ AUTH_TOKENS_FILE: file }, { logger: createLogger("info", { write: (l: string) => void lines.push(l) }) });
  });
  afterAll(() => reloadDaemon?.stop());

  test("a good file takes effect for the next calls; a bad one keeps the old one and says why", async () => {
    const first = as(token("first"), reloadDaemon.address);
    const second = as(token("second"), reloadDaemon.address);
    await first.store("r/1", "x");
    expect(await codeOf(second.store("r/2", "x"))).toBe("UNAUTHENTICATED");

    write([tokenEntry("second", token("second"), ["r/"], ["read", "write", "admin"])]);
    expect(reloadDaemon.server.reload()).toEqual({ reloaded: true, entries: 1 });
    await second.store("r/2", "x");
    expect((await second.getStats()).initialized).toBe(true);
    expect(await codeOf(first.store("r/3", "x"))).toBe("UNAUTHENTICATED");

    for (const [bad, reason] of [
      ["[]", "it holds no entries"],
      ["{}", "it holds no entries"],
      ["[{", "it is not valid JSON"],
      [[{ name: "x", sha256: token("x"), prefixes: [], rights: ["read"] }], 'entry 0 ("x"), field "sha256": expected 64 hex digits'],
    ] as const) {
      write(bad);
      const result = reloadDaemon.server.reload();
      expect(result).toEqual({ reloaded: false, reason: expect.stringContaining(reason) });
      expect(result.reloaded === false && result.reason).toContain(`AUTH_TOKENS_FILE="${file}"`);
      // The entries loaded before still hold.
      await second.store("r/2", "again");
      expect(await codeOf(first.store("r/3", "x"))).toBe("UNAUTHENTICATED");
    }
    const failures = lines.map((l) => JSON.parse(l) as { msg: string; reason?: string }).filter((l) => l.msg.startsWith("tokens not reloaded"));
    expect(failures).toHaveLength(4);
    expect(failures[3]!.reason).toContain('field "sha256"');
    expect(lines.join("\n")).not.toContain(token("x"));
  });
});

describe("the older {token: [prefixes]} form", () => {
  test("keeps working with every right but admin, with a start-up warning that never shows a token", async () => {
    const lines: string[] = [];
    const file = writeTokenFile(tmp.path, "legacy.json", { [token("old")]: ["old/"], [token("old-2")]: [""] });
    const d = await startDaemon({ AUTH_TOKENS_FILE: file }, { logger: createLogger("info", { write: (l: string) => void lines.push(l) }) });
    try {
      const c = as(token("old"), d.address);
      await c.store("old/1", "x");
      expect(await c.retrieve("old/1")).toBe("x");
      expect((await c.listKeys({ prefix: "old/" })).keys).toEqual(["old/1"]);
      expect(await c.delete("old/1")).toBe(true);
      const outside = await failure(c.store("new/1", "x"));
      expect([outside.codeName, outside.details]).toEqual(["PERMISSION_DENIED", 'key "new/1" is outside the prefixes of token "legacy-1"']);
      const admin = await failure(as(token("old-2"), d.address).getStats());
      expect([admin.codeName, admin.details]).toEqual(["PERMISSION_DENIED", 'token "legacy-2" lacks the "admin" right']);
      const warnings = lines.map((l) => JSON.parse(l) as { level: number; msg: string }).filter((l) => l.msg.includes("older"));
      expect(warnings).toHaveLength(1);
      expect(warnings[0]!.level).toBe(40);
      expect(warnings[0]!.msg).toContain('AUTH_TOKENS_FILE uses the older {"token": [prefixes]} form');
      expect(lines.join("\n")).not.toContain(token("old"));
    } finally {
      await d.stop();
    }
  });
});
