/**
 * Callers in other languages, with real tools against a real daemon:
 * a Python grpcio client on stubs generated at test time from the proto,
 * grpcurl through server reflection alone (no proto given), and
 * grpc-health-probe. test/setup/install-tools.sh installs all of them
 * (pinned) into .test-tools.
 */
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { startDaemon, type TestDaemon } from "../support/daemon.js";
import { describeRun, runTool, type ToolRun } from "../support/run-tool.js";

const ROOT = path.resolve(__dirname, "../..");
const BIN = path.join(ROOT, ".test-tools/bin");
const PYTHON = path.join(ROOT, ".test-tools/venv/bin/python");
const SERVICE = "filestorage.v1.FileStorageService";

/** Runs a tool that must exit 0; throws with its output otherwise. */
async function runOk(what: string, file: string, args: string[], timeoutMs?: number): Promise<ToolRun> {
  const r = await runTool(file, args, { timeoutMs });
  if (r.code !== 0) throw new Error(describeRun(what, r));
  return r;
}

function parseJson<T>(what: string, r: ToolRun): T {
  try {
    return JSON.parse(r.stdout) as T;
  } catch {
    throw new Error(describeRun(`${what} printed no JSON:`, r));
  }
}

let daemon: TestDaemon;

beforeAll(async () => {
  daemon = await startDaemon();
});

afterAll(async () => {
  await daemon?.stop();
});

describe("Python grpcio client", () => {
  let stubDir: string;

  beforeAll(async () => {
    stubDir = await fs.mkdtemp(path.join(os.tmpdir(), "fs-pystubs-"));
    // python -m grpc_tools.protoc adds its bundled well-known types
    // (google/protobuf/struct.proto, timestamp.proto) to the include path.
    await runOk("grpc_tools.protoc", PYTHON, [
      "-m", "grpc_tools.protoc",
      `-I${path.join(ROOT, "proto")}`,
      `--python_out=${stubDir}`,
      `--grpc_python_out=${stubDir}`,
      path.join(ROOT, "proto/filestorage/v1/file_storage.proto"),
    ], 60_000);
  });

  afterAll(async () => {
    if (stubDir) await fs.rm(stubDir, { recursive: true, force: true });
  });

  test("stores, streams, lists and reads back what it stored", async () => {
    const r = await runTool(PYTHON, [path.join(ROOT, "test/polyglot/client.py"), daemon.address], {
      timeoutMs: 120_000,
      env: { ...process.env, PYTHONPATH: stubDir, PYTHONDONTWRITEBYTECODE: "1" },
    });
    if (r.code !== 0) throw new Error(describeRun("client.py", r));
    const out = parseJson<PythonReport>("client.py", r);

    expect(out.self_test_crc32c).toBe(0xe3069283);

    for (const u of out.unary) {
      expect({ key: u.key, stored: u.stored_kind, retrieved: u.retrieved_kind }).toEqual({
        key: u.key, stored: u.sent_kind, retrieved: u.sent_kind,
      });
      expect({ key: u.key, bytesEqual: u.bytes_equal, size: u.size }).toEqual({ key: u.key, bytesEqual: true, size: u.sent_size });
      expect(u.crc32c_server).toBe(u.crc32c_python);
      expect(u.metadata).toEqual(u.sent_metadata);
      expect(u.generation).toBeGreaterThan(0);
    }
    expect(out.unary.map((u) => u.retrieved_kind)).toEqual(["DATA_KIND_TEXT", "DATA_KIND_JSON", "DATA_KIND_BYTES", "DATA_KIND_TEXT"]);
    expect(out.unary[1].json_equal).toBe(true);

    const s = out.stream;
    expect(s).toMatchObject({
      size: 5 * 1024 * 1024,
      stored_size: 5 * 1024 * 1024,
      stored_crc32c: s.crc32c_python,
      stored_kind: "DATA_KIND_BYTES",
      stored_metadata: { tags: ["model", "v1"], epoch: 3 },
      first_message: "object",
      first_info_size: 5 * 1024 * 1024,
      received_bytes: 5 * 1024 * 1024 - s.offset,
      tail_equal: true,
      bad_crc: { code: "DATA_LOSS" },
      bad_crc_exists: false,
    });
    expect(s.chunk_messages).toBeGreaterThan(0);

    expect(out.list).toEqual({ keys: ["py/list/a", "py/list/c"], prefixes: ["py/list/b/"], next_page_token: "" });

    expect(out.errors.dot_dot_key.code).toBe("INVALID_ARGUMENT");
    expect(out.errors.dot_dot_key.details).toMatch(/\.\./);
    expect(out.errors.newline_key.code).toBe("INVALID_ARGUMENT");
    expect(out.errors.bad_json.code).toBe("INVALID_ARGUMENT");
    expect(out.errors.missing.code).toBe("NOT_FOUND");

    expect(out.stats.initialized).toBe(true);
    expect(out.stats.local_fallback_enabled).toBe(true);
    expect(out.stats.version).not.toBe("");
    expect(out.stats.total_operations).toBeGreaterThanOrEqual(out.stats.successful_operations + out.stats.failed_operations);
    expect(out.stats.successful_operations).toBeGreaterThan(10);
    expect(out.stats.failed_operations).toBeGreaterThanOrEqual(4);
    expect(out.stats.methods).toEqual(expect.arrayContaining(["Store", "StoreStream", "Retrieve", "RetrieveStream", "ListKeys"]));
    // 4 unary values, the 5 MiB stream, 5 listing keys; nothing of the bad upload.
    expect(out.stats.cache_enabled).toBe(true);
  }, 180_000);
});

describe("grpcurl through server reflection", () => {
  const grpcurl = path.join(BIN, "grpcurl");
  const call = (args: string[]) => runTool(grpcurl, ["-plaintext", "-max-time", "20", ...args], { timeoutMs: 30_000 });

  test("lists the services", async () => {
    const r = await call([daemon.address, "list"]);
    if (r.code !== 0) throw new Error(describeRun("grpcurl list", r));
    const services = r.stdout.split("\n").map((l) => l.trim()).filter(Boolean);
    expect(services).toEqual(expect.arrayContaining([SERVICE, "grpc.health.v1.Health"]));
  });

  test("describes Store and its request", async () => {
    const rpc = await call([daemon.address, "describe", `${SERVICE}.Store`]);
    if (rpc.code !== 0) throw new Error(describeRun("grpcurl describe Store", rpc));
    expect(rpc.stdout).toMatch(/rpc Store \( \.filestorage\.v1\.StoreRequest \) returns \( \.filestorage\.v1\.StoreResponse \)/);

    const msg = await call([daemon.address, "describe", "filestorage.v1.StoreRequest"]);
    if (msg.code !== 0) throw new Error(describeRun("grpcurl describe StoreRequest", msg));
    expect(msg.stdout).toMatch(/bytes data = 2;/);
    expect(msg.stdout).toMatch(/\.google\.protobuf\.Struct metadata = 5;/);
  });

  test("stores JSON data and retrieves it back", async () => {
    const doc = { job: "grpcurl", scores: [1, 2.5], ok: true };
    const data = Buffer.from(JSON.stringify(doc));
    const request = {
      key: "cli/result.json",
      data: data.toString("base64"),
      kind: "DATA_KIND_JSON",
      metadata: { tags: ["cli", "grpcurl"], attempt: 2 },
    };
    const stored = await call(["-d", JSON.stringify(request), daemon.address, `${SERVICE}/Store`]);
    if (stored.code !== 0) throw new Error(describeRun("grpcurl Store", stored));
    const storedOut = parseJson<{ object: Record<string, unknown> }>("grpcurl Store", stored);
    expect(storedOut.object).toMatchObject({ key: "cli/result.json", kind: "DATA_KIND_JSON", size: String(data.length) });

    const got = await call(["-d", JSON.stringify({ key: "cli/result.json" }), daemon.address, `${SERVICE}/Retrieve`]);
    if (got.code !== 0) throw new Error(describeRun("grpcurl Retrieve", got));
    const gotOut = parseJson<{ object: Record<string, unknown>; data: string }>("grpcurl Retrieve", got);
    expect(gotOut.object).toMatchObject({
      key: "cli/result.json",
      kind: "DATA_KIND_JSON",
      metadata: { tags: ["cli", "grpcurl"], attempt: 2 },
    });
    expect(JSON.parse(Buffer.from(gotOut.data, "base64").toString("utf8"))).toEqual(doc);
  });

  test("a missing key is NotFound", async () => {
    const r = await call(["-d", JSON.stringify({ key: "cli/never-stored" }), daemon.address, `${SERVICE}/Retrieve`]);
    expect(r.timedOut).toBe(false);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/Code: NotFound/);
  });
});

describe("grpc-health-probe", () => {
  const probe = path.join(BIN, "grpc-health-probe");
  const check = (extra: string[]) =>
    runTool(probe, [`-addr=${daemon.address}`, "-connect-timeout=10s", "-rpc-timeout=10s", ...extra], { timeoutMs: 30_000 });

  test("the server as a whole is SERVING", async () => {
    const r = await check([]);
    if (r.code !== 0) throw new Error(describeRun("grpc-health-probe", r));
    expect(r.stdout + r.stderr).toMatch(/status: SERVING/);
  });

  test(`${SERVICE} is SERVING`, async () => {
    const r = await check([`-service=${SERVICE}`]);
    if (r.code !== 0) throw new Error(describeRun(`grpc-health-probe -service=${SERVICE}`, r));
    expect(r.stdout + r.stderr).toMatch(/status: SERVING/);
  });

  test("an unknown service fails the probe", async () => {
    const r = await check(["-service=no.such.Service"]);
    expect(r.timedOut).toBe(false);
    // grpc-health-probe exits 3 when the Check RPC fails (NOT_FOUND here).
    expect({ code: r.code, output: r.stdout + r.stderr }).toEqual({ code: 3, output: expect.stringMatching(/NotFound/) });
  });
});

interface RpcOutcome {
  code: string;
  details: string;
}

interface PythonReport {
  self_test_crc32c: number;
  unary: Array<{
    key: string;
    sent_kind: string;
    stored_kind: string;
    retrieved_kind: string;
    bytes_equal: boolean;
    size: number;
    sent_size: number;
    crc32c_server: number;
    crc32c_python: number;
    generation: number;
    metadata: unknown;
    sent_metadata: unknown;
    json_equal: boolean | null;
  }>;
  stream: {
    size: number;
    crc32c_python: number;
    stored_size: number;
    stored_crc32c: number;
    stored_kind: string;
    stored_metadata: unknown;
    offset: number;
    first_message: string | null;
    first_info_size: number | null;
    chunk_messages: number;
    received_bytes: number;
    tail_equal: boolean;
    bad_crc: RpcOutcome;
    bad_crc_exists: boolean;
  };
  list: { keys: string[]; prefixes: string[]; next_page_token: string };
  errors: Record<"dot_dot_key" | "newline_key" | "bad_json" | "missing", RpcOutcome>;
  stats: {
    initialized: boolean;
    local_fallback_enabled: boolean;
    total_operations: number;
    successful_operations: number;
    failed_operations: number;
    cache_enabled: boolean;
    version: string;
    methods: string[];
  };
}
