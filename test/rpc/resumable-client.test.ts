/**
 * The client package's resumable upload() against the real in-process
 * daemon, through a TCP proxy that drops the connection at chosen offsets:
 * it asks QueryUpload where the upload stands and continues from the
 * committed size (a file re-read from there, another source from its replay
 * window), progress continuing from there; it continues an upload another
 * client began when given its id; it gives up clearly when it cannot go on.
 * (The 1 GiB run with 50 drops and the daemon's memory, and kill -9 of the
 * daemon, are in test/process/resumable-uploads.test.ts.)
 */
import { createHash, randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { Readable } from "node:stream";
import { FileStorageClient, type UploadOptions } from "../../client/src/index.js";
import { startDaemon, type TestDaemon } from "../support/daemon.js";
import { failure } from "../support/expect-failure.js";
import { makeTempDir, type TempDir } from "../kit/temp-dir.js";
import { startProxy, type TcpProxy } from "../kit/tcp-proxy.js";
import { queryUpload } from "../support/upload-streams.js";

const MiB = 1024 * 1024;
let daemon: TestDaemon;
let proxy: TcpProxy;
let tmp: TempDir;
let direct: FileStorageClient;
const clients: FileStorageClient[] = [];

beforeAll(async () => {
  tmp = await makeTempDir("fs-resume-client-");
  daemon = await startDaemon();
  proxy = await startProxy(Number(daemon.address.split(":")[1]));
  direct = new FileStorageClient(daemon.address, { retries: 0 });
});
afterAll(async () => {
  clients.forEach((c) => c.close());
  direct?.close();
  await proxy?.close();
  await daemon?.stop();
  await tmp?.cleanup();
});
afterEach(() => proxy.restore());

/** A client through the proxy. */
function viaProxy(): FileStorageClient {
  const c = new FileStorageClient(proxy.address, { retries: 0 });
  clients.push(c);
  return c;
}

function writeFile(name: string, bytes: number): { file: string; data: Buffer } {
  const data = randomBytes(bytes);
  const file = path.join(tmp.path, name);
  fs.writeFileSync(file, data);
  return { file, data };
}

function* pieces(data: Buffer, size: number): Generator<Buffer> {
  for (let at = 0; at < data.length; at += size) yield data.subarray(at, at + size);
}

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");

async function storedSha(key: string): Promise<string> {
  const { stream } = await direct.download(key);
  const hash = createHash("sha256");
  for await (const chunk of stream) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/** Upload options recording every progress call. */
function recording(extra: UploadOptions = {}): { opts: UploadOptions; progress: number[] } {
  const progress: number[] = [];
  return { progress, opts: { ...extra, onProgress: (n) => void progress.push(n) } };
}

/** Offsets of the progress calls where the upload went back: each resume starts from the committed size. */
const resumes = (progress: number[]) => progress.filter((n, i) => i > 0 && n < progress[i - 1]!);

test("a file: every dropped connection is resumed from the committed size; the object is the file, progress continues from there", async () => {
  const { file, data } = writeFile("drops.bin", 48 * MiB);
  const drops = proxy.drops;
  proxy.dropAt([3, 9, 17, 25, 33, 41].map((m) => m * MiB + 12_345));
  const { opts, progress } = recording({ resumable: true });
  const info = await viaProxy().upload("c/drops", file, opts);
  expect(proxy.drops - drops).toBe(6);
  expect(Number(info.size)).toBe(data.length);
  expect(await storedSha("c/drops")).toBe(sha256(data));
  const back = resumes(progress);
  // One per drop, and one more whenever a resume asked before the daemon had checkpointed the break (OUT_OF_RANGE, then asked again).
  expect(back.length).toBeGreaterThanOrEqual(6);
  // Each resume continues from what the daemon held: later ones from further on (the first may
  // come before the daemon took any byte of the first stream), never back to the start.
  expect(back).toEqual([...back].sort((x, y) => x - y));
  expect(back.slice(1).every((n) => n > 0)).toBe(true);
  expect(progress[progress.length - 1]).toBe(data.length);
});

test("a stream (not a file): resumed from its replay window", async () => {
  const data = randomBytes(24 * MiB);
  const drops = proxy.drops;
  proxy.dropAt([5 * MiB, 14 * MiB]);
  const source = Readable.from(pieces(data, 256 * 1024));
  const info = await viaProxy().upload("c/stream", source, { resumable: true });
  expect(proxy.drops - drops).toBe(2);
  expect(Number(info.size)).toBe(data.length);
  expect(await storedSha("c/stream")).toBe(sha256(data));
});

test("a stream whose committed size is outside the replay window fails clearly (FAILED_PRECONDITION naming replayWindowBytes)", async () => {
  const data = randomBytes(32 * MiB);
  proxy.dropAt([12 * MiB]);
  const err = await failure(viaProxy().upload("c/window", pieces(data, MiB), { resumable: true, replayWindowBytes: 1024 }));
  expect(err.codeName).toBe("FAILED_PRECONDITION");
  expect(err.details).toMatch(/^the upload continues at byte \d+, but only the last 1024 bytes sent \(from byte \d+\) are kept to send again \(replayWindowBytes\)/);
  expect(await direct.exists("c/window")).toBe(false);
});

test("given an upload id, upload() continues the upload another client began, reading the file from the committed size", async () => {
  const { file, data } = writeFile("handover.bin", 24 * MiB);
  proxy.dropAt([10 * MiB]);
  // The first client gives up at the first drop (no attempts left)...
  const first = await failure(viaProxy().upload("c/handover", file, { uploadId: "handover-1", maxResumeAttempts: 0 }));
  expect(first.details).toContain('upload "handover-1" gave up after 0 attempts in a row without progress');
  // The daemon checkpoints the broken stream as soon as it notices the break.
  let held = (await direct.queryUpload("handover-1"))!;
  while (held.committedSize === 0) held = (await direct.queryUpload("handover-1"))!;
  expect(held.complete).toBe(false);
  // ...and another one (another process, say) takes over from there.
  const { opts, progress } = recording({ uploadId: "handover-1" });
  const info = await direct.upload("c/handover", file, opts);
  expect(progress[0]).toBe(held.committedSize);
  expect(Number(info.size)).toBe(data.length);
  expect(await storedSha("c/handover")).toBe(sha256(data));
  const done = (await direct.queryUpload("handover-1"))!;
  expect([done.complete, done.object?.generation]).toEqual([true, info.generation]);
  // Given the id of a completed upload, upload() answers its object without sending anything.
  const again = recording({ uploadId: "handover-1" });
  expect((await direct.upload("c/handover", file, again.opts)).generation).toBe(info.generation);
  expect(again.progress).toEqual([]);
});

test("a daemon that stays unreachable: upload() gives up after maxResumeAttempts failures in a row, saying so; the upload stays resumable", async () => {
  const { file } = writeFile("gone.bin", 16 * MiB);
  proxy.dropAt([6 * MiB]);
  const c = viaProxy();
  const drops = proxy.drops;
  const sent = c.upload("c/gone", file, { uploadId: "gone-1", maxResumeAttempts: 3 });
  // Once the connection drops, the proxy refuses every new one.
  while (proxy.drops === drops) await new Promise((r) => setTimeout(r, 5));
  proxy.cut();
  const err = await failure(sent);
  expect(err.codeName).toBe("UNAVAILABLE");
  expect(err.details).toContain('(upload "gone-1" gave up after 3 attempts in a row without progress; resume it later with the same upload id)');
  const { res } = await queryUpload(daemon.address, "gone-1");
  expect(res?.complete).toBe(false);
  proxy.restore();
  await c.upload("c/gone", file, { uploadId: "gone-1" });
  expect((await direct.queryUpload("gone-1"))?.complete).toBe(true);
});

test("a first stream that never reached the daemon (unknown upload id) starts again from byte 0", async () => {
  const { file, data } = writeFile("early.bin", 8 * MiB);
  // Dropped within the first few KiB: before the daemon saw the header, or just after.
  const drops = proxy.drops;
  proxy.dropAt([3000]);
  const info = await viaProxy().upload("c/early", file, { resumable: true });
  expect(proxy.drops - drops).toBe(1);
  expect(await storedSha("c/early")).toBe(sha256(data));
  expect(Number(info.size)).toBe(data.length);
});

test("a failure a new stream cannot mend is not retried: a JSON upload that does not parse fails INVALID_ARGUMENT once, its upload discarded", async () => {
  const err = await failure(direct.upload("c/bad-json", [Buffer.from('{"a": ')], { uploadId: "bad-json-1", kind: "json" }));
  expect(err.codeName).toBe("INVALID_ARGUMENT");
  expect(await direct.queryUpload("bad-json-1")).toBeNull();
});
