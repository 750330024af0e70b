/**
 * Size limits, per-prefix quotas and expiry through the real gRPC server:
 * MAX_OBJECT_BYTES at the edge (unary and stream, declared or not), quotas
 * from a config file (edge, overwrite, delete, rejected and aborted streams,
 * usage recounted after a restart), and expires_at (invisible to every read,
 * swept from the local tier; invisible on the GCS tier).
 */
import { makeTempDir } from "../kit/temp-dir.js";
import { liveNames } from "../support/gcs-objects.js";
import { Storage } from "@google-cloud/storage";
import Database from "better-sqlite3";
import * as grpc from "@grpc/grpc-js";
import { create } from "@bufbuild/protobuf";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { DataKind, StoreStreamRequestSchema } from "../../gen/filestorage/v1/file_storage_pb.js";
import { FileStorageClient, FileStorageError } from "../../client/src/index.js";
import { startDaemon, type TestDaemon } from "../support/daemon.js";
import { startFakeGcs } from "../kit/fake-gcs.js";
import { rawClient } from "../support/raw-client.js";
import { failure } from "../support/expect-failure.js";


const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Chunks of `total` bytes, one per event-loop turn, like a real upload. */
async function* chunksOf(total: number, chunk = 1000): AsyncGenerator<Uint8Array> {
  for (let sent = 0; sent < total; sent += chunk) {
    yield randomBytes(Math.min(chunk, total - sent));
    await sleep(0);
  }
}

/** Opens a StoreStream, sends only a header declaring `size`, and resolves with the daemon's answer. */
function headerOnly(address: string, key: string, size: number): Promise<grpc.ServiceError | null> {
  const raw = rawClient(address);
  return new Promise<grpc.ServiceError | null>((resolve) => {
    const call = raw.storeStream(new grpc.Metadata(), { deadline: Date.now() + 10_000 }, (err) => {
      resolve(err);
    });
    call.write(
      create(StoreStreamRequestSchema, { payload: { case: "header", value: { key, kind: DataKind.BYTES, size: BigInt(size) } } }),
    );
    // No data and no end: the answer must come from the header alone.
  }).finally(() => raw.close());
}

describe("MAX_OBJECT_BYTES", () => {
  const LIMIT = 4096;
  let daemon: TestDaemon;
  let client: FileStorageClient;

  beforeAll(async () => {
    daemon = await startDaemon({ MAX_OBJECT_BYTES: String(LIMIT) });
    client = new FileStorageClient(daemon.address, { maxUnaryBytes: 1024 * 1024 });
  });
  afterAll(async () => {
    client.close();
    await daemon.stop();
  });

  test("unary: exactly the limit is stored, one byte more is RESOURCE_EXHAUSTED naming the setting and keeps nothing", async () => {
    const edge = randomBytes(LIMIT);
    expect((await client.store("max/edge", edge)).size).toBe(LIMIT);
    expect((await client.retrieve<Buffer>("max/edge"))!.equals(edge)).toBe(true);

    const err = await failure(client.store("max/over", randomBytes(LIMIT + 1)));
    expect(err.codeName).toBe("RESOURCE_EXHAUSTED");
    expect(err.details).toContain("MAX_OBJECT_BYTES");
    expect(await client.exists("max/over")).toBe(false);

    // An overwrite that is too large keeps the old version.
    await failure(client.store("max/edge", randomBytes(LIMIT + 1)));
    expect((await client.retrieve<Buffer>("max/edge"))!.equals(edge)).toBe(true);
  });

  test("stream without a declared size: the limit passes, one byte more fails mid-stream and keeps nothing", async () => {
    expect((await client.upload("max/s-edge", chunksOf(LIMIT))).size).toBe(LIMIT);
    const err = await failure(client.upload("max/s-over", chunksOf(LIMIT + 1)));
    expect(err.codeName).toBe("RESOURCE_EXHAUSTED");
    expect(err.details).toContain("MAX_OBJECT_BYTES");
    expect(await client.exists("max/s-over")).toBe(false);
  });

  test("stream declaring a size over the limit fails on the header, before any data", async () => {
    const err = await headerOnly(daemon.address, "max/declared", LIMIT + 1);
    expect(err?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(err?.details).toContain("MAX_OBJECT_BYTES");
    expect(await client.exists("max/declared")).toBe(false);
  });
});

describe("per-prefix quotas from the config file", () => {
  const QUOTA = 10_000;
  let storagePath: string;
  let configPath: string;
  let daemon: TestDaemon;
  let client: FileStorageClient;

  const start = async () => {
    daemon = await startDaemon({ CONFIG_FILE: configPath, LOCAL_STORAGE_PATH: storagePath, ENABLE_COMPRESSION: "false" });
    client = new FileStorageClient(daemon.address);
  };
  const stop = async () => {
    client.close();
    await daemon.stop();
  };

  beforeAll(async () => {
    storagePath = await fs.mkdtemp(path.join(os.tmpdir(), "fs-quota-"));
    configPath = path.join(storagePath, "..", `${path.basename(storagePath)}.json`);
    await fs.writeFile(configPath, JSON.stringify({ quotas: { "tenants/a/": QUOTA }, expiry_sweep_seconds: 1 }));
    await start();
  });
  afterAll(async () => {
    await stop();
    await fs.rm(storagePath, { recursive: true, force: true });
    await fs.rm(configPath, { force: true });
  });

  const exhausted = async (p: Promise<unknown>) => {
    const err = await failure(p);
    expect(err.codeName).toBe("RESOURCE_EXHAUSTED");
    expect(err.details).toContain('"tenants/a/"');
    return err;
  };

  test("at the edge; overwrite frees the old size; delete frees; other prefixes are free", async () => {
    await client.store("tenants/a/x", randomBytes(6000));
    await client.store("tenants/a/y", randomBytes(4000)); // exactly full
    await exhausted(client.store("tenants/a/z", randomBytes(1)));
    expect(await client.exists("tenants/a/z")).toBe(false);

    // Replacing x with the same size fits; one byte more does not, and x stays as it was.
    const x2 = randomBytes(6000);
    await client.store("tenants/a/x", x2);
    await exhausted(client.store("tenants/a/x", randomBytes(6001)));
    expect((await client.retrieve<Buffer>("tenants/a/x"))!.equals(x2)).toBe(true);
    // Shrinking frees: 1000 bytes become available.
    await client.store("tenants/a/x", randomBytes(5000));
    await client.store("tenants/a/z", randomBytes(1000));
    await exhausted(client.store("tenants/a/w", randomBytes(1)));

    expect(await client.delete("tenants/a/y")).toBe(true);
    await client.store("tenants/a/w", randomBytes(4000));
    await exhausted(client.store("tenants/a/v", randomBytes(1)));

    // Outside the prefix nothing is counted.
    await client.store("tenants/b/big", randomBytes(50_000));
    await client.store("tenants/aa", randomBytes(50_000));
  });

  test("usage is recounted after a restart", async () => {
    await stop();
    await start();
    await exhausted(client.store("tenants/a/after-restart", randomBytes(1)));
    expect(await client.deleteMany({ prefix: "tenants/a/" })).toBe(3);
    await client.store("tenants/a/full", randomBytes(QUOTA));
    await client.delete("tenants/a/full");
  });

  test("streams: a declared size over the quota fails on the header; an undeclared one fails mid-stream; both keep nothing and hold nothing", async () => {
    const err = await headerOnly(daemon.address, "tenants/a/declared", QUOTA + 1);
    expect(err?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(err?.details).toContain('"tenants/a/"');

    await exhausted(client.upload("tenants/a/undeclared", chunksOf(QUOTA + 1)));
    // A declared size that fits, but more data than declared.
    await failure(client.upload("tenants/a/liar", chunksOf(QUOTA + 1), { size: 100 }));
    for (const key of ["tenants/a/declared", "tenants/a/undeclared", "tenants/a/liar"]) expect(await client.exists(key)).toBe(false);

    // Nothing is still reserved: the whole quota is available.
    expect((await client.upload("tenants/a/fits", chunksOf(QUOTA), { size: QUOTA })).size).toBe(QUOTA);
    await client.delete("tenants/a/fits");
  });

  test("a stream the client abandons releases its reservation", async () => {
    const ac = new AbortController();
    async function* stalls(): AsyncGenerator<Uint8Array> {
      yield randomBytes(1000);
      await sleep(300);
      ac.abort();
      await sleep(1000);
    }
    const aborted = client.upload("tenants/a/abandoned", stalls(), { size: QUOTA, signal: ac.signal });
    await expect(aborted).rejects.toBeDefined();
    // The daemon sees the cancel asynchronously: the full quota becomes available shortly.
    const deadline = Date.now() + 5000;
    for (;;) {
      try {
        await client.store("tenants/a/after-abort", randomBytes(QUOTA));
        break;
      } catch (err) {
        if (!FileStorageError.is(err, grpc.status.RESOURCE_EXHAUSTED) || Date.now() > deadline) throw err;
        await sleep(100);
      }
    }
    expect(await client.exists("tenants/a/abandoned")).toBe(false);
    await client.delete("tenants/a/after-abort");
  });

  test("an expired object's bytes are freed once the sweeper removes it", async () => {
    await client.store("tenants/a/short-lived", randomBytes(QUOTA), { expiresAt: new Date(Date.now() + 800) });
    await exhausted(client.store("tenants/a/next", randomBytes(QUOTA)));
    const deadline = Date.now() + 8000;
    for (;;) {
      try {
        await client.store("tenants/a/next", randomBytes(QUOTA));
        break;
      } catch (err) {
        if (!FileStorageError.is(err, grpc.status.RESOURCE_EXHAUSTED) || Date.now() > deadline) throw err;
        await sleep(200);
      }
    }
  });
});

describe("quotas under concurrency", () => {
  const QUOTA = 10_000;
  test("concurrent overwrites of one key replace one another: they cannot free the old size several times and store past the quota", async () => {
    const dir = await makeTempDir("fs-quota-race-");
    const configPath = path.join(dir.path, "config.json");
    await fs.writeFile(configPath, JSON.stringify({ quotas: { "q/": QUOTA } }));
    const daemon = await startDaemon({ CONFIG_FILE: configPath, LOCAL_STORAGE_PATH: path.join(dir.path, "store"), ENABLE_COMPRESSION: "false" });
    const client = new FileStorageClient(daemon.address, { retries: 0 });
    const held = async () => {
      const page = await client.listKeys({ prefix: "q/", includeInfo: true });
      return page.objects.reduce((n, o) => n + o.size, 0);
    };
    try {
      for (let round = 0; round < 5; round++) {
        await client.store("q/big", randomBytes(9000));
        // Eight small overwrites at once: each replaces the one before, not the 9000-byte original.
        const settled = await Promise.allSettled(Array.from({ length: 8 }, () => client.store("q/big", randomBytes(100))));
        expect(settled.filter((o) => o.status === "fulfilled").length).toBeGreaterThan(0);
        // 100 bytes are held: 9900 more fit, 9950 do not.
        expect((await failure(client.store("q/fill", randomBytes(9950)))).codeName).toBe("RESOURCE_EXHAUSTED");
        expect(await held()).toBeLessThanOrEqual(QUOTA);
        await client.store("q/fill", randomBytes(9900));
        expect(await held()).toBe(QUOTA);
        expect(await client.deleteMany({ prefix: "q/" })).toBe(2);
      }
    } finally {
      client.close();
      await daemon.stop();
      await dir.cleanup();
    }
  });
});

describe("expiry", () => {
  test("local tier: expired objects are invisible to every read and the sweeper removes them from the index", async () => {
    const daemon = await startDaemon({ EXPIRY_SWEEP_SECONDS: "1" });
    const client = new FileStorageClient(daemon.address);
    try {
      const expiresAt = new Date(Date.now() + 1500);
      const info = await client.store("exp/soon", "short-lived", { expiresAt });
      expect(info.expiresAt?.getTime()).toBe(expiresAt.getTime());
      await client.store("exp/stays", "long-lived", { expiresAt: new Date(Date.now() + 3_600_000) });
      await client.store("exp/forever", "no expiry");
      // Read once so the cache holds it: the cache must not serve it after expiry either.
      expect(await client.retrieve("exp/soon")).toBe("short-lived");
      expect(await client.exists("exp/soon")).toBe(true);
      expect((await client.listKeys({ prefix: "exp/" })).keys).toEqual(["exp/forever", "exp/soon", "exp/stays"]);

      await sleep(expiresAt.getTime() - Date.now() + 50);
      expect(await client.retrieve("exp/soon")).toBeNull();
      expect(await client.stat("exp/soon")).toBeNull();
      expect(await client.exists("exp/soon")).toBe(false);
      expect((await failure(client.download("exp/soon"))).codeName).toBe("NOT_FOUND");
      expect((await client.listKeys({ prefix: "exp/" })).keys).toEqual(["exp/forever", "exp/stays"]);
      expect(await client.retrieve("exp/stays")).toBe("long-lived");

      // The sweeper deletes it from the tier.
      const db = new Database(path.join(daemon.storagePath, "index.sqlite"), { readonly: true, fileMustExist: true });
      const row = db.prepare("SELECT count(*) FROM objects WHERE key = ?").pluck();
      try {
        const deadline = Date.now() + 5000;
        while ((row.get("exp/soon") as number) > 0 && Date.now() < deadline) await sleep(100);
        expect(row.get("exp/soon")).toBe(0);
        expect(row.get("exp/stays")).toBe(1);
      } finally {
        db.close();
      }
      // A new write of the key is a fresh object.
      await client.store("exp/soon", "again");
      expect(await client.retrieve("exp/soon")).toBe("again");
    } finally {
      client.close();
      await daemon.stop();
    }
  });

  test("an expires_at in the past is refused (INVALID_ARGUMENT) and nothing is stored", async () => {
    const daemon = await startDaemon();
    const client = new FileStorageClient(daemon.address);
    try {
      const err = await failure(client.store("exp/past", "already gone", { expiresAt: new Date(Date.now() - 1000) }));
      expect(err.codeName).toBe("INVALID_ARGUMENT");
      expect(await client.exists("exp/past")).toBe(false);
    } finally {
      client.close();
      await daemon.stop();
    }
  });

  test("GCS tier: expired objects are invisible to every read and the sweeper deletes them from the bucket", async () => {
    const gcs = await startFakeGcs();
    const daemon = await startDaemon({
      GCS_BUCKET_NAME: "expiry-bucket",
      GCS_PROJECT_ID: "test",
      GCS_API_ENDPOINT: gcs.url,
      MAX_RETRIES: "0",
      EXPIRY_SWEEP_SECONDS: "1",
      GCS_SWEEP_SECONDS: "1",
    });
    const client = new FileStorageClient(daemon.address);
    try {
      const expiresAt = new Date(Date.now() + 1500);
      expect((await client.store("exp/gcs", "short-lived", { expiresAt })).backend).toBe("gcs");
      expect(await client.retrieve("exp/gcs")).toBe("short-lived");
      await sleep(expiresAt.getTime() - Date.now() + 50);
      expect(await client.retrieve("exp/gcs")).toBeNull();
      expect(await client.stat("exp/gcs")).toBeNull();
      expect(await client.exists("exp/gcs")).toBe(false);
      expect((await client.listKeys({ prefix: "exp/" })).keys).toEqual([]);
      // Absent to callers: a create-only write succeeds, and a delete reports nothing deleted.
      await client.store("exp/gcs2", "x", { expiresAt: new Date(Date.now() + 300) });
      await sleep(400);
      expect(await client.delete("exp/gcs2")).toBe(false);
      // The sweeper (every second) removes the expired object from GCS itself.
      const bucket = new Storage({ apiEndpoint: gcs.url, projectId: "test" }).bucket("expiry-bucket");
      let names: string[] = ["?"];
      for (let i = 0; i < 50 && names.length > 0; i++) {
        await sleep(100);
        names = await liveNames(bucket, "exp/");
      }
      expect(names).toEqual([]);
      await client.store("exp/gcs", "again", { ifGenerationMatch: 0 });
      expect(await client.retrieve("exp/gcs")).toBe("again");
    } finally {
      client.close();
      await daemon.stop();
      await gcs.stop();
    }
  });
});
