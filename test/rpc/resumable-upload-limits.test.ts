/**
 * What bounds resumable uploads, through the real gRPC server: expiry
 * (UPLOAD_EXPIRY_SECONDS, by the sweeper every EXPIRY_SWEEP_SECONDS) frees
 * an abandoned upload's space and quota reservation and forgets a completed
 * one; a quota counts an open upload's bytes, also across a restart;
 * MAX_OPEN_UPLOADS and MAX_OPEN_UPLOADS_PER_CALLER; QueryUpload's rights and
 * ids scoped per caller.
 */
import { randomBytes } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import { FileStorageClient } from "../../client/src/index.js";
import { startDaemon, type TestDaemon } from "../support/daemon.js";
import { codeOf, failure } from "../support/expect-failure.js";
import { makeTempDir, type TempDir } from "../kit/temp-dir.js";
import { tokenEntry, writeTokenFile } from "../support/tokens.js";
import { crcOf, openStream, queryUpload, sendStream, uploadFiles } from "../support/upload-streams.js";
import { rawClient } from "../support/raw-client.js";

const KiB = 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let counter = 0;
const newId = (label: string) => `${label}-${process.pid}-${++counter}`;

async function waitFor(what: string, cond: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await sleep(50);
  }
}

/** Opens an upload, sends `bytes` and leaves the stream broken once they are committed. */
async function abandoned(address: string, key: string, id: string, bytes: Buffer, extra: { size?: number; token?: string } = {}): Promise<void> {
  const raw = rawClient(address);
  try {
    const s = openStream(raw, { key, uploadId: id, chunks: [bytes], ...extra });
    await s.written;
    await waitFor(`upload ${id} committed`, async () => Number((await queryUpload(address, id, extra.token)).res?.committedSize) === bytes.length);
    s.cancel();
    await s.result;
  } finally {
    raw.close();
  }
}

describe("expiry and quotas", () => {
  const QUOTA = 100 * KiB;
  let storage: TempDir;
  let daemon: TestDaemon;
  let client: FileStorageClient;
  const env = () => ({ LOCAL_STORAGE_PATH: storage.path, UPLOAD_EXPIRY_SECONDS: "2", EXPIRY_SWEEP_SECONDS: "1", QUOTAS: JSON.stringify({ "q/": QUOTA }) });

  beforeAll(async () => {
    storage = await makeTempDir("fs-upload-expiry-");
    daemon = await startDaemon(env());
    client = new FileStorageClient(daemon.address, { retries: 0 });
  });
  afterAll(async () => {
    client.close();
    await daemon?.stop();
    await storage?.cleanup();
  });

  test("an open upload under a quota prefix holds a reservation for its bytes; expiry deletes it and frees its space and quota", async () => {
    const id = newId("expire");
    await abandoned(daemon.address, "q/big", id, randomBytes(60 * KiB));
    const files = await uploadFiles(daemon.storagePath);
    expect(files.map((f) => f.size)).toEqual([60 * KiB]);
    // 60 KiB are reserved: 50 more do not fit the 100 KiB quota.
    const refused = await failure(client.store("q/other", randomBytes(50 * KiB)));
    expect(refused.codeName).toBe("RESOURCE_EXHAUSTED");
    expect(refused.details).toContain('quota exceeded for prefix "q/"');
    // Abandoned for UPLOAD_EXPIRY_SECONDS: the sweeper deletes it with its file and reservation.
    await waitFor("the upload to expire", async () => (await queryUpload(daemon.address, id)).err?.code === grpc.status.NOT_FOUND);
    await waitFor("its file to go", async () => (await uploadFiles(daemon.storagePath)).length === 0);
    await client.store("q/other", randomBytes(90 * KiB));
    await client.delete("q/other");
  });

  test("a completed upload stays queryable until it expires; a resume of an expired upload is NOT_FOUND", async () => {
    const id = newId("done");
    const a = randomBytes(KiB);
    expect((await sendStream(daemon.address, { key: "q/done", uploadId: id, chunks: [a], trailer: { crc32c: crcOf(a) } })).err).toBeNull();
    const q = await queryUpload(daemon.address, id);
    expect(q.res?.complete).toBe(true);
    expect(q.res?.object?.key).toBe("q/done");
    const expiresAt = Number(q.res!.expiresAt!.seconds) * 1000;
    expect(expiresAt).toBeGreaterThan(Date.now());
    expect(expiresAt).toBeLessThanOrEqual(Date.now() + 2000);
    await waitFor("the completed upload to expire", async () => (await queryUpload(daemon.address, id)).err?.code === grpc.status.NOT_FOUND);
    // The object stays.
    expect(await client.exists("q/done")).toBe(true);
    await client.delete("q/done");

    const gone = newId("gone");
    await abandoned(daemon.address, "q/gone", gone, randomBytes(KiB));
    await waitFor("the abandoned upload to expire", async () => (await queryUpload(daemon.address, gone)).err?.code === grpc.status.NOT_FOUND);
    const resume = await sendStream(daemon.address, { key: "q/gone", uploadId: gone, writeOffset: KiB, chunks: [randomBytes(10)] });
    expect(resume.err?.code).toBe(grpc.status.NOT_FOUND);
  });

  test("the reservation of an open upload survives a restart; completing it commits exactly its size", async () => {
    const id = newId("restart");
    const a = randomBytes(70 * KiB);
    const storeLonger = { UPLOAD_EXPIRY_SECONDS: "3600" };
    await daemon.stop();
    daemon = await startDaemon({ ...env(), ...storeLonger });
    client.close();
    client = new FileStorageClient(daemon.address, { retries: 0 });
    await abandoned(daemon.address, "q/kept", id, a);
    await daemon.stop();
    daemon = await startDaemon({ ...env(), ...storeLonger });
    client.close();
    client = new FileStorageClient(daemon.address, { retries: 0 });
    // The daemon reserved the open upload's 70 KiB again before serving.
    expect(await codeOf(client.store("q/other", randomBytes(40 * KiB)))).toBe("RESOURCE_EXHAUSTED");
    const b = randomBytes(10 * KiB);
    const done = await sendStream(daemon.address, { key: "q/kept", uploadId: id, writeOffset: a.length, chunks: [b], trailer: { crc32c: crcOf(a, b) } });
    expect(done.err).toBeNull();
    // 80 KiB used: 20 more fit, 21 do not.
    await client.store("q/fits", randomBytes(20 * KiB));
    expect(await codeOf(client.store("q/over", randomBytes(KiB)))).toBe("RESOURCE_EXHAUSTED");
    await client.deleteMany({ prefix: "q/" });
  });

  test("bytes past the quota are refused as they arrive (RESOURCE_EXHAUSTED), the bytes before kept", async () => {
    const id = newId("over");
    const { err } = await sendStream(daemon.address, { key: "q/over", uploadId: id, chunks: [randomBytes(60 * KiB), randomBytes(60 * KiB)] });
    expect(err?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(err?.details).toContain('quota exceeded for prefix "q/"');
    expect(Number((await queryUpload(daemon.address, id)).res?.committedSize)).toBe(60 * KiB);
  });
});

describe("open upload limits and QueryUpload rights", () => {
  const token = (name: string) => `tok-${name}-38e1c2b7`;
  let dir: TempDir;
  let daemon: TestDaemon;

  beforeAll(async () => {
    dir = await makeTempDir("fs-upload-limits-");
    const file = writeTokenFile(dir.path, "tokens.json", [
      tokenEntry("alice", token("alice"), ["a/", "shared/"], ["read", "write"]),
      tokenEntry("bob", token("bob"), ["b/", "shared/"], ["read", "write"]),
      tokenEntry("carol", token("carol"), [""], ["read", "write"]),
      tokenEntry("reader", token("reader"), [""], ["read", "list"]),
      tokenEntry("narrow", token("narrow"), ["n/"], ["write"]),
    ]);
    daemon = await startDaemon({ AUTH_TOKENS_FILE: file, MAX_OPEN_UPLOADS: "3", MAX_OPEN_UPLOADS_PER_CALLER: "2" });
  });
  afterAll(async () => {
    await daemon?.stop();
    await dir?.cleanup();
  });

  test("MAX_OPEN_UPLOADS_PER_CALLER and MAX_OPEN_UPLOADS: RESOURCE_EXHAUSTED naming the setting; a completed upload no longer counts", async () => {
    const alice = token("alice");
    await abandoned(daemon.address, "a/1", "alice-1", randomBytes(10), { token: alice });
    await abandoned(daemon.address, "a/2", "alice-2", randomBytes(10), { token: alice });
    const third = await sendStream(daemon.address, { key: "a/3", uploadId: "alice-3", chunks: [randomBytes(10)], token: alice });
    expect([third.err?.code, third.err?.details]).toEqual([
      grpc.status.RESOURCE_EXHAUSTED,
      'caller "alice" has 2 resumable uploads open, the most allowed per caller (MAX_OPEN_UPLOADS_PER_CALLER=2); complete one, or wait for abandoned ones to expire (UPLOAD_EXPIRY_SECONDS=86400)',
    ]);
    // A resume is no new upload: it is let in.
    const resumed = await sendStream(daemon.address, { key: "a/1", uploadId: "alice-1", writeOffset: 10, chunks: [randomBytes(5)], token: alice });
    expect(resumed.err).toBeNull();
    await abandoned(daemon.address, "a/3", "alice-3", randomBytes(10), { token: alice });

    await abandoned(daemon.address, "b/1", "bob-1", randomBytes(10), { token: token("bob") });
    const total = await sendStream(daemon.address, { key: "b/2", uploadId: "bob-2", chunks: [randomBytes(10)], token: token("bob") });
    expect([total.err?.code, total.err?.details]).toEqual([
      grpc.status.RESOURCE_EXHAUSTED,
      "3 resumable uploads are open, the most the daemon keeps (MAX_OPEN_UPLOADS=3); complete one, or wait for abandoned ones to expire (UPLOAD_EXPIRY_SECONDS=86400)",
    ]);
    // A one-shot StoreStream is not bounded by either.
    const client = new FileStorageClient(daemon.address, { token: token("bob"), retries: 0 });
    try {
      await client.upload("b/one-shot", [randomBytes(10)]);
    } finally {
      client.close();
    }
    // Completing them frees their places.
    for (const [key, id, who] of [["a/2", "alice-2", "alice"], ["a/3", "alice-3", "alice"], ["b/1", "bob-1", "bob"]] as const) {
      expect((await sendStream(daemon.address, { key, uploadId: id, writeOffset: 10, chunks: [], token: token(who) })).err).toBeNull();
    }
    expect((await sendStream(daemon.address, { key: "b/2", uploadId: "bob-2", chunks: [randomBytes(10)], token: token("bob") })).err).toBeNull();
  });

  test("upload ids are per caller: another caller's id is unknown to QueryUpload and starts a separate upload", async () => {
    const a = randomBytes(100);
    expect((await sendStream(daemon.address, { key: "shared/x", uploadId: "same-id", chunks: [a], token: token("carol") })).err).toBeNull();
    expect((await queryUpload(daemon.address, "same-id", token("carol"))).res?.complete).toBe(true);
    expect((await queryUpload(daemon.address, "same-id", token("bob"))).err?.code).toBe(grpc.status.NOT_FOUND);
    const b = randomBytes(50);
    const bob = await sendStream(daemon.address, { key: "shared/y", uploadId: "same-id", chunks: [b], token: token("bob") });
    expect(bob.err).toBeNull();
    expect(Number(bob.res!.object!.size)).toBe(50);
  });

  test("QueryUpload needs the write right, on the upload's key; the key is never named to a caller outside it", async () => {
    const noRight = await queryUpload(daemon.address, "anything", token("reader"));
    expect([noRight.err?.code, noRight.err?.details]).toEqual([grpc.status.PERMISSION_DENIED, 'token "reader" lacks the "write" right']);
    const missing = await queryUpload(daemon.address, "anything");
    expect(missing.err?.code).toBe(grpc.status.UNAUTHENTICATED);

    // An upload whose key lies outside the caller's prefixes now (the tokens file changed since, say).
    await abandoned(daemon.address, "n/secret-name", "narrow-1", randomBytes(10), { token: token("narrow") });
    const file = writeTokenFile(dir.path, "tokens.json", [tokenEntry("narrow", token("narrow"), ["m/"], ["write"])]);
    expect(daemon.server.reload()).toEqual({ reloaded: true, entries: 1 });
    const outside = await queryUpload(daemon.address, "narrow-1", token("narrow"));
    expect([outside.err?.code, outside.err?.details]).toEqual([grpc.status.PERMISSION_DENIED, `upload "narrow-1" is for a key outside the caller's prefixes`]);
    expect(file).toBeDefined();
  });
});
