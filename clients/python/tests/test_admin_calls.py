"""The calls added to the contract after the familiar API, against the real daemon (local
tier only, no GCS): query_upload, get_usage, flush and verify."""

from __future__ import annotations

import uuid

import grpc
import pytest

from filestorage_client import FileStorage, FileStorageError
from filestorage_client._gen import file_storage_pb2 as pb
from filestorage_client.transfers import chunks_of, send_store_stream


async def test_get_usage_counts_the_objects_under_a_prefix(fs: FileStorage, prefix: str) -> None:
    empty = await fs.get_usage(prefix)
    assert (empty["object_count"], empty["total_bytes"], empty["stored_bytes"]) == (0, 0, 0)
    values = [b"a" * 10, "zwölf", {"n": [1, 2, 3]}]
    for i, value in enumerate(values):
        assert await fs.store(f"{prefix}{i}", value)
    assert await fs.store(prefix[:-1] + "-beside/x", b"not under the prefix")
    sizes = [(await fs.stat(f"{prefix}{i}")).size for i in range(len(values))]
    usage = await fs.get_usage(prefix)
    assert usage["object_count"] == 3
    assert usage["total_bytes"] == sum(sizes) > 0
    assert usage["stored_bytes"] > 0
    assert (await fs.get_usage(prefix + "1"))["object_count"] == 1
    await fs.delete(prefix + "0")
    assert (await fs.get_usage(prefix))["object_count"] == 2


async def test_query_upload_of_an_unknown_id_is_none(fs: FileStorage, strict_fs: FileStorage) -> None:
    unknown = f"never-begun-{uuid.uuid4().hex}"
    assert await fs.query_upload(unknown) is None
    assert await strict_fs.query_upload(unknown) is None  # a miss is a value in strict mode too
    # A bad id is a failure, not a miss.
    with pytest.raises(FileStorageError) as err:
        await strict_fs.query_upload("not/an id")
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT


async def test_query_upload_reports_a_finished_resumable_upload(fs: FileStorage, prefix: str) -> None:
    upload_id = f"py-{uuid.uuid4().hex}"
    data = b"resumable bytes " * 1000
    header = pb.StoreStreamHeader(key=prefix + "r", kind=pb.DATA_KIND_BYTES, upload_id=upload_id, size=len(data))
    await send_store_stream(fs._conn, header, chunks_of(data, 4096))
    status = await fs.query_upload(upload_id)
    assert status is not None
    assert status["complete"] is True
    assert status["committed_size"] == len(data)
    assert status["object"].key == prefix + "r" and status["object"].size == len(data)
    assert status["expires_at"] is None or status["expires_at"].tzinfo is not None


async def test_flush_without_gcs_is_failed_precondition(fs: FileStorage, strict_fs: FileStorage) -> None:
    with pytest.raises(FileStorageError) as err:
        await strict_fs.flush(timeout_seconds=5)
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert err.value.details
    assert await fs.flush() is None  # lenient: logged, None
    with pytest.raises(FileStorageError) as bad:
        await strict_fs.flush(timeout_seconds=-1)
    assert bad.value.code == grpc.StatusCode.INVALID_ARGUMENT


async def test_verify_of_a_clean_prefix_finds_nothing(strict_fs: FileStorage, prefix: str) -> None:
    for i in range(4):
        assert await strict_fs.store(f"{prefix}{i}", f"value {i}" * 100)
    summary, findings = await strict_fs.verify(prefix)
    assert findings == []
    assert summary["corrupt"] == 0 and summary["orphans"] == 0
    assert summary["checked_copies"] >= 4
    assert summary["checked_bytes"] > 0
    assert summary["seconds"] >= 0
