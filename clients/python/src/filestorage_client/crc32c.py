"""CRC32C (Castagnoli), the checksum the daemon keeps of every object's original bytes.

Uses the ``google-crc32c`` package (the ``crc32c`` extra: ``pip install
'filestorage-client[crc32c]'``) when it is importable with its C extension, else a
table-driven pure-Python fallback that manages only a few MiB/s: fine for small
values, slow for big uploads (a debug line says which one is in use).
"""

from __future__ import annotations

import logging
from typing import Callable, Union

logger = logging.getLogger("filestorage_client")

BytesLike = Union[bytes, bytearray, memoryview]

_POLY = 0x82F63B78  # reflected Castagnoli polynomial


def _make_table() -> list:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ _POLY if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _make_table()


def crc32c_python(data: BytesLike, crc: int = 0) -> int:
    """Running CRC32C in pure Python: chain chunks as ``crc = crc32c_python(chunk, crc)``."""
    table = _TABLE
    c = crc ^ 0xFFFFFFFF
    for b in memoryview(data).cast("B"):
        c = table[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def _native() -> Callable[[BytesLike, int], int] | None:
    try:
        import google_crc32c  # type: ignore[import-not-found]
    except ImportError:
        return None
    if getattr(google_crc32c, "implementation", "c") != "c":
        return None  # its own fallback is pure Python too
    extend = google_crc32c.extend
    # It takes bytes only (not bytearray or memoryview).
    return lambda data, crc=0: extend(crc, data if type(data) is bytes else bytes(data))


_native_crc = _native()
#: "google-crc32c" or "python": which implementation ``crc32c`` uses.
IMPLEMENTATION = "google-crc32c" if _native_crc else "python"
logger.debug("filestorage_client: CRC32C by %s", IMPLEMENTATION)


def crc32c(data: BytesLike, crc: int = 0) -> int:
    """Running CRC32C of ``data`` continuing ``crc`` (0 to start)."""
    if _native_crc is not None:
        return _native_crc(data, crc)
    return crc32c_python(data, crc)
