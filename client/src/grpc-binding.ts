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

/**
 * The bytes of a message whose only field set is a `bytes` member of a oneof
 * (a stream's data chunk), encoded straight into one buffer: the field's tag,
 * its length and a single copy of the data. protobuf-es's general writer
 * would grow a buffer by doubling, slice it, and Buffer.from would copy it
 * once more: three copies and megabytes of garbage per 1 MiB chunk. Other
 * messages (or another oneof case) go through toBinary.
 */
export function chunkFastPath(fieldNumber: number, oneof: string, caseName: string, opts: { scratch?: boolean } = {}) {
  const tag = (fieldNumber << 3) | 2;
  let scratch = Buffer.alloc(0);
  return (msg: unknown): Buffer | undefined => {
    const payload = (msg as Record<string, { case?: string; value?: unknown } | undefined>)[oneof];
    if (payload?.case !== caseName || !(payload.value instanceof Uint8Array)) return undefined;
    const data = payload.value;
    let varintBytes = 1;
    for (let v = data.byteLength; v >= 0x80; v = Math.floor(v / 128)) varintBytes++;
    const size = 1 + varintBytes + data.byteLength;
    if (opts.scratch && scratch.byteLength < size) scratch = Buffer.allocUnsafe(Math.max(size, 2 * scratch.byteLength));
    const out = opts.scratch ? scratch.subarray(0, size) : Buffer.allocUnsafe(size);
    out[0] = tag;
    let at = 1;
    for (let v = data.byteLength; ; v = Math.floor(v / 128)) {
      if (v < 0x80) {
        out[at++] = v;
        break;
      }
      out[at++] = (v & 0x7f) | 0x80;
    }
    out.set(data, at);
    return out;
  };
}

/**
 * Faster encoders for some messages of a service, by method local name, for
 * its requests and/or responses; one that answers undefined leaves the
 * message to toBinary.
 */
export type FastEncoders = Record<string, { request?: (msg: unknown) => Buffer | undefined; response?: (msg: unknown) => Buffer | undefined }>;

/**
 * What a server receives in place of a request whose bytes do not decode as
 * the method's request message (truncated, wrong wire types, invalid UTF-8 in
 * a string field, nesting too deep). grpc-js answers INTERNAL when a
 * deserializer throws, before any handler runs; with this value the handler
 * sees the bad message and can answer INVALID_ARGUMENT itself.
 */
export class UndecodableRequest {
  constructor(
    /** Full method path, e.g. "/filestorage.v1.FileStorageService/Store". */
    readonly method: string,
    /** The request message's type name, e.g. "filestorage.v1.StoreRequest". */
    readonly messageType: string,
    /** The decoder's reason, without the bytes. */
    readonly reason: string,
  ) {}
}

/** True when a server-side request (or one stream message) did not decode. */
export function isUndecodable(message: unknown): message is UndecodableRequest {
  return message instanceof UndecodableRequest;
}

/**
 * The grpc-js ServiceDefinition of a protobuf-es service, keyed by local name.
 * Its request deserializer (used by servers only) never throws: bytes that are
 * not a valid request message become an UndecodableRequest, for unary and
 * server-stream requests and for each message of a client stream; handlers
 * must check with isUndecodable. Clients (serializer and response
 * deserializer) behave as plain protobuf-es encoding and decoding.
 */
export function serviceDefinition<S extends GenServiceMethods>(service: GenService<S>, fastEncoders: FastEncoders = {}): grpc.ServiceDefinition {
  const definition: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const method of service.methods) {
    const input = method.input;
    const output = method.output;
    const path = `/${service.typeName}/${method.name}`;
    const fast = fastEncoders[method.localName];
    definition[method.localName] = {
      path,
      originalName: method.name,
      requestStream: method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming",
      responseStream: method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming",
      requestSerialize: (msg) => fast?.request?.(msg) ?? bufferOf(toBinary(input, msg as MessageShape<typeof input>, writeOptions)),
      requestDeserialize: (buf: Buffer) => {
        try {
          return fromBinary(input, buf);
        } catch (err) {
          // Includes RangeError from a message nested too deep for the stack.
          return new UndecodableRequest(path, input.typeName, err instanceof Error ? err.message : String(err));
        }
      },
      responseSerialize: (msg) => fast?.response?.(msg) ?? bufferOf(toBinary(output, msg as MessageShape<typeof output>, writeOptions)),
      responseDeserialize: (buf: Buffer) => fromBinary(output, buf),
    };
  }
  return definition;
}

/** A Buffer view of encoded bytes (no copy). */
function bufferOf(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** A typed grpc-js client class for a protobuf-es service. */
export function clientConstructor<S extends GenServiceMethods>(service: GenService<S>, fastEncoders: FastEncoders = {}): ServiceClientConstructor<S> {
  return grpc.makeGenericClientConstructor(
    serviceDefinition(service, fastEncoders),
    service.typeName,
  ) as unknown as ServiceClientConstructor<S>;
}

/**
 * The handlers of a protobuf-es service as grpc-js's untyped implementation
 * (what Server.addService takes): the one place the typed handlers meet
 * grpc-js's index-signature type.
 */
export function serviceImplementation<S extends GenServiceMethods>(handlers: ServiceHandlers<S>): grpc.UntypedServiceImplementation {
  return handlers as unknown as grpc.UntypedServiceImplementation;
}
