"""The old component's documented uses, run as a service would: the same code against the
real old component (aiecs 2.2.0, local backend) and against the daemon through
filestorage_client, which differ by one import. Where the old one mangled a value, the
test shows it did, and that the client does not."""

from __future__ import annotations

import asyncio
import json
import struct
import zlib

import pytest

import filestorage_client
from filestorage_client import FileStorage, get_file_storage, initialize_file_storage
from filestorage_client.storage import _reset_shared_for_tests
from old_component import load_old_file_storage


def tiny_png() -> bytes:
    """A real 1x1 PNG: bytes that are not UTF-8 (the old component returned None for them)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0)
    idat = zlib.compress(b"\x00\xff\x00\x00\xff")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


TASK_RESULT = {"task_id": "t-42", "status": "completed", "result": {"score": 0.93, "labels": ["cat", "dog"]}, "steps": 3}
TASK_METADATA = {"tags": ["ml", "inference"], "user_id": "u-1", "attempt": 2}


async def service_code(storage, p: str) -> dict:
    """What a task service does with the component, unchanged between the two."""
    seen: dict = {}
    seen["init"] = await storage.initialize()
    seen["store_text"] = await storage.store(p + "notes/readme.txt", "Plain text, ünïcode too")
    seen["text"] = await storage.retrieve(p + "notes/readme.txt")
    seen["store_png"] = await storage.store(p + "images/pixel.png", tiny_png())
    seen["png"] = await storage.retrieve(p + "images/pixel.png")
    seen["store_result"] = await storage.store(p + "tasks/t-42/result.json", TASK_RESULT, metadata=TASK_METADATA)
    seen["result"] = await storage.retrieve(p + "tasks/t-42/result.json")
    for i in range(5):
        await storage.store(p + f"tasks/batch/{i}", f"item {i}")
    seen["listed"] = sorted(await storage.list_keys(prefix=p + "tasks/batch/"))
    seen["listed_limit"] = len(await storage.list_keys(prefix=p + "tasks/batch/", limit=2))
    keys = [p + f"tasks/batch/{i}" for i in range(5)] + [p + "tasks/batch/missing"]
    seen["exists"] = [await storage.exists(k) for k in keys]
    seen["deleted"] = [await storage.delete(k) for k in keys[:3]]
    seen["exists_after"] = [await storage.exists(k) for k in keys]
    seen["missing"] = await storage.retrieve(p + "nothing/here")
    stats = storage.get_stats()
    seen["stats_keys"] = {k for k in ("initialized", "gcs_available", "local_fallback_enabled", "cache_enabled", "cache_size") if k in stats}
    seen["stats_initialized"] = stats["initialized"]
    return seen


async def test_the_same_service_code_runs_on_the_old_component_and_on_the_daemon(fs: FileStorage, prefix: str, tmp_path) -> None:
    # The old component's in-memory cache would hand back the caller's own object and hide
    # what it wrote to disk (which is what another process, or a restart, reads).
    old = load_old_file_storage().FileStorage({"local_storage_path": str(tmp_path / "old"), "enable_cache": False})
    before = await service_code(old, "")
    after = await service_code(fs, prefix)

    # Both: text, the task result dict, the listing with a limit, exists and delete loops, stats keys.
    for seen in (before, after):
        assert seen["init"] is True
        assert seen["store_text"] is seen["store_png"] is seen["store_result"] is True
        assert seen["text"] == "Plain text, ünïcode too"
        assert seen["result"] == TASK_RESULT
        assert seen["listed_limit"] == 2
        assert seen["exists"] == [True] * 5 + [False]
        assert seen["exists_after"] == [False] * 3 + [True, True, False]
        assert seen["missing"] is None
        assert seen["stats_keys"] == {"initialized", "gcs_available", "local_fallback_enabled", "cache_enabled", "cache_size"}
        assert seen["stats_initialized"] is True
    # The old component lost the PNG (bytes that are not UTF-8 came back None); the daemon keeps it.
    assert before["png"] is None
    assert after["png"] == tiny_png()
    assert after["listed"] == [prefix + f"tasks/batch/{i}" for i in range(5)]
    assert after["deleted"] == [True, True, True]


async def test_task_result_metadata_keeps_lists_and_numbers(fs: FileStorage, prefix: str) -> None:
    assert await fs.store(prefix + "tasks/t-1/result.json", TASK_RESULT, metadata=TASK_METADATA, content_type="application/json")
    info = await fs.stat(prefix + "tasks/t-1/result.json")
    assert info.kind == "json"
    assert info.metadata == TASK_METADATA
    assert isinstance(info.metadata["tags"], list) and isinstance(info.metadata["attempt"], int)
    assert info.content_type == "application/json"
    assert info.size == len(json.dumps(TASK_RESULT, separators=(",", ":")).encode())
    assert info.generation > 0


async def test_list_keys_is_sorted_and_follows_pages_up_to_limit(fs: FileStorage, prefix: str) -> None:
    names = [f"k{i:04d}" for i in range(2345)]
    for name in reversed(names[:40]):
        assert await fs.store(prefix + "few/" + name, "x")
    assert await fs.list_keys(prefix + "few/") == [prefix + "few/" + n for n in names[:40]]
    assert await fs.list_keys(prefix + "few/", limit=7) == [prefix + "few/" + n for n in names[:7]]
    assert await fs.list_keys(prefix + "few/", limit=0) == [prefix + "few/" + n for n in names[:40]]
    # More than one daemon page (1000 keys): list_keys and iter_keys follow next_page_token.
    await fs.delete_many(prefix=prefix + "few/")
    for at in range(0, len(names), 100):
        stored = await asyncio.gather(*(fs.store(prefix + "many/" + n, b"") for n in names[at : at + 100]))
        assert all(stored)
    assert await fs.list_keys(prefix + "many/") == [prefix + "many/" + n for n in names]
    assert await fs.list_keys(prefix + "many/", limit=1500) == [prefix + "many/" + n for n in names[:1500]]
    assert [k async for k in fs.iter_keys(prefix + "many/", page_size=700)] == [prefix + "many/" + n for n in names]
    page = await fs.list_page(prefix + "many/", 10, delimiter="/")
    assert len(page.keys) == 10 and page.next_page_token
    assert await fs.delete_many(prefix=prefix + "many/") == len(names)


async def test_one_shared_instance(daemon_address: str, prefix: str) -> None:
    _reset_shared_for_tests()
    try:
        shared = await initialize_file_storage({"address": daemon_address, "gcs_bucket_name": "old-bucket"})
        assert get_file_storage() is shared
        assert get_file_storage({"address": "elsewhere:1"}) is shared
        assert await shared.store(prefix + "shared", "one")
        assert await filestorage_client.get_file_storage().retrieve(prefix + "shared") == "one"
    finally:
        _reset_shared_for_tests()


def test_the_shared_instance_works_from_one_event_loop_after_another(daemon_address: str, prefix: str) -> None:
    """asyncio.run per task (Celery-style): grpc.aio channels are per loop, so a shared
    FileStorage keeps working when each call comes from a new loop."""
    storage = FileStorage({"address": daemon_address})
    for i in range(3):
        assert asyncio.run(storage.store(prefix + f"loop/{i}", i)) is True
        assert asyncio.run(storage.retrieve(prefix + f"loop/{i}")) == i
    assert storage.get_stats()["initialized"] is True


@pytest.mark.parametrize("config", [None, {}, {"enable_cache": True, "max_cache_size_mb": 100}])
def test_old_config_dicts_are_accepted(config, monkeypatch) -> None:
    monkeypatch.setenv("FILESTORAGE_ADDRESS", "127.0.0.1:1")
    assert FileStorage(config).address == "127.0.0.1:1"
