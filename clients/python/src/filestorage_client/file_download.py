"""Downloading an object into a file at constant memory, atomically, resumably.

Bytes go to ``<path>.g<generation>.partial``, are checked against the object's size and
CRC32C, then renamed over ``path``. A download that breaks leaves the partial file; the
next one (``resume=True``) continues it from its size, asking RetrieveStream for that
generation only (``if_generation_match``), so a partial file is never completed with bytes
of a newer version. The same partial-file naming as the TypeScript client's
``downloadToFile``.
"""

from __future__ import annotations

import asyncio
import os
from contextlib import aclosing
from typing import Any

import grpc

from ._gen import file_storage_pb2 as pb
from .connection import Connection, backoff_seconds
from .crc32c import crc32c
from .errors import FileStorageError
from .transfers import MiB, open_retrieve_stream


def partial_path(path: str, generation: int) -> str:
    """Where the download of ``generation`` into ``path`` collects its bytes."""
    return f"{path}.g{generation}.partial"


async def download_to_path(conn: Connection, key: str, path: "os.PathLike[str] | str", *, resume: bool) -> pb.ObjectInfo:
    """Downloads ``key`` into ``path``; returns the ObjectInfo message. UNAVAILABLE in
    the middle is retried (``retries`` times) from where it broke; an object written again
    meanwhile is started over (ABORTED once the retries are spent). Raises FileStorageError
    (NOT_FOUND, DATA_LOSS, ...) or OSError (the local file)."""
    path = os.fspath(path)
    for attempt in range(conn.config.retries + 1):
        try:
            return await _attempt(conn, key, path, resume=resume or attempt > 0)
        except FileStorageError as err:
            if err.code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED) or attempt >= conn.config.retries:
                raise
        await asyncio.sleep(backoff_seconds(attempt))
    raise AssertionError("unreachable")


async def _attempt(conn: Connection, key: str, path: str, *, resume: bool) -> pb.ObjectInfo:
    current = (await conn.unary("Stat", pb.StatRequest(key=key), idempotent=True)).object
    partial = partial_path(path, current.generation)
    offset, crc = 0, 0
    if resume and os.path.exists(partial):
        have = os.path.getsize(partial)
        if have <= current.size:
            offset, crc = have, _crc_of_file(partial)
        if have == current.size:
            # Whole already (an earlier call stopped before the rename).
            if crc == current.crc32c:
                _finish(partial, path)
                return current
            offset, crc = 0, 0
    try:
        info, chunks = await open_retrieve_stream(conn, key, offset=offset, if_generation_match=current.generation)
    except FileStorageError as err:
        if err.code == grpc.StatusCode.FAILED_PRECONDITION:
            raise FileStorageError(grpc.StatusCode.ABORTED, f'"{key}" was written again during the download') from err
        raise
    received = offset
    with open(partial, "ab" if offset else "wb", buffering=MiB) as out:
        async with aclosing(chunks):
            async for chunk in chunks:
                out.write(chunk)
                crc = crc32c(chunk, crc)
                received += len(chunk)
    if received != info.size or crc != info.crc32c:
        os.remove(partial)
        raise FileStorageError(
            grpc.StatusCode.DATA_LOSS,
            f'download of "{key}" does not match the object (got {received} bytes of {info.size}, '
            f"CRC32C {crc:#010x}, expected {info.crc32c:#010x})",
        )
    _finish(partial, path)
    return info


async def download_to_file(conn: Connection, key: str, out: Any) -> pb.ObjectInfo:
    """Writes ``key`` into a binary file object (no resume: it may not be seekable);
    checks size and CRC32C at the end (DATA_LOSS). Returns the ObjectInfo message."""
    info, chunks = await open_retrieve_stream(conn, key)
    crc, received = 0, 0
    async with aclosing(chunks):
        async for chunk in chunks:
            result = out.write(chunk)
            if asyncio.iscoroutine(result):
                await result
            crc = crc32c(chunk, crc)
            received += len(chunk)
    if received != info.size or crc != info.crc32c:
        raise FileStorageError(grpc.StatusCode.DATA_LOSS, f'download of "{key}" does not match the object')
    return info


def _crc_of_file(path: str, crc: int = 0) -> int:
    with open(path, "rb") as f:
        while chunk := f.read(MiB):
            crc = crc32c(chunk, crc)
    return crc


def _finish(partial: str, path: str) -> None:
    os.replace(partial, path)
    # Partial files of other generations, left by downloads that broke, go too.
    folder, name = os.path.split(path)
    prefix = f"{name}.g"
    for entry in os.listdir(folder or "."):
        rest = entry[len(prefix) :]
        if entry.startswith(prefix) and rest.endswith(".partial") and rest[: -len(".partial")].isdigit():
            try:
                os.remove(os.path.join(folder, entry))
            except FileNotFoundError:
                pass

