"""FileStorage: the async API of the in-process component it replaces, over the daemon.

A service switches by changing one import::

    # from aiecs.infrastructure.persistence.file_storage import FileStorage, get_file_storage
    from filestorage_client import FileStorage, get_file_storage

The familiar calls keep their names, arguments and return types. Failures return
False/None/[] and log an error, as the old component documented, unless the config says
``strict``: then they raise FileStorageError carrying the gRPC code. A missing key is not
a failure: ``retrieve`` gives None, ``exists`` False, ``delete`` False, in both modes.
What the old component got wrong is not repeated: values keep their kind (a JSON-looking
string stays a string, bytes are never None, b"" stays b""), nothing is pickled, keys are
checked by the daemon, and ``list_keys`` is sorted.
"""

from __future__ import annotations

import logging
import os
import threading
from contextlib import aclosing
from datetime import datetime
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable, Mapping, Optional, Tuple, TypeVar

import grpc

from . import admin_calls
from ._gen import file_storage_pb2 as pb
from .config import MiB, parse_config
from .connection import Connection
from .errors import FileStorageError, invalid_argument
from .file_download import download_to_file, download_to_path
from .object_info import ListPage, ObjectInfo, stats_dict
from .transfers import chunks_of, open_retrieve_stream, send_store_stream
from .basic_calls import checked_chunk_size, iter_keys, list_page, retrieve_value, store_header
from .values import encode_value, kind_of

logger = logging.getLogger("filestorage_client")

T = TypeVar("T")

#: Keys per ListKeys page when following pages (the daemon's default; at most 10000).
PAGE_SIZE = 1000
#: get_stats() is a blocking call made on the caller's thread, often an event loop's:
#: it waits at most this long (or timeout_seconds, if shorter).
SYNC_STATS_TIMEOUT_SECONDS = 5.0

_UNAVAILABLE_STATS = {
    "initialized": False,
    "gcs_available": False,
    "local_fallback_enabled": False,
    "cache_enabled": False,
    "cache_size": 0,
    "metrics": {},
}


class FileStorage:
    """A client of one FileStorage daemon with the old component's API.

    ``config`` is a dict (see ``config.parse_config``): ``address`` (default
    ``$FILESTORAGE_ADDRESS`` or 127.0.0.1:50051), ``token``, ``tls``, ``timeout_seconds``,
    ``strict``, ``max_unary_bytes``, ``retries``; the old component's keys are accepted and
    ignored. Raises ValueError for a bad value. Cheap to make: channels open on first use.
    """

    def __init__(self, config: Optional[Mapping[str, Any]] = None) -> None:
        self._config = parse_config(config)
        self._conn = Connection(self._config)
        self._initialized = False
        self._snapshot: Optional[dict] = None

    @property
    def address(self) -> str:
        """The daemon's gRPC target."""
        return self._config.address

    @property
    def strict(self) -> bool:
        """Whether failures raise FileStorageError (config ``strict``)."""
        return self._config.strict

    async def __aenter__(self) -> "FileStorage":
        return self

    async def __aexit__(self, *_exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        """Closes this loop's channel and the sync one (calls after it reopen them)."""
        await self._conn.close()

    # The familiar API.

    async def initialize(self) -> bool:
        """Checks that the daemon answers (GetStats; a token without the admin right
        passes too: the daemon knew it). True when it does; False and an error log when it
        does not (strict: FileStorageError)."""

        async def run() -> bool:
            try:
                await self.get_stats_async()
            except FileStorageError as err:
                if err.code != grpc.StatusCode.PERMISSION_DENIED:
                    raise
            self._initialized = True
            return True

        return await self._lenient("initialize", False, run)

    async def store(
        self,
        key: str,
        data: Any,
        metadata: Optional[Mapping[str, Any]] = None,
        *,
        content_type: Optional[str] = None,
        kind: Optional[str] = None,
        if_generation_match: Optional[int] = None,
        expires_at: Optional[datetime] = None,
    ) -> bool:
        """Stores ``data`` under ``key``: str -> TEXT, bytes/bytearray/memoryview -> BYTES,
        other JSON values (dict, list, numbers, bool, None) -> JSON; ``kind`` ("bytes",
        "text", "json") overrides. ``metadata`` is a JSON object (lists and numbers stay
        lists and numbers). ``if_generation_match`` writes only over that generation (0 =
        only if absent; FAILED_PRECONDITION otherwise) and makes the call safe to retry.
        Values over max_unary_bytes go through StoreStream. True once stored."""

        async def run() -> bool:
            raw, data_kind = encode_value(data, kind)
            header = store_header(key, data_kind, metadata, content_type, if_generation_match, expires_at, len(raw))
            if len(raw) > self._config.max_unary_bytes:
                await send_store_stream(self._conn, header, chunks_of(raw, MiB))
                return True
            request = pb.StoreRequest(key=key, data=bytes(raw), kind=data_kind, content_type=header.content_type,
                                      metadata=header.metadata if header.HasField("metadata") else None,
                                      expires_at=header.expires_at if header.HasField("expires_at") else None)
            if if_generation_match is not None:
                request.if_generation_match = if_generation_match
            # Only a conditional store is safe to repeat: a repeat cannot overwrite a newer write.
            await self._conn.unary("Store", request, idempotent=if_generation_match is not None)
            return True

        return await self._lenient(f"store({key!r})", False, run)

    async def retrieve(self, key: str) -> Any:
        """The value stored under ``key``, of exactly the kind stored (str, bytes, or the
        JSON value), or None when there is none (a failure gives None too, unless strict).
        Objects over the daemon's unary limit arrive through RetrieveStream."""
        return await self._lenient(f"retrieve({key!r})", None, lambda: retrieve_value(self._conn, key))

    async def delete(self, key: str, *, if_generation_match: Optional[int] = None) -> bool:
        """Deletes ``key``: True when it existed, False when there was nothing to delete
        (the old component said True then). With ``if_generation_match`` only that
        generation is deleted (FAILED_PRECONDITION otherwise), and the call is retried."""

        async def run() -> bool:
            request = pb.DeleteRequest(key=key)
            if if_generation_match is not None:
                request.if_generation_match = if_generation_match
            # Unconditional deletes are not retried: a repeat could delete a newer write.
            res = await self._conn.unary("Delete", request, idempotent=if_generation_match is not None)
            return res.deleted

        return await self._lenient(f"delete({key!r})", False, run)

    async def exists(self, key: str) -> bool:
        """Whether ``key`` holds an object."""

        async def run() -> bool:
            return (await self._conn.unary("Exists", pb.ExistsRequest(key=key), idempotent=True)).exists

        return await self._lenient(f"exists({key!r})", False, run)

    async def list_keys(self, prefix: Optional[str] = None, limit: Optional[int] = None) -> list:
        """Keys starting with ``prefix`` in byte order, at most ``limit`` of them (all when
        None or 0, as with the old component), following the daemon's pages."""

        async def run() -> list:
            if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
                raise invalid_argument(f"limit must be an integer >= 0, got {limit!r}")
            page_size = min(limit, PAGE_SIZE) if limit else PAGE_SIZE
            keys: list = []
            async with aclosing(iter_keys(self._conn, prefix, page_size)) as it:
                async for key in it:
                    keys.append(key)
                    if limit and len(keys) >= limit:
                        break
            return keys

        return await self._lenient(f"list_keys({prefix!r})", [], run)

    def get_stats(self) -> dict:
        """The daemon's state and counters, fetched now with a blocking call (at most
        SYNC_STATS_TIMEOUT_SECONDS): ``initialized``, ``gcs_available``,
        ``local_fallback_enabled``, ``cache_enabled``, ``cache_size`` (entries in the
        daemon's cache), ``metrics`` (per-method counters), every other GetStats field
        (total_operations, cache_bytes, pending_replication, ...), ``address`` and
        ``stale``. Sync like the old component's; in async code ``await
        get_stats_async()`` does not block the loop. When the daemon cannot be asked, the
        last answer (from either call) comes back with ``stale`` True and ``error``
        (strict: FileStorageError)."""
        timeout = min(self._config.timeout_seconds, SYNC_STATS_TIMEOUT_SECONDS)
        try:
            res = self._conn.sync_stub().GetStats(pb.GetStatsRequest(), timeout=timeout, metadata=self._conn.metadata)
        except grpc.RpcError as err:
            failure = FileStorageError.from_rpc_error(err)
            if self._config.strict:
                raise failure from err
            logger.error("FileStorage.get_stats failed: %s", failure)
            return {**(self._snapshot or _UNAVAILABLE_STATS), "address": self.address, "stale": True, "error": str(failure)}
        return self._remember(res)

    async def get_stats_async(self) -> dict:
        """Like get_stats, without blocking the event loop; raises FileStorageError."""
        res = await self._conn.unary("GetStats", pb.GetStatsRequest(), idempotent=True)
        return self._remember(res)

    # Beyond the old API.

    async def stat(self, key: str) -> Optional[ObjectInfo]:
        """The ObjectInfo of ``key`` (kind, size, metadata, generation, crc32c, ...).
        A missing key is NOT_FOUND: None, or FileStorageError when strict."""

        async def run() -> ObjectInfo:
            res = await self._conn.unary("Stat", pb.StatRequest(key=key), idempotent=True)
            return ObjectInfo.from_proto(res.object)

        return await self._lenient(f"stat({key!r})", None, run)

    async def delete_many(self, keys: Optional[Iterable[str]] = None, *, prefix: Optional[str] = None) -> Optional[int]:
        """Deletes the listed keys and/or every key under a non-empty ``prefix``; returns
        how many were deleted (None on failure unless strict)."""

        async def run() -> int:
            request = pb.DeleteManyRequest(keys=list(keys or ()), prefix=prefix or "")
            return (await self._conn.unary("DeleteMany", request, idempotent=False)).deleted_count

        return await self._lenient("delete_many", None, run)

    async def list_page(
        self,
        prefix: Optional[str] = None,
        limit: Optional[int] = None,
        page_token: Optional[str] = None,
        *,
        delimiter: Optional[str] = None,
        include_info: bool = False,
    ) -> Optional[ListPage]:
        """One ListKeys page (``limit`` keys, the daemon's default 1000 when None); pass its
        ``next_page_token`` back as ``page_token`` for the next."""
        return await self._lenient(
            "list_page", None, lambda: list_page(self._conn, prefix, limit, page_token, delimiter, include_info)
        )

    def iter_keys(self, prefix: Optional[str] = None, *, page_size: int = PAGE_SIZE, delimiter: Optional[str] = None) -> AsyncIterator[str]:
        """Every key under ``prefix`` in byte order, fetching pages as it goes
        (``async for key in fs.iter_keys("tasks/")``). Raises FileStorageError, in either mode."""
        return iter_keys(self._conn, prefix, page_size, delimiter)

    async def upload(
        self,
        key: str,
        source: Any,
        *,
        kind: str = "bytes",
        metadata: Optional[Mapping[str, Any]] = None,
        content_type: Optional[str] = None,
        if_generation_match: Optional[int] = None,
        expires_at: Optional[datetime] = None,
        size: Optional[int] = None,
        chunk_size: int = MiB,
    ) -> Optional[ObjectInfo]:
        """Streams ``source`` into ``key`` with StoreStream at constant memory: a path, a
        binary file object, bytes, or an (async) iterable of bytes, sent in chunks of
        ``chunk_size`` with a trailer holding the size and CRC32C of all of it (the daemon
        keeps nothing if it received anything else: DATA_LOSS). ``size`` (taken from the
        file for a path) is declared in the header and checked too. Not retried: a source
        may be readable once. Returns the new ObjectInfo."""

        async def run() -> ObjectInfo:
            declared = size
            if declared is None and isinstance(source, (str, os.PathLike)):
                declared = os.path.getsize(source)
            header = store_header(key, kind_of(kind), metadata, content_type, if_generation_match, expires_at, declared)
            info = await send_store_stream(self._conn, header, chunks_of(source, checked_chunk_size(chunk_size)))
            return ObjectInfo.from_proto(info)

        return await self._lenient(f"upload({key!r})", None, run)

    async def download(self, key: str, destination: Any, *, resume: bool = True) -> Optional[ObjectInfo]:
        """Streams ``key`` into ``destination`` at constant memory and checks its size and
        CRC32C (DATA_LOSS on a mismatch). A path is written atomically through
        ``<path>.g<generation>.partial``; with ``resume`` a partial file left by a broken
        download continues where it stopped, only if the object still has that generation.
        A binary file object is written as the bytes come (no resume). Returns the
        ObjectInfo; NOT_FOUND for a missing key (None unless strict)."""

        async def run() -> ObjectInfo:
            if isinstance(destination, (str, os.PathLike)):
                info = await download_to_path(self._conn, key, destination, resume=resume)
            else:
                info = await download_to_file(self._conn, key, destination)
            return ObjectInfo.from_proto(info)

        return await self._lenient(f"download({key!r})", None, run)

    async def read_range(self, key: str, offset: int = 0, limit: Optional[int] = None) -> Optional[bytes]:
        """``limit`` bytes of ``key`` from ``offset`` (to the end when None), through
        RetrieveStream. OUT_OF_RANGE when offset is past the end (None unless strict)."""

        async def run() -> bytes:
            parts = []
            async with aclosing(self.iter_download(key, offset=offset, limit=limit)) as it:
                async for chunk in it:
                    parts.append(chunk)
            return b"".join(parts)

        return await self._lenient(f"read_range({key!r})", None, run)

    async def iter_download(
        self, key: str, *, offset: int = 0, limit: Optional[int] = None, if_generation_match: Optional[int] = None
    ) -> AsyncIterator[bytes]:
        """The bytes of ``key`` (from ``offset``, at most ``limit``) as chunks, read from the
        daemon only as fast as they are consumed. Raises FileStorageError, in either mode."""
        _, chunks = await open_retrieve_stream(
            self._conn, key, offset=offset, limit=limit or 0, if_generation_match=if_generation_match
        )
        async with aclosing(chunks):
            async for chunk in chunks:
                yield chunk

    # Operations (the calls added to the contract later; GetUsage, Flush and Verify need
    # the admin right).

    async def query_upload(self, upload_id: str) -> Optional[dict]:
        """Where the resumable upload ``upload_id`` stands: ``committed_size`` (bytes the
        daemon holds durably), ``complete``, ``object`` (its ObjectInfo once complete, else
        None) and ``expires_at`` (when the daemon forgets it; datetime or None). None when
        the daemon does not know the id (never begun, or expired), in both modes; None on
        failure too unless strict. Ids are per caller (per token)."""
        return await self._lenient(f"query_upload({upload_id!r})", None, lambda: admin_calls.query_upload(self._conn, upload_id))

    async def get_usage(self, prefix: str = "") -> Optional[dict]:
        """The live objects under ``prefix`` (every key when empty) and their bytes:
        ``object_count``, ``total_bytes`` (original sizes), ``stored_bytes`` (at rest, after
        compression and encryption) and ``from_index`` (True when the local index answered
        in one query). Follows the daemon's pages and sums them; retried on UNAVAILABLE.
        None on failure unless strict."""
        return await self._lenient(f"get_usage({prefix!r})", None, lambda: admin_calls.get_usage(self._conn, prefix))

    async def flush(self, timeout_seconds: Optional[float] = None) -> Optional[dict]:
        """Drains the daemon's replication backlog into GCS now and returns its last report
        once the backlog is empty: ``pending``, ``replicated``, ``failed``,
        ``oldest_pending_age_seconds``, ``done``. UNAVAILABLE when GCS cannot be reached,
        DEADLINE_EXCEEDED after ``timeout_seconds`` with writes still pending,
        FAILED_PRECONDITION when the daemon has no GCS tier. Never retried. None on failure
        unless strict."""
        return await self._lenient("flush", None, lambda: admin_calls.flush(self._conn, timeout_seconds))

    async def verify(self, prefix: str = "", include_gcs: bool = False, repair: bool = False) -> Tuple[Optional[dict], list]:
        """Has the daemon re-read its stored copies under ``prefix`` (the local tier, the disk
        cache and, with ``include_gcs``, GCS) and check their size and CRC32C, repairing
        what a good copy elsewhere allows with ``repair``. Returns ``(summary, findings)``:
        the summary's ``checked_copies``, ``checked_bytes``, ``corrupt``, ``orphans``,
        ``unchecked``, ``repaired``, ``seconds``, and one dict per corrupt, orphaned or
        unchecked copy (``tier``, ``key``, ``generation``, ``problem``, ``detail``,
        ``repaired``, ``repair``). No deadline; never retried. ``(None, [])`` on failure
        unless strict."""
        return await self._lenient(
            f"verify({prefix!r})", (None, []), lambda: admin_calls.verify(self._conn, prefix, include_gcs, repair)
        )

    # Internals.

    async def _lenient(self, what: str, default: T, run: Callable[[], Awaitable[T]]) -> T:
        try:
            return await run()
        except (FileStorageError, OSError) as err:
            if self._config.strict:
                raise
            logger.error("FileStorage.%s failed: %s", what, err)
            return default

    def _remember(self, res: pb.GetStatsResponse) -> dict:
        stats = {**stats_dict(res), "address": self.address, "stale": False}
        self._snapshot = stats
        return stats


_shared: Optional[FileStorage] = None
_shared_lock = threading.Lock()


def get_file_storage(config: Optional[Mapping[str, Any]] = None) -> FileStorage:
    """The process's one shared FileStorage, made from ``config`` on the first call (later
    calls return it and ignore their config, as the old component's did)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = FileStorage(config)
        elif config is not None:
            logger.debug("get_file_storage: the shared FileStorage exists already; this config is ignored")
        return _shared


async def initialize_file_storage(config: Optional[Mapping[str, Any]] = None) -> FileStorage:
    """``get_file_storage(config)``, initialized; returns it."""
    storage = get_file_storage(config)
    await storage.initialize()
    return storage


def _reset_shared_for_tests() -> None:
    global _shared
    with _shared_lock:
        _shared = None

