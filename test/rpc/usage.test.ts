/**
 * GetUsage through the real gRPC server: exact counts and bytes (original
 * and stored, compression on) under a prefix from the local index in the
 * embedded mode; by listing with GCS (the real fake-gcs-server), objects
 * waiting on the local tier during an outage included, in capped pages whose
 * sum is the whole; expired and lifecycle-aged objects left out; scoped by
 * the token's prefixes; bad input refused by name.
 */
import { FileStorageClient, FileStorageError, status } from "../../client/src/index.js";
import { startDaemon, type TestDaemon } from "../support/daemon.js";
import { tokenEntry, writeTokenFile } from "../support/tokens.js";
import { startFakeGcs, type FakeGcs } from "../kit/fake-gcs.js";
import { startProxy } from "../kit/tcp-proxy.js";
import { makeTempDir } from "../kit/temp-dir.js";
import { create } from "@bufbuild/protobuf";
import { GetUsageRequestSchema } from "../../gen/filestorage/v1/file_storage_pb.js";
import { rawClient, unaryCall } from "../support/raw-client.js";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

async function daemonWithClient(env: Record<string, string>, token?: string): Promise<{ daemon: TestDaemon; client: FileStorageClient }> {
  const daemon = await startDaemon(env);
  const client = new FileStorageClient(daemon.address, { retries: 0, token });
  cleanups.push(() => daemon.stop(), () => client.close());
  return { daemon, client };
}

/** Stores a mix under `p`: text, compressible and incompressible bytes. Returns what usage must say. */
async function fill(client: FileStorageClient, p: string) {
  const infos = [
    await client.store(`${p}a`, "héllo"),
    await client.store(`${p}b`, Buffer.alloc(100_000, 1)), // compresses well
    await client.store(`${p}c/d`, Buffer.from(Array.from({ length: 5000 }, (_, i) => (i * 7919) % 256))),
    await client.upload(`${p}big`, [Buffer.alloc(3 * 1024 * 1024 + 5, 3)]),
  ];
  return {
    objectCount: infos.length,
    totalBytes: infos.reduce((n, i) => n + i.size, 0),
    storedBytes: infos.reduce((n, i) => n + i.storedSize, 0),
  };
}

test("embedded mode: the local index answers exactly in one call; other prefixes, expired and aged objects are left out", async () => {
  const { client } = await daemonWithClient({ LIFECYCLE_RULES: JSON.stringify([{ prefix: "u/aged/", max_age_seconds: 1 }]) });
  const want = await fill(client, "u/");
  expect(want.storedBytes).toBeLessThan(want.totalBytes);
  await client.store("u/aged/x", "soon gone");
  await client.store("u/expired", "gone", { expiresAt: new Date(Date.now() + 500) });
  await client.store("v/other", "not under u/");
  await new Promise((r) => setTimeout(r, 1100));

  const usage = await client.getUsage("u/");
  expect(usage).toEqual({ ...want, fromIndex: true });
  // The same numbers as listing and summing ObjectInfo.
  const page = await client.listKeys({ prefix: "u/", includeInfo: true });
  expect(page.objects.length).toBe(want.objectCount);
  expect(page.objects.reduce((n, o) => n + o.size, 0)).toBe(want.totalBytes);
  expect((await client.getUsage("")).objectCount).toBe(want.objectCount + 1);
  expect(await client.getUsage("nothing/")).toEqual({ objectCount: 0, totalBytes: 0, storedBytes: 0, fromIndex: true });
});

test("bad input is refused by name: a reserved prefix, a negative max_objects, a page token from another request", async () => {
  const { daemon, client } = await daemonWithClient({});
  const raw = rawClient(daemon.address);
  cleanups.push(() => raw.close());
  await expect(client.getUsage("a\nb")).rejects.toMatchObject({ code: status.INVALID_ARGUMENT });
  const negative = await unaryCall(raw.getUsage, raw, create(GetUsageRequestSchema, { prefix: "", maxObjects: -1 }));
  expect(negative.err).toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining("max_objects") });
  const bogus = await unaryCall(raw.getUsage, raw, create(GetUsageRequestSchema, { prefix: "", pageToken: "not-a-token" }));
  expect(bogus.err).toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining("page_token is not a next_page_token") });
});

test("an admin token of one prefix counts only inside it", async () => {
  const tmp = await makeTempDir("fs-usage-auth-");
  cleanups.push(() => tmp.cleanup());
  const file = writeTokenFile(tmp.path, "tokens.json", [
    tokenEntry("root", "root-token-000000000000", [""], ["read", "write", "delete", "list", "admin"]),
    tokenEntry("tenant-admin", "tenant-token-0000000000", ["tenants/a/"], ["admin"]),
  ]);
  const { daemon, client: root } = await daemonWithClient({ AUTH_TOKENS_FILE: file }, "root-token-000000000000");
  await root.store("tenants/a/1", "x");
  await root.store("tenants/b/1", "y");
  const tenant = new FileStorageClient(daemon.address, { retries: 0, token: "tenant-token-0000000000" });
  cleanups.push(() => tenant.close());
  expect((await tenant.getUsage("tenants/a/")).objectCount).toBe(1);
  for (const outside of ["tenants/b/", "", "tenants/"]) {
    const err = await tenant.getUsage(outside).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(FileStorageError.is(err, status.PERMISSION_DENIED)).toBe(true);
  }
});

describe("with GCS", () => {
  let gcs: FakeGcs;
  beforeAll(async () => {
    gcs = await startFakeGcs();
  });
  afterAll(async () => {
    await gcs?.stop();
  });

  test("by listing, in capped pages that sum to the whole; a copy written during an outage counts once", async () => {
    const proxy = await startProxy(gcs.port);
    cleanups.push(() => proxy.close());
    const { client } = await daemonWithClient({
      GCS_BUCKET_NAME: `fs-usage-${process.pid}`,
      GCS_PROJECT_ID: "test",
      GCS_API_ENDPOINT: proxy.url,
      MAX_RETRIES: "1",
      TIMEOUT_SECONDS: "2",
      REPLICATION_INTERVAL_MS: "3600000",
    });
    const want = await fill(client, "g/");
    for (let i = 0; i < 25; i++) await client.store(`g/many/${String(i).padStart(2, "0")}`, `value ${i}`);
    const many = { objectCount: 25, totalBytes: Array.from({ length: 25 }, (_, i) => `value ${i}`.length).reduce((a, b) => a + b, 0) };

    const whole = await client.getUsage("g/");
    expect(whole).toMatchObject({
      objectCount: want.objectCount + many.objectCount,
      totalBytes: want.totalBytes + many.totalBytes,
      fromIndex: false,
    });
    const progress: number[] = [];
    const paged = await client.getUsage("g/", { pageSize: 7, onProgress: (u) => progress.push(u.objectCount) });
    expect(paged).toEqual(whole);
    expect(progress).toEqual([7, 14, 21, 28, 29]);

    // During an outage GCS cannot be listed: the count fails rather than miss what only GCS holds.
    proxy.cut();
    await client.store("g/offline", "waiting for GCS");
    await expect(client.getUsage("g/")).rejects.toMatchObject({ code: status.UNAVAILABLE });
    proxy.restore();
    // Waiting on the local tier and not yet in GCS: counted once, with the rest.
    let after;
    for (let i = 0; i < 50; i++) {
      after = await client.getUsage("g/").catch(() => undefined);
      if (after) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(after).toMatchObject({ objectCount: whole.objectCount + 1, totalBytes: whole.totalBytes + "waiting for GCS".length });
  });
});
