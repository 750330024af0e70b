"""Values and their kinds: what goes on the wire for a Python value, and back.

str -> TEXT (UTF-8), bytes/bytearray/memoryview -> BYTES, any other JSON value
(dict, list, tuple, int, float, bool, None) -> JSON. Reading gives back exactly that
kind: TEXT -> str (a JSON-looking string stays a string), JSON -> the parsed value,
BYTES -> bytes (b"" stays b""). Nothing is pickled: the old component pickled dicts and
unpickled whatever it read.
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping, Optional, Tuple, Union

from google.protobuf import struct_pb2

from ._gen import file_storage_pb2 as pb
from .errors import invalid_argument

BytesLike = Union[bytes, bytearray, memoryview]

KIND_BY_NAME = {"bytes": pb.DATA_KIND_BYTES, "text": pb.DATA_KIND_TEXT, "json": pb.DATA_KIND_JSON}
NAME_BY_KIND = {v: k for k, v in KIND_BY_NAME.items()}


def kind_name(kind: int) -> str:
    """"bytes", "text" or "json"; DATA_KIND_UNSPECIFIED reads as bytes."""
    return NAME_BY_KIND.get(kind, "bytes")


def kind_of(name: str) -> int:
    """The DataKind of "bytes", "text" or "json"; INVALID_ARGUMENT otherwise."""
    try:
        return KIND_BY_NAME[name]
    except (KeyError, TypeError):
        raise invalid_argument(f"kind must be one of bytes, text, json; got {name!r}") from None


def encode_value(data: Any, kind: Optional[str] = None) -> Tuple[BytesLike, int]:
    """The bytes to send for ``data`` and their DataKind. ``kind`` overrides the inferred
    one; then bytes are sent as they are (the daemon checks TEXT is UTF-8 and JSON parses),
    a str as UTF-8 and anything else as JSON. INVALID_ARGUMENT for a value that is not
    JSON (a set, a datetime, NaN, an object)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        raw: BytesLike = data
        inferred = pb.DATA_KIND_BYTES
    elif isinstance(data, str):
        raw = data.encode("utf-8")
        inferred = pb.DATA_KIND_TEXT
    else:
        raw = _json_bytes(data, "a value")
        inferred = pb.DATA_KIND_JSON
    return raw, inferred if kind is None else kind_of(kind)


def decode_value(data: bytes, kind: int) -> Any:
    """The Python value of ``data`` stored with ``kind``."""
    if kind == pb.DATA_KIND_TEXT:
        return data.decode("utf-8")
    if kind == pb.DATA_KIND_JSON:
        return json.loads(data)
    return bytes(data)


def to_struct(metadata: Optional[Mapping[str, Any]]) -> Optional[struct_pb2.Struct]:
    """``metadata`` as a google.protobuf.Struct (strings, numbers, booleans, null, lists and
    nested objects); INVALID_ARGUMENT for anything JSON cannot hold."""
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping):
        raise invalid_argument(f"metadata must be a dict, got {type(metadata).__name__}")
    # A JSON round trip turns tuples into lists and rejects what Struct cannot hold.
    plain = json.loads(_json_bytes(dict(metadata), "metadata"))
    struct = struct_pb2.Struct()
    struct.update(plain)
    return struct


def from_struct(struct: struct_pb2.Struct) -> dict:
    """A Struct as a dict. Struct numbers are doubles; whole ones within 2**53 come back as
    int, so ``{"n": 3}`` reads back as ``{"n": 3}``, not ``3.0``."""
    return {k: _from_value(v) for k, v in struct.fields.items()}


def _from_value(value: struct_pb2.Value) -> Any:
    which = value.WhichOneof("kind")
    if which == "struct_value":
        return from_struct(value.struct_value)
    if which == "list_value":
        return [_from_value(v) for v in value.list_value.values]
    if which == "number_value":
        n = value.number_value
        return int(n) if math.isfinite(n) and n.is_integer() and abs(n) <= 2**53 else n
    if which == "string_value":
        return value.string_value
    if which == "bool_value":
        return value.bool_value
    return None


def _json_bytes(value: Any, what: str) -> bytes:
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError) as err:
        raise invalid_argument(f"{what} must be JSON (str, number, bool, None, list, dict with str keys): {err}") from None
