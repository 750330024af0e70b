/**
 * The client package's pieces that need no daemon: CRC32C, value encoding
 * and kinds, option checks, the recommended channel options, and an
 * unreachable address. Against a real
 * daemon: test/rpc/client.test.ts.
 */
import { randomBytes } from "node:crypto";
import { crc32c as nativeCrc32c } from "@node-rs/crc32";
import { FileStorageClient, FileStorageError, channelOptions, crc32c, crc32cJs, decodeValue, encodeValue, status } from "../../../client/src/index.js";
import { DataKind } from "../../../gen/filestorage/v1/file_storage_pb.js";

describe("crc32c", () => {
  it("matches the check value of the Castagnoli polynomial", () => {
    expect(crc32cJs(Buffer.from("123456789"))).toBe(0xe3069283);
    expect(crc32cJs(new Uint8Array(0))).toBe(0);
  });

  it("table version equals @node-rs/crc32 on random buffers, whole and chained", () => {
    for (let i = 0; i < 200; i++) {
      const data = randomBytes(Math.floor(Math.random() * 5000));
      const whole = nativeCrc32c(data);
      expect(crc32cJs(data)).toBe(whole);
      const cut = Math.floor(Math.random() * (data.length + 1));
      expect(crc32cJs(data.subarray(cut), crc32cJs(data.subarray(0, cut)))).toBe(whole);
      expect(crc32c(data)).toBe(whole);
    }
  });

  it("handles unaligned views of a larger buffer", () => {
    const big = randomBytes(4099);
    const view = new Uint8Array(big.buffer, big.byteOffset + 3, 4000);
    expect(crc32cJs(view)).toBe(nativeCrc32c(Buffer.from(view)));
  });
});

describe("value encoding", () => {
  const text = (b: Uint8Array) => Buffer.from(b).toString("utf8");

  it("infers the kind from the value", () => {
    expect(encodeValue("hello").kind).toBe(DataKind.TEXT);
    expect(encodeValue(Buffer.from([1, 2])).kind).toBe(DataKind.BYTES);
    expect(encodeValue(new Uint8Array([1])).kind).toBe(DataKind.BYTES);
    for (const v of [{ a: 1 }, [1, "x"], 42, true, null]) {
      const { bytes, kind } = encodeValue(v);
      expect(kind).toBe(DataKind.JSON);
      expect(JSON.parse(text(bytes))).toEqual(v);
    }
  });

  it("keeps a JSON-looking string a string", () => {
    const { bytes, kind } = encodeValue('{"a":1}');
    expect(kind).toBe(DataKind.TEXT);
    expect(decodeValue(bytes, kind)).toBe('{"a":1}');
    const asJson = encodeValue('{"a":1}', "json");
    expect(decodeValue(asJson.bytes, asJson.kind)).toBe('{"a":1}');
  });

  it("honours an explicit kind and sends bytes as they are", () => {
    expect(encodeValue("x", "bytes").kind).toBe(DataKind.BYTES);
    const raw = encodeValue(Buffer.from('{"b":2}'), "json");
    expect(raw.kind).toBe(DataKind.JSON);
    expect(decodeValue(raw.bytes, raw.kind)).toEqual({ b: 2 });
  });

  it("rejects what it cannot encode with INVALID_ARGUMENT", () => {
    for (const bad of [undefined, () => 1, 10n]) {
      expect(() => encodeValue(bad)).toThrow(FileStorageError);
    }
    expect(() => encodeValue({ a: 1 }, "text")).toThrow(/needs a string or bytes/);
    try {
      encodeValue(undefined);
    } catch (err) {
      expect((err as FileStorageError).code).toBe(status.INVALID_ARGUMENT);
    }
  });

  it("decodes bytes (and UNSPECIFIED) as a Buffer", () => {
    expect(Buffer.isBuffer(decodeValue(new Uint8Array([0xff]), DataKind.UNSPECIFIED))).toBe(true);
  });
});

describe("FileStorageClient options", () => {
  it("rejects bad values naming the option", () => {
    expect(() => new FileStorageClient("127.0.0.1:1", { deadlineMs: 0 })).toThrow(/deadlineMs/);
    expect(() => new FileStorageClient("127.0.0.1:1", { retries: -1 })).toThrow(/retries/);
  });

  it("reports an unreachable daemon as UNAVAILABLE after retrying", async () => {
    const client = new FileStorageClient("127.0.0.1:1", { retries: 1, deadlineMs: 2000 });
    try {
      await expect(client.exists("a")).rejects.toMatchObject({ name: "FileStorageError", code: status.UNAVAILABLE });
    } finally {
      client.close();
    }
  });
});

describe("channelOptions", () => {
  const MiB = 1024 * 1024;

  it("recommends 16 MiB message limits and a 16 MiB flow-control window", () => {
    expect(channelOptions()).toEqual({
      "grpc.max_receive_message_length": 16 * MiB,
      "grpc.max_send_message_length": 16 * MiB,
      "grpc-node.flow_control_window": 16 * MiB,
    });
  });

  it("fits a unary value of maxUnaryBytes with room for its framing, names the TLS server, and lets given options win", () => {
    const opts = channelOptions({
      maxUnaryBytes: 32 * MiB,
      tls: { serverNameOverride: "storage.internal" },
      channelOptions: { "grpc-node.flow_control_window": MiB, "grpc.keepalive_time_ms": 5000 },
    });
    expect(opts).toEqual({
      "grpc.max_receive_message_length": 33 * MiB,
      "grpc.max_send_message_length": 33 * MiB,
      "grpc-node.flow_control_window": MiB,
      "grpc.ssl_target_name_override": "storage.internal",
      "grpc.keepalive_time_ms": 5000,
    });
  });
});
