"""Plain Python views of the daemon's messages: ObjectInfo, a page of keys, the stats dict."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Optional

from google.protobuf import message as _message

from ._gen import file_storage_pb2 as pb
from .values import from_struct, kind_name

_BACKENDS = {pb.BACKEND_GCS: "gcs", pb.BACKEND_LOCAL: "local"}


@dataclass(frozen=True)
class ObjectInfo:
    """What the daemon knows of an object (filestorage.v1.ObjectInfo).

    ``kind`` is "bytes", "text" or "json"; ``backend`` "gcs" or "local" (where the
    authoritative copy is now; "unspecified" if the daemon did not say); times are
    timezone-aware UTC datetimes or None. ``proto`` is the message itself, for fields
    added to the proto after this client was written.
    """

    key: str
    kind: str
    size: int
    stored_size: int
    content_type: str
    metadata: dict
    generation: int
    crc32c: int
    compressed: bool
    encrypted: bool
    backend: str
    pending_replication: bool
    created_at: Optional[datetime]
    updated_at: Optional[datetime]
    expires_at: Optional[datetime]
    proto: Any = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        """The fields as a dict (without ``proto``)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "proto"}

    @classmethod
    def from_proto(cls, info: pb.ObjectInfo) -> "ObjectInfo":
        return cls(
            key=info.key,
            kind=kind_name(info.kind),
            size=info.size,
            stored_size=info.stored_size,
            content_type=info.content_type,
            metadata=from_struct(info.metadata),
            generation=info.generation,
            crc32c=info.crc32c,
            compressed=info.compressed,
            encrypted=info.encrypted,
            backend=_BACKENDS.get(info.backend, "unspecified"),
            pending_replication=info.pending_replication,
            created_at=_time(info, "created_at"),
            updated_at=_time(info, "updated_at"),
            expires_at=_time(info, "expires_at"),
            proto=info,
        )


@dataclass(frozen=True)
class ListPage:
    """One page of ListKeys: keys in byte order, rolled-up ``prefixes`` (with a delimiter),
    ``next_page_token`` (None on the last page) and, with include_info, one ObjectInfo per key."""

    keys: list
    prefixes: list
    next_page_token: Optional[str]
    objects: list


def stats_dict(res: pb.GetStatsResponse) -> dict:
    """GetStatsResponse as the dict ``get_stats()`` returns: every scalar field of the
    message under its own name (fields added to the proto appear by themselves), plus the
    old component's names: ``cache_size`` (entries in the daemon's cache) and ``metrics``
    (per-method counters: ``{"Store": {"total": .., "successful": .., "failed": ..}}``)."""
    out: dict = {}
    for f in res.DESCRIPTOR.fields:
        if f.message_type is None and not _is_repeated(f):
            out[f.name] = getattr(res, f.name)
    out["cache_size"] = res.cache_entries
    out["metrics"] = {op.method: {"total": op.total, "successful": op.successful, "failed": op.failed} for op in res.operations}
    return out


def _is_repeated(f: Any) -> bool:
    # protobuf 7 has is_repeated; older ones only label.
    flag = getattr(f, "is_repeated", None)
    return bool(flag) if flag is not None else f.label == f.LABEL_REPEATED


def _time(msg: _message.Message, name: str) -> Optional[datetime]:
    if not msg.HasField(name):
        return None
    ts = getattr(msg, name)
    return datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9, tz=timezone.utc)
