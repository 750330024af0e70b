"""Values keep their kind, including those the old component mangled, small or large."""

from __future__ import annotations

import logging

import pytest

from filestorage_client import FileStorage
from old_component import load_old_file_storage

# (value, what the old component read back from disk, kind now)
MANGLED = [
    ('{"not": "json"}', {"not": "json"}, "text"),  # a JSON-looking string became a dict
    ("123", 123, "text"),  # a number-looking string became an int
    ("N.", None, "text"),  # a string that is a valid pickle was unpickled
    (b"", "", "bytes"),  # empty bytes became ""
    (b"plain ascii bytes", "plain ascii bytes", "bytes"),  # bytes became str
    (bytes(range(256)), None, "bytes"),  # binary became None
    ((1, "two"), (1, "two"), "json"),  # the old one pickled it; JSON has lists
]


@pytest.mark.parametrize("value, old_read, kind", MANGLED, ids=[repr(m[0])[:20] for m in MANGLED])
async def test_kinds_the_old_component_mangled_come_back_exactly(fs: FileStorage, prefix: str, tmp_path, value, old_read, kind) -> None:
    old = load_old_file_storage().FileStorage({"local_storage_path": str(tmp_path), "enable_cache": False})
    assert await old.store("k", value)
    assert await old.retrieve("k") == old_read

    assert await fs.store(prefix + "k", value) is True
    expected = list(value) if isinstance(value, tuple) else value
    got = await fs.retrieve(prefix + "k")
    assert got == expected and type(got) is type(expected)
    assert (await fs.stat(prefix + "k")).kind == kind


@pytest.mark.parametrize(
    "value",
    [{"a": 1, "nested": {"b": [1, 2.5, None, True]}}, [1, "two", None], 42, 2.5, True, "", "ünïcode ✓"],
    ids=["dict", "list", "int", "float", "bool", "empty str", "unicode"],
)
async def test_json_and_text_values_round_trip(fs: FileStorage, prefix: str, value) -> None:
    assert await fs.store(prefix + "v", value)
    got = await fs.retrieve(prefix + "v")
    assert got == value and type(got) is type(value)


async def test_bytearray_and_memoryview_are_bytes(fs: FileStorage, prefix: str) -> None:
    assert await fs.store(prefix + "ba", bytearray(b"\x00\x01"))
    assert await fs.store(prefix + "mv", memoryview(b"abcdef")[1:4])
    assert await fs.retrieve(prefix + "ba") == b"\x00\x01"
    assert await fs.retrieve(prefix + "mv") == b"bcd"


async def test_kind_can_be_forced(fs: FileStorage, prefix: str) -> None:
    assert await fs.store(prefix + "raw-json", b'{"a": 1}', kind="json")
    assert await fs.retrieve(prefix + "raw-json") == {"a": 1}
    assert await fs.store(prefix + "text-as-bytes", "abc", kind="bytes")
    assert await fs.retrieve(prefix + "text-as-bytes") == b"abc"


async def test_values_that_are_not_json_are_refused_not_pickled(fs: FileStorage, prefix: str, caplog) -> None:
    import datetime

    with caplog.at_level(logging.ERROR, logger="filestorage_client"):
        assert await fs.store(prefix + "set", {1, 2}) is False
        assert await fs.store(prefix + "when", datetime.datetime.now()) is False
        assert await fs.store(prefix + "nan", float("nan")) is False
        assert await fs.store(prefix + "meta", "x", metadata={"blob": b"x"}) is False
    assert await fs.exists(prefix + "set") is False
    messages = [r.getMessage() for r in caplog.records]
    assert any("INVALID_ARGUMENT: a value must be JSON" in m for m in messages)
    assert any("INVALID_ARGUMENT: metadata must be JSON" in m for m in messages)


@pytest.mark.parametrize("value", [b"\x00\x01\x02" * (2 * 1024 * 1024), "ü" * (3 * 1024 * 1024), {"rows": list(range(700_000))}],
                         ids=["6 MiB bytes", "6 MiB text", "json over 4 MiB"])
async def test_values_over_the_unary_limit_go_through_the_streams(fs: FileStorage, prefix: str, value) -> None:
    assert await fs.store(prefix + "big", value) is True
    info = await fs.stat(prefix + "big")
    assert info.size > 4 * 1024 * 1024
    got = await fs.retrieve(prefix + "big")
    assert got == value and type(got) is type(value)


async def test_max_unary_bytes_sends_small_values_through_the_streams(daemon_address: str, prefix: str) -> None:
    async with FileStorage({"address": daemon_address, "max_unary_bytes": 16, "strict": True}) as small:
        before = (await small.get_stats_async())["metrics"].get("StoreStream", {}).get("total", 0)
        assert await small.store(prefix + "s", "more than sixteen bytes", {"tags": ["t"]})
        after = (await small.get_stats_async())["metrics"]["StoreStream"]["total"]
        assert after == before + 1
        assert await small.retrieve(prefix + "s") == "more than sixteen bytes"
        assert (await small.stat(prefix + "s")).metadata == {"tags": ["t"]}
