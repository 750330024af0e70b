/**
 * The streaming paths the stream benches time: a FileStorageClient upload and
 * download of `total` incompressible bytes in 1 MiB chunks, and the same bytes
 * through the bare grpc-js echo server (bench/support/echo-server.ts). Each
 * checks the byte count it moved.
 */
import { once } from "node:events";
import type { FileStorageClient } from "../../client/src/index.js";
import { downloadRequest, type EchoClient } from "./echo-server.js";
import { MiB } from "./bench-settings.js";

export const CHUNK = MiB;
const KEY = "bench/stream.bin";

/** `total` bytes as views of one random block, as a network source would hand them over. */
export function* pieces(block: Buffer, total: number): Generator<Buffer> {
  for (let sent = 0; sent < total; sent += block.length) yield block.subarray(0, Math.min(block.length, total - sent));
}

export async function productUp(client: FileStorageClient, block: Buffer, total: number, key = KEY): Promise<void> {
  const info = await client.upload(key, pieces(block, total), { size: total });
  if (Number(info.size) !== total) throw new Error(`daemon stored ${info.size} bytes, expected ${total}`);
}

export async function productDown(client: FileStorageClient, total: number, key = KEY): Promise<void> {
  const { stream } = await client.download(key);
  let received = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) received += chunk.length;
  if (received !== total) throw new Error(`downloaded ${received} bytes, expected ${total}`);
}

export async function echoUp(client: EchoClient, block: Buffer, total: number): Promise<void> {
  let call!: ReturnType<EchoClient["upload"]>;
  const answer = new Promise<Buffer>((resolve, reject) => {
    call = client.upload((err, res) => (err ? reject(err) : resolve(res!)));
  });
  for (const piece of pieces(block, total)) {
    if (!call.write(piece)) await Promise.race([once(call, "drain"), answer]);
  }
  call.end();
  const received = Number((await answer).readBigUInt64LE(0));
  if (received !== total) throw new Error(`echo server received ${received} bytes, expected ${total}`);
}

export async function echoDown(client: EchoClient, total: number): Promise<void> {
  let received = 0;
  for await (const chunk of client.download(downloadRequest(total, CHUNK)) as AsyncIterable<Buffer>) received += chunk.length;
  if (received !== total) throw new Error(`echo server sent ${received} bytes, expected ${total}`);
}
