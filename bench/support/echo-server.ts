/**
 * The baseline the daemon is measured against: a bare grpc-js service with
 * no protobuf, no storage and no checks. Messages are raw bytes.
 *
 *   Upload   (client stream) discards what it receives, answers its byte count (8 bytes, LE)
 *   Download (server stream) request = total (8 bytes LE) + chunk size (4 bytes LE);
 *            sends that many bytes from one prebuilt random block, honouring backpressure
 *   Echo     (unary)         answers the request bytes
 *
 * Run as its own process (`node dist/bench/support/echo-server.js`), it logs
 * {"msg":"echo server is serving","address":...}; startEchoServer() spawns it.
 * The server takes the same message limits as the daemon's; the client the
 * same channel options as FileStorageClient (the client package's
 * channelOptions()), so the ratio is the daemon's own cost.
 */
import { once } from "node:events";
import { randomBytes } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import { channelOptions } from "../../client/src/index.js";
import { spawnServerProcess, type DaemonProcess } from "../../test/kit/daemon-process.js";
import { MiB, mallocTuningWanted } from "./bench-settings.js";

const raw = {
  requestSerialize: (b: Buffer) => b,
  requestDeserialize: (b: Buffer) => b,
  responseSerialize: (b: Buffer) => b,
  responseDeserialize: (b: Buffer) => b,
};

/** The raw-bytes service definition shared by the server and its client. */
export const echoService: grpc.ServiceDefinition = {
  upload: { path: "/bench.Echo/Upload", requestStream: true, responseStream: false, ...raw },
  download: { path: "/bench.Echo/Download", requestStream: false, responseStream: true, ...raw },
  echo: { path: "/bench.Echo/Echo", requestStream: false, responseStream: false, ...raw },
};

export interface EchoClient extends grpc.Client {
  upload(cb: (err: grpc.ServiceError | null, res?: Buffer) => void): grpc.ClientWritableStream<Buffer>;
  download(req: Buffer): grpc.ClientReadableStream<Buffer>;
  echo(req: Buffer, cb: (err: grpc.ServiceError | null, res?: Buffer) => void): grpc.ClientUnaryCall;
}

/** A client of the echo server at `address`. */
export function echoClient(address: string): EchoClient {
  const Ctor = grpc.makeGenericClientConstructor(echoService, "Echo");
  return new Ctor(address, grpc.credentials.createInsecure(), channelOptions()) as unknown as EchoClient;
}

/** Spawns the echo server as its own process (with the same malloc tuning as the daemon). */
export function startEchoServer(): Promise<DaemonProcess> {
  return spawnServerProcess([__filename], {}, "echo server is serving", { mallocTuning: mallocTuningWanted(), label: "echo server" });
}

/** The Download request for `total` bytes in chunks of `chunkBytes`. */
export function downloadRequest(total: number, chunkBytes: number): Buffer {
  const req = Buffer.alloc(12);
  req.writeBigUInt64LE(BigInt(total), 0);
  req.writeUInt32LE(chunkBytes, 8);
  return req;
}

async function serve(): Promise<void> {
  // The daemon's limits (server/server.ts with the default 4 MiB unary limit and 1 MiB chunks).
  const server = new grpc.Server({
    "grpc.max_receive_message_length": 5 * MiB,
    "grpc.max_send_message_length": 5 * MiB,
  });
  const block = randomBytes(4 * MiB);
  server.addService(echoService, {
    upload(call: grpc.ServerReadableStream<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) {
      let received = 0;
      call.on("data", (chunk: Buffer) => (received += chunk.length));
      call.on("end", () => {
        const res = Buffer.alloc(8);
        res.writeBigUInt64LE(BigInt(received));
        cb(null, res);
      });
      call.on("error", () => undefined);
    },
    download(call: grpc.ServerWritableStream<Buffer, Buffer>) {
      const total = Number(call.request.readBigUInt64LE(0));
      const chunk = Math.min(call.request.readUInt32LE(8), block.length);
      let cancelled = false;
      call.on("cancelled", () => (cancelled = true));
      void (async () => {
        for (let sent = 0; sent < total && !cancelled; ) {
          const n = Math.min(chunk, total - sent);
          sent += n;
          if (!call.write(block.subarray(0, n))) await once(call, "drain");
        }
        call.end();
      })().catch(() => call.destroy());
    },
    echo(call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) {
      cb(null, call.request);
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  console.log(JSON.stringify({ msg: "echo server is serving", address: `127.0.0.1:${port}` }));
  process.once("SIGTERM", () => server.forceShutdown());
}

if (require.main === module) {
  serve().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
