"""The streaming RPCs at constant memory: StoreStream (header, chunks, CRC32C trailer)
and RetrieveStream (ObjectInfo, then chunks), and the chunk sources an upload reads."""

from __future__ import annotations

import asyncio
import os
from typing import Any, AsyncIterator, Iterator, Optional, Tuple

import grpc

from ._gen import file_storage_pb2 as pb
from .connection import Connection
from .crc32c import crc32c
from .errors import FileStorageError, invalid_argument

MiB = 1024 * 1024
# What grpc.aio reports when a write meets a call that has ended; the call's real
# status replaces it moments later.
_CORE_WRITE_ERROR = "Internal error from Core"


async def send_store_stream(conn: Connection, header: pb.StoreStreamHeader, chunks: AsyncIterator[bytes]) -> pb.ObjectInfo:
    """Sends ``header``, every chunk (each awaited, so no more than grpc's buffers are in
    flight), and a trailer with the size and CRC32C of all of it: the daemon stores nothing
    when they differ from what it received (DATA_LOSS). Raises FileStorageError; a failing
    ``chunks`` source cancels the call and its error propagates."""
    call = conn.stub().StoreStream(metadata=conn.metadata)
    crc = 0
    size = 0
    try:
        await call.write(pb.StoreStreamRequest(header=header))
        async for chunk in chunks:
            if call.done():
                break  # the daemon ended the call (a bad header, a precondition): its status follows
            crc = crc32c(chunk, crc)
            size += len(chunk)
            await call.write(pb.StoreStreamRequest(chunk=chunk))
        if not call.done():
            await call.write(pb.StoreStreamRequest(trailer=pb.StoreStreamTrailer(crc32c=crc, size=size)))
            await call.done_writing()
        res = await call
    except (grpc.RpcError, asyncio.InvalidStateError):
        # A write that meets a call the daemon already ended fails with a local INTERNAL
        # ("Internal error from Core"); the daemon's own status usually replaces it.
        failure = await _final_status(call)
        if failure.details == _CORE_WRITE_ERROR:
            failure = await _explain_lost_status(conn, header)
        raise failure from None
    except BaseException:
        call.cancel()
        raise
    return res.object


async def _final_status(call: Any) -> FileStorageError:
    code, details = await call.code(), await call.details()
    for _ in range(100):
        if code != grpc.StatusCode.INTERNAL or details != _CORE_WRITE_ERROR:
            break
        await asyncio.sleep(0.01)
        code, details = await call.code(), await call.details()
    if code == grpc.StatusCode.OK:
        return FileStorageError(grpc.StatusCode.INTERNAL, "the daemon ended StoreStream early without an error")
    return FileStorageError(code, details or "")


async def _explain_lost_status(conn: Connection, header: pb.StoreStreamHeader) -> FileStorageError:
    """grpc.aio sometimes keeps its local INTERNAL over the daemon's status (when that status
    arrived just before the failed write). The usual early refusal is a generation
    precondition, which a Stat can confirm; anything else is reported as it is."""
    if header.HasField("if_generation_match"):
        try:
            res = await conn.unary("Stat", pb.StatRequest(key=header.key), idempotent=True)
            current = res.object.generation
        except FileStorageError as err:
            current = 0 if err.code == grpc.StatusCode.NOT_FOUND else None
        if current is not None and current != header.if_generation_match:
            return FileStorageError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f'generation precondition failed for key "{header.key}": expected {header.if_generation_match}, '
                f"found {current} (0 = absent)",
            )
    return FileStorageError(
        grpc.StatusCode.INTERNAL,
        "the daemon ended StoreStream before the upload was sent whole and grpc lost its reason; nothing was stored",
    )


async def open_retrieve_stream(
    conn: Connection, key: str, *, offset: int = 0, limit: int = 0, if_generation_match: Optional[int] = None
) -> Tuple[pb.ObjectInfo, AsyncIterator[bytes]]:
    """Opens a RetrieveStream and waits for its ObjectInfo; returns it and an async
    iterator of the data chunks, which reads one message at a time (closing it early
    cancels the call). Raises FileStorageError (NOT_FOUND, OUT_OF_RANGE,
    FAILED_PRECONDITION for a generation mismatch, ...), also from the iterator."""
    request = pb.RetrieveStreamRequest(key=key, offset=offset, limit=limit)
    if if_generation_match is not None:
        request.if_generation_match = if_generation_match
    call = conn.stub().RetrieveStream(request, metadata=conn.metadata)
    try:
        first = await call.read()
    except grpc.RpcError as err:
        raise FileStorageError.from_rpc_error(err) from err
    if first is grpc.aio.EOF or first.WhichOneof("payload") != "object":
        call.cancel()
        raise FileStorageError(grpc.StatusCode.INTERNAL, "the daemon's RetrieveStream did not start with an ObjectInfo")

    async def chunks() -> AsyncIterator[bytes]:
        try:
            while True:
                msg = await call.read()
                if msg is grpc.aio.EOF:
                    return
                if msg.WhichOneof("payload") == "chunk":
                    yield msg.chunk
        except grpc.RpcError as err:
            raise FileStorageError.from_rpc_error(err) from err
        finally:
            if not call.done():
                call.cancel()

    return first.object, chunks()


async def chunks_of(source: Any, chunk_size: int) -> AsyncIterator[bytes]:
    """Chunks of at most ``chunk_size`` from an upload source: a path (str or PathLike), a
    binary file object (``read(n)``), a bytes-like value, or an iterable or async iterable
    of bytes-like pieces. Reads one chunk ahead at most. INVALID_ARGUMENT for anything else."""
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            async for chunk in chunks_of(f, chunk_size):
                yield chunk
    elif isinstance(source, (bytes, bytearray, memoryview)):
        view = memoryview(source).cast("B")
        for at in range(0, len(view), chunk_size):
            yield bytes(view[at : at + chunk_size])
    elif callable(getattr(source, "read", None)):
        while True:
            chunk = source.read(chunk_size)
            if asyncio.iscoroutine(chunk):  # an async file object (aiofiles and the like)
                chunk = await chunk
            if not chunk:
                return
            if isinstance(chunk, str):
                raise invalid_argument("upload needs a binary file (opened with 'rb'), got a text file")
            yield bytes(chunk)
    elif hasattr(source, "__aiter__"):
        async for piece in source:
            for chunk in _split(piece, chunk_size):
                yield chunk
    elif hasattr(source, "__iter__"):
        for piece in source:
            for chunk in _split(piece, chunk_size):
                yield chunk
    else:
        raise invalid_argument(
            f"cannot upload a {type(source).__name__}: give a path, a binary file, bytes, or an iterable of bytes"
        )


def _split(piece: Any, chunk_size: int) -> Iterator[bytes]:
    if not isinstance(piece, (bytes, bytearray, memoryview)):
        raise invalid_argument(f"an upload iterable must yield bytes, got {type(piece).__name__}")
    if type(piece) is bytes and len(piece) <= chunk_size:
        yield piece
        return
    view = memoryview(piece).cast("B")
    for at in range(0, len(view), chunk_size):
        yield bytes(view[at : at + chunk_size])
