/** The grpc-js channel options the client recommends (and FileStorageClient uses). */
import type * as grpc from "@grpc/grpc-js";
import type { FileStorageClientOptions } from "./client-options.js";

const MiB = 1024 * 1024;

/**
 * The channel options for a client of the daemon: message limits that fit a
 * unary value of `maxUnaryBytes` (default 4 MiB, the daemon's
 * MAX_UNARY_BYTES) with its ObjectInfo and framing, at least 16 MiB; a 16 MiB
 * HTTP/2 flow-control window, so uploads run at memory speed instead of in
 * 64 KiB steps; the TLS server name override when given; then
 * `opts.channelOptions`, which win. A grpc-js client of another service
 * (a benchmark's baseline) gets the same with no options.
 */
export function channelOptions(opts: Pick<FileStorageClientOptions, "maxUnaryBytes" | "tls" | "channelOptions"> = {}): grpc.ChannelOptions {
  const messageBytes = Math.max(16 * MiB, (opts.maxUnaryBytes ?? 4 * MiB) + MiB);
  const serverNameOverride = typeof opts.tls === "object" ? opts.tls.serverNameOverride : undefined;
  return {
    "grpc.max_receive_message_length": messageBytes,
    "grpc.max_send_message_length": messageBytes,
    "grpc-node.flow_control_window": 16 * MiB,
    ...(serverNameOverride ? { "grpc.ssl_target_name_override": serverNameOverride } : {}),
    ...opts.channelOptions,
  };
}
