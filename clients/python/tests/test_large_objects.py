"""upload/download at constant memory (64 MiB through a process whose peak RSS must not
grow by anything near that), with CRC32C checked both ways, and resumable downloads."""

from __future__ import annotations

import hashlib
import os
import re

import grpc
import pytest

from filestorage_client import FileStorage, FileStorageError
from filestorage_client.crc32c import IMPLEMENTATION, crc32c
from filestorage_client.file_download import partial_path

MiB = 1024 * 1024
SIZE = 64 * MiB


def rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.M).group(1))


def reset_peak_rss() -> None:
    """Resets VmHWM to the current RSS (Linux: writing 5 to clear_refs)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def write_big_file(path: str) -> tuple:
    """64 MiB of varied bytes, written a MiB at a time; returns (sha256, crc32c)."""
    sha, crc = hashlib.sha256(), 0
    with open(path, "wb") as f:
        for i in range(SIZE // MiB):
            block = hashlib.sha256(str(i).encode()).digest() * (MiB // 32)
            f.write(block)
            sha.update(block)
            crc = crc32c(block, crc)
    return sha.hexdigest(), crc


def sha256_of(path: str) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(MiB):
            sha.update(chunk)
    return sha.hexdigest()


async def test_64_mib_upload_and_download_at_constant_memory(strict_fs: FileStorage, prefix: str, tmp_path) -> None:
    assert IMPLEMENTATION == "google-crc32c", "the test venv installs the crc32c extra"
    source, target = str(tmp_path / "big.bin"), str(tmp_path / "copy.bin")
    digest, crc = write_big_file(source)
    # Warm up the channel and the code paths first, so only the transfer is measured.
    await strict_fs.upload(prefix + "warm", b"x" * (2 * MiB))
    await strict_fs.download(prefix + "warm", str(tmp_path / "warm"))

    reset_peak_rss()
    before = rss_kib("VmRSS")
    info = await strict_fs.upload(prefix + "big", source, metadata={"tags": ["model"]})
    after_upload = rss_kib("VmHWM")
    reset_peak_rss()
    got = await strict_fs.download(prefix + "big", target)
    after_download = rss_kib("VmHWM")

    assert info.size == SIZE and info.crc32c == crc and info.kind == "bytes" and info.metadata == {"tags": ["model"]}
    assert got.generation == info.generation
    assert sha256_of(target) == digest
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".partial")]
    # Peak growth well under the 64 MiB moved (grpc's buffers and a few chunks).
    assert (after_upload - before) < 24 * 1024, f"upload raised the peak RSS by {(after_upload - before) // 1024} MiB"
    assert (after_download - before) < 24 * 1024, f"download raised the peak RSS by {(after_download - before) // 1024} MiB"


async def test_upload_from_a_file_object_an_iterable_and_an_async_iterable(strict_fs: FileStorage, prefix: str) -> None:
    import io

    data = os.urandom(3 * MiB + 5)
    await strict_fs.upload(prefix + "file", io.BytesIO(data), chunk_size=64 * 1024)

    async def pieces():
        for at in range(0, len(data), 700_000):
            yield data[at : at + 700_000]

    await strict_fs.upload(prefix + "async", pieces())
    await strict_fs.upload(prefix + "iter", [data[:10], memoryview(data)[10:]], kind="bytes")
    for name in ("file", "async", "iter"):
        assert await strict_fs.retrieve(prefix + name) == data
    await strict_fs.upload(prefix + "text", [b"caf", "é".encode()], kind="text", content_type="text/plain")
    assert await strict_fs.retrieve(prefix + "text") == "café"


async def test_a_declared_size_that_differs_stores_nothing(strict_fs: FileStorage, prefix: str) -> None:
    with pytest.raises(FileStorageError) as err:
        await strict_fs.upload(prefix + "short", b"12345", size=6)
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT or err.value.code == grpc.StatusCode.DATA_LOSS
    assert await strict_fs.exists(prefix + "short") is False


async def test_download_resumes_a_partial_file_of_the_same_generation(strict_fs: FileStorage, prefix: str, tmp_path) -> None:
    data = os.urandom(5 * MiB + 3)
    info = await strict_fs.upload(prefix + "obj", data)
    target = str(tmp_path / "obj.bin")
    partial = partial_path(target, info.generation)

    # A partial file whose prefix differs from the object: if resume reuses it (and does
    # not fetch those bytes again), the whole-object CRC32C catches it.
    with open(partial, "wb") as f:
        f.write(b"\x00" * (2 * MiB))
    with pytest.raises(FileStorageError) as err:
        await strict_fs.download(prefix + "obj", target)
    assert err.value.code == grpc.StatusCode.DATA_LOSS
    assert not os.path.exists(partial) and not os.path.exists(target)

    # A good partial file is continued from its size.
    with open(partial, "wb") as f:
        f.write(data[: 2 * MiB])
    stale = partial_path(target, info.generation - 1)
    open(stale, "wb").close()
    await strict_fs.download(prefix + "obj", target)
    with open(target, "rb") as f:
        assert f.read() == data
    assert not os.path.exists(partial) and not os.path.exists(stale)

    # resume=False starts over whatever the partial file holds.
    with open(partial, "wb") as f:
        f.write(b"\x00" * MiB)
    await strict_fs.download(prefix + "obj", target, resume=False)
    with open(target, "rb") as f:
        assert f.read() == data


async def test_a_partial_file_of_an_older_generation_is_not_continued(strict_fs: FileStorage, prefix: str, tmp_path) -> None:
    first = await strict_fs.upload(prefix + "obj", b"A" * MiB)
    target = str(tmp_path / "obj.bin")
    with open(partial_path(target, first.generation), "wb") as f:
        f.write(b"A" * 1000)
    await strict_fs.upload(prefix + "obj", b"B" * MiB)
    await strict_fs.download(prefix + "obj", target)
    with open(target, "rb") as f:
        assert f.read() == b"B" * MiB
    assert os.listdir(tmp_path) == ["obj.bin"]


async def test_iter_download_reads_ranges(strict_fs: FileStorage, prefix: str) -> None:
    data = bytes(range(256)) * 8192
    await strict_fs.store(prefix + "r", data)
    chunks = [c async for c in strict_fs.iter_download(prefix + "r", offset=1000, limit=300_000)]
    assert b"".join(chunks) == data[1000:301000]
    assert await strict_fs.read_range(prefix + "r", len(data) - 10) == data[-10:]
