/**
 * The daemon's log destination over a real non-blocking socket: a reader that
 * stalls costs each line at most EAGAIN_WAIT_MS (then lines are dropped and
 * counted), a reader that comes back gets the count, and a reader that has
 * gone stops logging instead of throwing or retrying.
 */
import * as net from "node:net";
import * as path from "node:path";
import { EAGAIN_WAIT_MS, fdDestination } from "../../../server/log-destination.js";
import { makeTempDir, type TempDir } from "../../kit/temp-dir.js";

let dir: TempDir;
let server: net.Server;
let writer: net.Socket;
let reader: net.Socket;

beforeEach(async () => {
  dir = await makeTempDir("fs-logdest-");
  const socketPath = path.join(dir.path, "s");
  const accepted = new Promise<net.Socket>((resolve) => {
    server = net.createServer((s) => resolve(s));
  });
  await new Promise<void>((r) => server.listen(socketPath, () => r()));
  writer = net.connect(socketPath);
  await new Promise<void>((r) => writer.once("connect", () => r()));
  // Not read from: libuv would see the peer's close and close the descriptor under the test.
  writer.pause();
  reader = await accepted;
  reader.pause();
});
afterEach(async () => {
  writer.destroy();
  reader.destroy();
  await new Promise((r) => server.close(r));
  await dir.cleanup();
});

/** The writer's descriptor (libuv made it non-blocking), which the destination writes directly. */
const fdOf = (s: net.Socket) => (s as unknown as { _handle: { fd: number } })._handle.fd;
const line = (n: number) => JSON.stringify({ n, pad: "x".repeat(16 * 1024) }) + "\n";

test("a stalled reader costs a line at most the wait, then lines drop at once; a reader back gets the count", async () => {
  const dest = fdDestination(fdOf(writer));
  let n = 0;
  let slowest = 0;
  while (dest.dropped === 0) {
    const started = performance.now();
    dest.write(line(n++));
    slowest = Math.max(slowest, performance.now() - started);
    if (n > 10_000) throw new Error("the socket never filled");
  }
  expect(slowest).toBeLessThan(EAGAIN_WAIT_MS + 100);
  // While dropping, each line gets one try only.
  const started = performance.now();
  for (let i = 0; i < 20; i++) dest.write(line(n++));
  expect(performance.now() - started).toBeLessThan(50);
  expect(dest.dropped).toBe(21);
  expect(dest.stopped).toBe(false);

  // The reader drains; the next line goes out after a notice of the drops.
  const received: Buffer[] = [];
  reader.on("data", (b: Buffer) => received.push(b));
  reader.resume();
  await new Promise((r) => setTimeout(r, 200));
  dest.write(JSON.stringify({ msg: "back" }) + "\n");
  expect(dest.dropped).toBe(0);
  await new Promise((r) => setTimeout(r, 200));
  const lines = Buffer.concat(received).toString().split("\n").filter((l) => l !== "");
  // Every line is whole JSON: a drop never leaves half a line glued to the next.
  const parsed = lines.map((l) => JSON.parse(l) as { msg?: string });
  expect(parsed.at(-2)?.msg).toBe("21 log lines were dropped: stdout was not being read");
  expect(parsed.at(-1)?.msg).toBe("back");
});

test("a reader that has gone stops logging: no throw, no retry", async () => {
  const dest = fdDestination(fdOf(writer));
  reader.destroy();
  await new Promise((r) => setTimeout(r, 100));
  const started = performance.now();
  for (let i = 0; i < 100; i++) dest.write(line(i));
  expect(performance.now() - started).toBeLessThan(100);
  expect(dest.stopped).toBe(true);
});

test("a format rewrites every line, the dropped-lines notice too; a reader that has gone still stops logging", async () => {
  const dest = fdDestination(fdOf(writer), { format: (l) => `pretty(${(JSON.parse(l) as { msg?: string; n?: number }).msg ?? "n"})\n` });
  let n = 0;
  while (dest.dropped === 0) {
    dest.write(JSON.stringify({ n: n++, pad: "x".repeat(16 * 1024) }) + "\n");
    if (n > 100_000) throw new Error("the socket never filled");
  }
  const received: Buffer[] = [];
  reader.on("data", (b: Buffer) => received.push(b));
  reader.resume();
  await new Promise((r) => setTimeout(r, 200));
  dest.write(JSON.stringify({ msg: "back" }) + "\n");
  await new Promise((r) => setTimeout(r, 200));
  const lines = Buffer.concat(received).toString().split("\n").filter((l) => l !== "");
  expect(lines.slice(-2)).toEqual(["pretty(1 log lines were dropped: stdout was not being read)", "pretty(back)"]);
  expect(new Set(lines.slice(0, -2))).toEqual(new Set(["pretty(n)"]));

  reader.destroy();
  await new Promise((r) => setTimeout(r, 100));
  for (let i = 0; i < 100; i++) dest.write(JSON.stringify({ msg: "after" }) + "\n");
  expect(dest.stopped).toBe(true);
});
