/** The generated, untyped-convenience stub: for tests that must send what
 * the client package never would (missing headers, bad kinds, bad tokens). */
import * as grpc from "@grpc/grpc-js";
import { FileStorageService } from "../../gen/filestorage/v1/file_storage_pb.js";
import { clientConstructor, type ServiceClient } from "@filestorage/client/grpc-binding";

export type RawClient = ServiceClient<typeof FileStorageService.method>;

export function rawClient(address: string): RawClient {
  const Ctor = clientConstructor(FileStorageService);
  return new Ctor(address, grpc.credentials.createInsecure(), { "grpc.max_receive_message_length": 64 << 20 });
}

/** Promisified unary call returning the error (a test expects one). */
export function unaryCall<Req, Res>(
  fn: (req: Req, md: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: Res) => void) => unknown,
  client: grpc.Client,
  req: Req,
  md = new grpc.Metadata(),
): Promise<{ err: grpc.ServiceError | null; res?: Res }> {
  return new Promise((resolve) => {
    fn.call(client, req, md, { deadline: Date.now() + 30_000 }, (err, res) => resolve({ err, res }));
  });
}
