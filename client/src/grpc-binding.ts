/**
 * The grpc-js binding for protobuf-es v2 services: turns a generated service
 * descriptor into a grpc-js ServiceDefinition (for servers) and a typed
 * client constructor. Generic: it knows nothing about FileStorage.
 */
import * as grpc from "@grpc/grpc-js";
import { fromBinary, toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";

type In<M> = M extends { input: infer I extends DescMessage } ? MessageShape<I> : never;
type Out<M> = M extends { output: infer O extends DescMessage } ? MessageShape<O> : never;

/** grpc-js handler types, one per method, keyed by the method's local name. */
export type ServiceHandlers<S extends GenServiceMethods> = {
  [K in keyof S]: S[K]["methodKind"] extends "unary"
    ? grpc.handleUnaryCall<In<S[K]>, Out<S[K]>>
    : S[K]["methodKind"] extends "client_streaming"
      ? grpc.handleClientStreamingCall<In<S[K]>, Out<S[K]>>
      : S[K]["methodKind"] extends "server_streaming"
        ? grpc.handleServerStreamingCall<In<S[K]>, Out<S[K]>>
        : grpc.handleBidiStreamingCall<In<S[K]>, Out<S[K]>>;
};

type UnaryCallback<O> = (err: grpc.ServiceError | null, res?: O) => void;

/** grpc-js client method types, one per method, keyed by the method's local name. */
export type ServiceClientMethods<S extends GenServiceMethods> = {
  [K in keyof S]: S[K]["methodKind"] extends "unary"
    ? (req: In<S[K]>, md: grpc.Metadata, opts: grpc.CallOptions, cb: UnaryCallback<Out<S[K]>>) => grpc.ClientUnaryCall
    : S[K]["methodKind"] extends "client_streaming"
      ? (md: grpc.Metadata, opts: grpc.CallOptions, cb: UnaryCallback<Out<S[K]>>) => grpc.ClientWritableStream<In<S[K]>>
      : S[K]["methodKind"] extends "server_streaming"
        ? (req: In<S[K]>, md: grpc.Metadata, opts: grpc.CallOptions) => grpc.ClientReadableStream<Out<S[K]>>
        : (md: grpc.Metadata, opts: grpc.CallOptions) => grpc.ClientDuplexStream<In<S[K]>, Out<S[K]>>;
};

export type ServiceClient<S extends GenServiceMethods> = grpc.Client & ServiceClientMethods<S>;

export type ServiceClientConstructor<S extends GenServiceMethods> = new (
  address: string,
  credentials: grpc.ChannelCredentials,
  options?: grpc.ClientOptions,
) => ServiceClient<S>;

// Messages are encoded without reading unknown fields back out, which keeps
// encoding symmetric with other languages' implementations.
const writeOptions = { writeUnknownFields: false } as const;

/** The grpc-js ServiceDefinition of a protobuf-es service, keyed by local name. */
export function serviceDefinition<S extends GenServiceMethods>(service: GenService<S>): grpc.ServiceDefinition {
  const definition: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const method of service.methods) {
    const input = method.input;
    const output = method.output;
    definition[method.localName] = {
      path: `/${service.typeName}/${method.name}`,
      originalName: method.name,
      requestStream: method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming",
      responseStream: method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming",
      requestSerialize: (msg) => Buffer.from(toBinary(input, msg as MessageShape<typeof input>, writeOptions)),
      requestDeserialize: (buf: Buffer) => fromBinary(input, buf),
      responseSerialize: (msg) => Buffer.from(toBinary(output, msg as MessageShape<typeof output>, writeOptions)),
      responseDeserialize: (buf: Buffer) => fromBinary(output, buf),
    };
  }
  return definition;
}

/** A typed grpc-js client class for a protobuf-es service. */
export function clientConstructor<S extends GenServiceMethods>(service: GenService<S>): ServiceClientConstructor<S> {
  return grpc.makeGenericClientConstructor(
    serviceDefinition(service),
    service.typeName,
  ) as unknown as ServiceClientConstructor<S>;
}
