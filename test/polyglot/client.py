"""A FileStorage caller written in Python, against a running daemon.

Usage: python client.py HOST:PORT   (with the stubs generated from
proto/filestorage/v1/file_storage.proto on PYTHONPATH)

It exercises the API the way a Python service would and prints one JSON
document of what it observed on stdout; test/process/polyglot.test.ts asserts it.
Observations are reported rather than asserted here so that a failure in
jest shows every value at once. Exits non-zero only when the script itself
breaks (an unexpected RPC error, a stub import failure).
"""

import json
import random
import sys

import grpc
from google.protobuf import json_format, struct_pb2

from filestorage.v1 import file_storage_pb2 as pb
from filestorage.v1 import file_storage_pb2_grpc as pb_grpc

TIMEOUT_S = 30
STREAM_SIZE = 5 * 1024 * 1024
CHUNK_SIZE = 256 * 1024
STREAM_OFFSET = 1024 * 1024 + 123


def _crc32c_table():
    # CRC-32C (Castagnoli), reflected polynomial 0x82F63B78.
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc32c_table()


def crc32c(data, crc=0):
    """Running CRC32C: chain chunk by chunk as crc = crc32c(chunk, crc)."""
    crc ^= 0xFFFFFFFF
    table = _TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def struct_of(value):
    s = struct_pb2.Struct()
    s.update(value)
    return s


def kind_name(kind):
    return pb.DataKind.Name(kind)


def rpc_error(call):
    """Runs call(); returns the status code name and details of its RpcError."""
    try:
        call()
    except grpc.RpcError as err:
        return {"code": err.code().name, "details": err.details()}
    return {"code": "OK", "details": ""}


def unary_round_trips(stub):
    metadata = {"tags": ["python", "polyglot"], "score": 42.5}
    values = [
        ("py/text.txt", pb.DATA_KIND_TEXT, "héllo wörld ✓".encode("utf-8")),
        ("py/result.json", pb.DATA_KIND_JSON, json.dumps({"answer": 42, "items": [1, "two", None]}).encode()),
        # Every byte value, invalid UTF-8 included: must come back as bytes, not None.
        ("py/blob.bin", pb.DATA_KIND_BYTES, bytes(range(256)) * 4),
        # A JSON-looking string stored as TEXT stays TEXT.
        ("py/looks-like.json", pb.DATA_KIND_TEXT, b'{"a": 1}'),
    ]
    results = []
    for key, kind, data in values:
        stored = stub.Store(
            pb.StoreRequest(key=key, data=data, kind=kind, metadata=struct_of(metadata)),
            timeout=TIMEOUT_S,
        )
        got = stub.Retrieve(pb.RetrieveRequest(key=key), timeout=TIMEOUT_S)
        results.append({
            "key": key,
            "sent_kind": kind_name(kind),
            "stored_kind": kind_name(stored.object.kind),
            "retrieved_kind": kind_name(got.object.kind),
            "bytes_equal": got.data == data,
            "size": got.object.size,
            "sent_size": len(data),
            "crc32c_server": got.object.crc32c,
            "crc32c_python": crc32c(data),
            "generation": got.object.generation,
            "metadata": json_format.MessageToDict(got.object.metadata),
            "sent_metadata": metadata,
            "json_equal": (json.loads(got.data) == json.loads(data)) if kind == pb.DATA_KIND_JSON else None,
        })
    return results


def upload_requests(key, data, trailer_crc):
    yield pb.StoreStreamRequest(header=pb.StoreStreamHeader(
        key=key,
        kind=pb.DATA_KIND_BYTES,
        content_type="application/octet-stream",
        metadata=struct_of({"tags": ["model", "v1"], "epoch": 3}),
        size=len(data),
    ))
    for start in range(0, len(data), CHUNK_SIZE):
        yield pb.StoreStreamRequest(chunk=data[start:start + CHUNK_SIZE])
    yield pb.StoreStreamRequest(trailer=pb.StoreStreamTrailer(crc32c=trailer_crc, size=len(data)))


def streaming(stub):
    data = random.Random(20240501).randbytes(STREAM_SIZE)
    crc = 0
    for start in range(0, len(data), CHUNK_SIZE):
        crc = crc32c(data[start:start + CHUNK_SIZE], crc)
    stored = stub.StoreStream(upload_requests("py/model.bin", data, crc), timeout=TIMEOUT_S * 2)

    messages = list(stub.RetrieveStream(
        pb.RetrieveStreamRequest(key="py/model.bin", offset=STREAM_OFFSET), timeout=TIMEOUT_S * 2,
    ))
    first = messages[0].WhichOneof("payload") if messages else None
    chunks = [m.chunk for m in messages[1:] if m.WhichOneof("payload") == "chunk"]
    # Compare piece by piece rather than joining: the received bytes must be
    # exactly data[offset:], in order.
    pos = STREAM_OFFSET
    tail_equal = True
    for chunk in chunks:
        if data[pos:pos + len(chunk)] != chunk:
            tail_equal = False
            break
        pos += len(chunk)
    received = sum(len(c) for c in chunks)

    bad_crc = rpc_error(lambda: stub.StoreStream(
        upload_requests("py/model-bad-crc.bin", data[:CHUNK_SIZE * 2], 0xDEADBEEF), timeout=TIMEOUT_S,
    ))
    bad_crc_exists = stub.Exists(pb.ExistsRequest(key="py/model-bad-crc.bin"), timeout=TIMEOUT_S).exists

    return {
        "size": len(data),
        "crc32c_python": crc,
        "stored_size": stored.object.size,
        "stored_crc32c": stored.object.crc32c,
        "stored_kind": kind_name(stored.object.kind),
        "stored_metadata": json_format.MessageToDict(stored.object.metadata),
        "offset": STREAM_OFFSET,
        "first_message": first,
        "first_info_size": messages[0].object.size if first == "object" else None,
        "chunk_messages": len(chunks),
        "received_bytes": received,
        "tail_equal": tail_equal and received == len(data) - STREAM_OFFSET,
        "bad_crc": bad_crc,
        "bad_crc_exists": bad_crc_exists,
    }


def listing(stub):
    for key in ["py/list/a", "py/list/b/1", "py/list/b/2", "py/list/c", "py/listing-not-under"]:
        stub.Store(pb.StoreRequest(key=key, data=b"x", kind=pb.DATA_KIND_BYTES), timeout=TIMEOUT_S)
    page = stub.ListKeys(pb.ListKeysRequest(prefix="py/list/", delimiter="/"), timeout=TIMEOUT_S)
    return {"keys": list(page.keys), "prefixes": list(page.prefixes), "next_page_token": page.next_page_token}


def errors(stub):
    return {
        "dot_dot_key": rpc_error(lambda: stub.Store(
            pb.StoreRequest(key="../escape", data=b"x"), timeout=TIMEOUT_S)),
        "newline_key": rpc_error(lambda: stub.Retrieve(
            pb.RetrieveRequest(key="a\nb"), timeout=TIMEOUT_S)),
        "bad_json": rpc_error(lambda: stub.Store(
            pb.StoreRequest(key="py/bad.json", data=b"{not json", kind=pb.DATA_KIND_JSON), timeout=TIMEOUT_S)),
        "missing": rpc_error(lambda: stub.Retrieve(
            pb.RetrieveRequest(key="py/never-stored"), timeout=TIMEOUT_S)),
    }


def stats(stub):
    s = stub.GetStats(pb.GetStatsRequest(), timeout=TIMEOUT_S)
    return {
        "initialized": s.initialized,
        "local_fallback_enabled": s.local_fallback_enabled,
        "total_operations": s.total_operations,
        "successful_operations": s.successful_operations,
        "failed_operations": s.failed_operations,
        "cache_enabled": s.cache_enabled,
        "version": s.version,
        "methods": sorted(op.method for op in s.operations),
    }


def main():
    address = sys.argv[1]
    with grpc.insecure_channel(address) as channel:
        grpc.channel_ready_future(channel).result(timeout=TIMEOUT_S)
        stub = pb_grpc.FileStorageServiceStub(channel)
        result = {
            "self_test_crc32c": crc32c(b"123456789"),
            "unary": unary_round_trips(stub),
            "stream": streaming(stub),
            "list": listing(stub),
            "errors": errors(stub),
            "stats": stats(stub),
        }
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
