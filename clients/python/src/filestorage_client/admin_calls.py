"""The calls added to the contract after the familiar API: QueryUpload (where a resumable
upload stands), GetUsage (objects and bytes under a prefix, paged), Flush (drain the
replication backlog into GCS) and Verify (re-read stored copies and check them). Each
returns plain dicts and raises FileStorageError; FileStorage wraps them in its modes."""

from __future__ import annotations

from datetime import timezone
from typing import Any, Optional, Tuple

import grpc

from ._gen import file_storage_pb2 as pb
from .connection import Connection
from .errors import FileStorageError, invalid_argument
from .object_info import ObjectInfo

#: Objects GetUsage counts per call when paging (as the TypeScript client does).
USAGE_PAGE_SIZE = 10_000
#: A flush with timeout_seconds gets this much more as its client deadline, so the
#: daemon's own DEADLINE_EXCEEDED (with its message) arrives before the client's.
FLUSH_DEADLINE_SLACK_SECONDS = 30.0

_TIERS = {pb.VERIFY_TIER_LOCAL: "local", pb.VERIFY_TIER_DISK_CACHE: "disk-cache", pb.VERIFY_TIER_GCS: "gcs"}
_PROBLEMS = {pb.VERIFY_PROBLEM_CORRUPT: "corrupt", pb.VERIFY_PROBLEM_ORPHAN: "orphan", pb.VERIFY_PROBLEM_UNCHECKED: "unchecked"}


async def query_upload(conn: Connection, upload_id: str) -> Optional[dict]:
    """The status of the resumable upload ``upload_id``: ``committed_size`` (bytes held
    durably), ``complete``, ``object`` (ObjectInfo once complete, else None) and
    ``expires_at`` (aware datetime or None). None when the daemon does not know the id
    (NOT_FOUND: never begun, or expired). Retried like the other reads."""
    try:
        res = await conn.unary("QueryUpload", pb.QueryUploadRequest(upload_id=upload_id), idempotent=True)
    except FileStorageError as err:
        if err.code == grpc.StatusCode.NOT_FOUND:
            return None
        raise
    return {
        "committed_size": res.committed_size,
        "complete": res.complete,
        "object": ObjectInfo.from_proto(res.object) if res.HasField("object") else None,
        "expires_at": res.expires_at.ToDatetime(tzinfo=timezone.utc) if res.HasField("expires_at") else None,
    }


async def get_usage(conn: Connection, prefix: str, page_size: int = USAGE_PAGE_SIZE) -> dict:
    """The live objects under ``prefix`` and their bytes, summed over every page the daemon
    answers (``max_objects`` = ``page_size`` per call, following ``next_page_token``):
    ``object_count``, ``total_bytes`` (original sizes), ``stored_bytes`` (at rest) and
    ``from_index`` (the last page's: True when the local index answered in one query)."""
    if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= 2**31 - 1:
        raise invalid_argument(f"page_size must be an integer from 1 to {2**31 - 1}, got {page_size!r}")
    total = {"object_count": 0, "total_bytes": 0, "stored_bytes": 0, "from_index": False}
    token = ""
    while True:
        request = pb.GetUsageRequest(prefix=prefix, page_token=token, max_objects=page_size)
        res = await conn.unary("GetUsage", request, idempotent=True)
        total["object_count"] += res.object_count
        total["total_bytes"] += res.total_bytes
        total["stored_bytes"] += res.stored_bytes
        total["from_index"] = res.from_index
        token = res.next_page_token
        if not token:
            return total


async def flush(conn: Connection, timeout_seconds: Optional[float]) -> dict:
    """Drains the daemon's replication backlog into GCS and returns its last report
    (``pending``, ``replicated``, ``failed``, ``oldest_pending_age_seconds``, ``done``
    True). The daemon answers UNAVAILABLE when GCS cannot be reached, DEADLINE_EXCEEDED
    after ``timeout_seconds`` with writes pending, FAILED_PRECONDITION without a GCS tier.
    Never retried; no client deadline but ``timeout_seconds`` plus a slack."""
    request = pb.FlushRequest()
    if timeout_seconds is not None:
        if isinstance(timeout_seconds, bool) or not isinstance(timeout_seconds, (int, float)) or timeout_seconds < 0:
            raise invalid_argument(f"timeout_seconds must be a number >= 0, got {timeout_seconds!r}")
        request.timeout_seconds = timeout_seconds
    deadline = timeout_seconds + FLUSH_DEADLINE_SLACK_SECONDS if timeout_seconds else None
    last: Optional[pb.FlushResponse] = None
    async for msg in _stream(conn, "Flush", request, deadline):
        last = msg
    if last is None or not last.done:
        raise FileStorageError(grpc.StatusCode.INTERNAL, "Flush ended without its final report")
    return {
        "pending": last.pending,
        "replicated": last.replicated,
        "failed": last.failed,
        "oldest_pending_age_seconds": last.oldest_pending_age_seconds,
        "done": last.done,
    }


async def verify(conn: Connection, prefix: str, include_gcs: bool, repair: bool) -> Tuple[dict, list]:
    """Runs Verify over ``prefix`` and returns ``(summary, findings)``: the summary's
    ``checked_copies``, ``checked_bytes``, ``corrupt``, ``orphans``, ``unchecked``,
    ``repaired`` and ``seconds``, and one dict per finding (``tier`` "local" /
    "disk-cache" / "gcs", ``key``, ``generation``, ``problem`` "corrupt" / "orphan" /
    "unchecked", ``detail``, ``repaired``, ``repair``). Progress messages are skipped.
    No deadline (it reads every copy); never retried (it may repair)."""
    request = pb.VerifyRequest(prefix=prefix, include_gcs=include_gcs, repair=repair)
    findings: list = []
    summary: Optional[dict] = None
    async for msg in _stream(conn, "Verify", request, None):
        which = msg.WhichOneof("payload")
        if which == "finding":
            f = msg.finding
            findings.append({
                "tier": _TIERS.get(f.tier, "unspecified"),
                "key": f.key,
                "generation": f.generation,
                "problem": _PROBLEMS.get(f.problem, "unspecified"),
                "detail": f.detail,
                "repaired": f.repaired,
                "repair": f.repair,
            })
        elif which == "summary":
            s = msg.summary
            summary = {name: getattr(s, name) for name in
                       ("checked_copies", "checked_bytes", "corrupt", "orphans", "unchecked", "repaired", "seconds")}
    if summary is None:
        raise FileStorageError(grpc.StatusCode.INTERNAL, "Verify ended without its summary")
    return summary, findings


async def _stream(conn: Connection, method: str, request: Any, timeout: Optional[float]):
    """The messages of a server-streaming call; its failure as FileStorageError. Leaving
    the iteration early cancels the call."""
    call = getattr(conn.stub(), method)(request, timeout=timeout, metadata=conn.metadata)
    try:
        async for msg in call:
            yield msg
    except grpc.RpcError as err:
        raise FileStorageError.from_rpc_error(err) from err
    finally:
        call.cancel()
