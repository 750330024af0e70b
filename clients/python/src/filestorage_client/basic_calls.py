"""The requests behind FileStorage's calls, as functions of a Connection: the StoreStream
header of an object, a value read whole (unary, or streamed past the daemon's unary limit),
ListKeys pages and the keys across them, and the checks of what callers pass in."""

from __future__ import annotations

from contextlib import aclosing
from datetime import datetime
from typing import Any, AsyncIterator, Optional

import grpc
from google.protobuf import timestamp_pb2

from ._gen import file_storage_pb2 as pb
from .config import MiB
from .connection import Connection
from .crc32c import crc32c
from .errors import FileStorageError, invalid_argument
from .object_info import ListPage, ObjectInfo
from .transfers import open_retrieve_stream
from .values import decode_value, to_struct


def store_header(key: str, kind: int, metadata: Any, content_type: Optional[str],
                 if_generation_match: Optional[int], expires_at: Optional[datetime],
                 size: Optional[int]) -> pb.StoreStreamHeader:
    """The StoreStream header of one object: metadata as a Struct, an expiry that must be
    timezone-aware, the declared size when known."""
    header = pb.StoreStreamHeader(key=key, kind=kind, content_type=content_type or "")
    struct = to_struct(metadata)
    if struct is not None:
        header.metadata.CopyFrom(struct)
    if size is not None:
        header.size = size
    if if_generation_match is not None:
        header.if_generation_match = if_generation_match
    if expires_at is not None:
        header.expires_at.CopyFrom(_timestamp(expires_at))
    return header


async def retrieve_value(conn: Connection, key: str) -> Any:
    """The value under ``key`` of exactly the kind stored, by unary Retrieve, or through
    RetrieveStream when it is over the daemon's unary limit; None when there is none."""
    try:
        res = await conn.unary("Retrieve", pb.RetrieveRequest(key=key), idempotent=True)
        return decode_value(res.data, res.object.kind)
    except FileStorageError as err:
        if err.code == grpc.StatusCode.NOT_FOUND:
            return None
        # Retrieve has no precondition of its own: this is the daemon's unary limit.
        if err.code != grpc.StatusCode.FAILED_PRECONDITION:
            raise
    try:
        return await _retrieve_streamed(conn, key)
    except FileStorageError as err:
        if err.code == grpc.StatusCode.NOT_FOUND:
            return None
        raise


async def _retrieve_streamed(conn: Connection, key: str) -> Any:
    info, chunks = await open_retrieve_stream(conn, key)
    whole = bytearray()
    crc = 0
    async with aclosing(chunks):
        async for chunk in chunks:
            whole += chunk
            crc = crc32c(chunk, crc)
    if len(whole) != info.size or crc != info.crc32c:
        raise FileStorageError(grpc.StatusCode.DATA_LOSS, f'retrieve of "{key}" does not match the object')
    return decode_value(whole, info.kind)


async def list_page(conn: Connection, prefix: Optional[str], limit: Optional[int], page_token: Optional[str],
                    delimiter: Optional[str], include_info: bool) -> ListPage:
    """One ListKeys page."""
    request = pb.ListKeysRequest(prefix=prefix or "", limit=limit or 0, page_token=page_token or "",
                                 delimiter=delimiter or "", include_info=include_info)
    res = await conn.unary("ListKeys", request, idempotent=True)
    return ListPage(
        keys=list(res.keys),
        prefixes=list(res.prefixes),
        next_page_token=res.next_page_token or None,
        objects=[ObjectInfo.from_proto(o) for o in res.objects],
    )


async def iter_keys(conn: Connection, prefix: Optional[str], page_size: int,
                    delimiter: Optional[str] = None) -> AsyncIterator[str]:
    """Every key under ``prefix`` in byte order, ``page_size`` per request."""
    token: Optional[str] = None
    while True:
        page = await list_page(conn, prefix, page_size, token, delimiter, False)
        for key in page.keys:
            yield key
        token = page.next_page_token
        if not token:
            return


def checked_chunk_size(value: int) -> int:
    """``value`` if it is a valid StoreStream chunk size (1 byte to 4 MiB), else INVALID_ARGUMENT."""
    if not isinstance(value, int) or not 1 <= value <= 4 * MiB:
        raise invalid_argument(f"chunk_size must be an integer from 1 to {4 * MiB} (4 MiB), got {value!r}")
    return value


def _timestamp(when: datetime) -> timestamp_pb2.Timestamp:
    if when.tzinfo is None:
        raise invalid_argument("expires_at must be a timezone-aware datetime (e.g. datetime.now(timezone.utc))")
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(when)
    return ts
