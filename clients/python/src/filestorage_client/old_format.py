"""What the old in-process component (aiecs ``infrastructure.persistence.file_storage``)
left behind, and what each object was.

Its local layout: the value's bytes in ``<root>/<key>``; when metadata was given, a
sidecar ``Path(<root>/<key>).with_suffix(".metadata")`` holding the metadata as JSON plus
``"compressed": bool`` (so ``a.json`` and ``a.txt`` share ``a.metadata``, and a value
stored without metadata has no record of its compression). Its GCS layout: a blob per key
with the metadata as custom metadata and ``Content-Encoding: gzip`` when compressed.
Values over ``compression_threshold_bytes`` (1024) were gzipped when compression was on.
str was stored as UTF-8, bytes as they were, anything else pickled.

So the kind of an object is read off its bytes: a pickle (protocol 2-5 header) is
whatever it unpickles to (only with trust_pickle, by plain_pickle), valid UTF-8 is TEXT
(a str, or bytes nobody can tell from one), anything else BYTES.
"""

from __future__ import annotations

import ast
import codecs
import gzip
import json
import os
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Dict, Iterator, List, Optional, Tuple

from . import plain_pickle

GZIP_MAGIC = b"\x1f\x8b"
READ_CHUNK = 1024 * 1024
#: Decoded values up to this size are held in memory; larger ones are streamed twice
#: (once to tell their kind, once to upload).
IN_MEMORY_LIMIT = 4 * 1024 * 1024


class Unreadable(Exception):
    """The object cannot be migrated as it is; the message says why."""


@dataclass
class OldObject:
    """One object as the old component stored it. ``open_stored`` gives its stored bytes
    (gzipped or not); ``compressed`` is the recorded flag, None when nothing recorded it."""

    key: str
    open_stored: Callable[[], BinaryIO]
    metadata: Optional[Dict[str, Any]]
    compressed: Optional[bool]
    notes: List[str] = field(default_factory=list)
    #: Why it cannot be migrated, found while scanning.
    problem: Optional[str] = None


@dataclass
class Decoded:
    """What an object is: its kind ("text", "bytes", "json") and either ``value`` (in
    memory) or ``open_value`` (a stream of its decoded bytes, for big TEXT/BYTES), with notes."""

    kind: str
    size: int
    value: Any = None
    open_value: Optional[Callable[[], BinaryIO]] = None
    notes: List[str] = field(default_factory=list)


def scan_folder(root: "os.PathLike[str] | str") -> Iterator[OldObject]:
    """The objects under ``root`` in key order: every file not ending in ``.metadata``
    (the old component's own listing rule), with its sidecar's metadata and flag."""
    root = Path(root)
    if not root.is_dir():
        raise Unreadable(f"{root} is not a folder")
    data_files = sorted(
        (p for p in root.rglob("*") if p.is_file() and not p.name.endswith(".metadata")),
        key=lambda p: p.relative_to(root).as_posix(),
    )
    by_sidecar: Dict[Path, List[Path]] = {}
    for p in data_files:
        by_sidecar.setdefault(p.with_suffix(".metadata"), []).append(p)
    for p in data_files:
        key = p.relative_to(root).as_posix()
        sidecar = p.with_suffix(".metadata")
        metadata: Optional[Dict[str, Any]] = None
        compressed: Optional[bool] = None
        notes: List[str] = []
        if sidecar.is_file():
            try:
                recorded = json.loads(sidecar.read_text("utf-8"))
            except (ValueError, UnicodeDecodeError) as err:
                yield OldObject(key, _opener(p), None, None, problem=f"its sidecar {sidecar.name} is not JSON ({err})")
                continue
            if isinstance(recorded, dict):
                flag = recorded.pop("compressed", None)
                metadata = recorded or None
                siblings = by_sidecar[sidecar]
                if len(siblings) > 1:
                    # The sidecar was written by whichever sibling was stored last.
                    names = ", ".join(s.name for s in siblings)
                    notes.append(f"sidecar {sidecar.name} is shared by {names}: its metadata may belong to another of them")
                else:
                    compressed = flag if isinstance(flag, bool) else None
        yield OldObject(key, _opener(p), metadata, compressed, notes)


def scan_bucket(bucket_name: str, *, project: Optional[str] = None, prefix: Optional[str] = None) -> Iterator[OldObject]:
    """The blobs of a GCS bucket written by the old component (needs google-cloud-storage:
    ``pip install 'filestorage-client[gcs]'``; credentials as for any GCS client, or
    STORAGE_EMULATOR_HOST). Blobs are downloaded raw (no transcoding) into a temp file."""
    try:
        from google.cloud import storage  # type: ignore[import-not-found]
    except ImportError:
        raise Unreadable("reading a bucket needs google-cloud-storage: pip install 'filestorage-client[gcs]'") from None
    client = storage.Client(project=project)
    for blob in client.list_blobs(bucket_name, prefix=prefix or None):
        if blob.name.endswith("/"):
            continue  # a folder placeholder, not a value

        def open_blob(blob: Any = blob) -> BinaryIO:
            spool = tempfile.SpooledTemporaryFile(max_size=IN_MEMORY_LIMIT)
            # raw_download: GCS would otherwise gunzip Content-Encoding: gzip itself.
            blob.download_to_file(spool, raw_download=True)
            spool.seek(0)
            return spool  # type: ignore[return-value]

        metadata, notes = _bucket_metadata(blob.metadata)
        yield OldObject(blob.name, open_blob, metadata, blob.content_encoding == "gzip", notes)


def _bucket_metadata(recorded: Optional[Dict[str, str]]) -> Tuple[Optional[Dict[str, Any]], List[str]]:
    """GCS custom metadata holds strings only: the old component's lists and dicts arrive as
    their Python repr ("['a', 'b']"). Those are read back with ast.literal_eval (literals
    only, nothing is run); numbers and booleans stay strings, since "3" and 3 look alike."""
    if not recorded:
        return None, []
    out: Dict[str, Any] = {}
    restored = []
    for name, value in recorded.items():
        out[name] = value
        if isinstance(value, str) and value[:1] in ("[", "{"):
            try:
                parsed = ast.literal_eval(value)
                kind, plain, _ = plain_pickle.to_kind(parsed)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError, plain_pickle.NotPlainData):
                continue
            if kind == "json" and isinstance(plain, (list, dict)):
                out[name] = plain
                restored.append(name)
    notes = [f"metadata {', '.join(sorted(restored))} read back from the Python repr GCS kept"] if restored else []
    return out, notes


def decode(obj: OldObject, *, trust_pickle: bool, compression_threshold: int = 1024, raw_as: str = "auto") -> Decoded:
    """Tells what ``obj`` is. Raises Unreadable (a pickle without trust_pickle, a pickle
    that is not plain data, a broken gzip or sidecar)."""
    if obj.problem:
        raise Unreadable(obj.problem)
    notes = list(obj.notes)
    gunzip = _decide_gzip(obj, compression_threshold, notes)

    def open_value() -> BinaryIO:
        stored = obj.open_stored()
        return gzip.GzipFile(fileobj=stored, mode="rb") if gunzip else stored  # type: ignore[return-value]

    try:
        with open_value() as f:
            head = f.read(2)
            if plain_pickle.looks_pickled(head):
                return _unpickle(head + f.read(), trust_pickle, notes)
            size, utf8 = len(head), True
            decoder = codecs.getincrementaldecoder("utf-8")()
            chunk = head
            while True:
                if utf8:
                    try:
                        decoder.decode(chunk)
                    except UnicodeDecodeError:
                        utf8 = False
                chunk = f.read(READ_CHUNK)
                if not chunk:
                    break
                size += len(chunk)
            if utf8:
                try:
                    decoder.decode(b"", final=True)
                except UnicodeDecodeError:
                    utf8 = False
    except (OSError, EOFError, zlib.error) as err:
        raise Unreadable(f"cannot read its data: {err}") from err
    kind = "text" if utf8 and raw_as == "auto" else "bytes"
    if size > IN_MEMORY_LIMIT:
        return Decoded(kind, size, open_value=open_value, notes=notes)
    with open_value() as f:
        data = f.read()
    return Decoded(kind, size, value=data.decode("utf-8") if kind == "text" else data, notes=notes)


def _decide_gzip(obj: OldObject, threshold: int, notes: List[str]) -> bool:
    with obj.open_stored() as f:
        is_gzip = f.read(2) == GZIP_MAGIC
    if obj.compressed is True:
        if not is_gzip:
            notes.append("marked compressed but not gzip: taken as stored")
        return is_gzip
    if obj.compressed is False or not is_gzip:
        return False
    # Nothing recorded the flag (no sidecar: values stored without metadata). The old
    # component gzipped only values over the threshold, so a gzip stream that unpacks to
    # more than that was almost surely its doing; a smaller one is a stored .gz value.
    try:
        with obj.open_stored() as stored, gzip.GzipFile(fileobj=stored, mode="rb") as g:
            unpacked = 0
            while chunk := g.read(READ_CHUNK):
                unpacked += len(chunk)
    except (OSError, EOFError, zlib.error):
        return False
    if unpacked > threshold:
        notes.append("no compressed flag was recorded (stored without metadata); the data is gzip over the threshold: unpacked")
        return True
    return False


def _unpickle(data: bytes, trust_pickle: bool, notes: List[str]) -> Decoded:
    if not trust_pickle:
        raise Unreadable("its value is pickled (the old component pickled dicts, lists and other objects): refused; "
                         "rerun with --trust-pickle to decode plain data (dict, list, str, bytes, numbers, ...)")
    try:
        value = plain_pickle.loads_plain(data)
    except plain_pickle.NotPlainData as err:
        raise Unreadable(str(err)) from None
    except Exception:  # noqa: BLE001 - not a pickle after all: malformed opcodes
        notes.append("starts like a pickle but is none: taken as bytes")
        return Decoded("bytes", len(data), value=data, notes=notes)
    try:
        kind, plain, shape_notes = plain_pickle.to_kind(value)
    except plain_pickle.NotPlainData as err:
        raise Unreadable(str(err)) from None
    notes.append(f"unpickled a {type(value).__name__}")
    return Decoded(kind, len(data), value=plain, notes=notes + shape_notes)


def _opener(path: Path) -> Callable[[], BinaryIO]:
    return lambda: open(path, "rb")

