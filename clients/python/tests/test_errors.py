"""Failures: strict mode raises FileStorageError with the daemon's gRPC code; the default
(the old component's contract) returns False/None and logs the same error."""

from __future__ import annotations

import logging
import socket
import threading
import time

import grpc
import pytest

from conftest import spawn_daemon
from filestorage_client import FileStorage, FileStorageError


async def code_of(call) -> grpc.StatusCode:
    with pytest.raises(FileStorageError) as err:
        await call
    assert err.value.details, "a FileStorageError carries the daemon's message"
    return err.value.code


async def test_each_failure_carries_its_code(strict_fs: FileStorage, prefix: str) -> None:
    fs = strict_fs
    assert await fs.store(prefix + "k", "v")
    gen = (await fs.stat(prefix + "k")).generation
    C = grpc.StatusCode
    assert await code_of(fs.store("../escape", "x")) == C.INVALID_ARGUMENT
    assert await code_of(fs.store(prefix + "a\nb", "x")) == C.INVALID_ARGUMENT
    assert await code_of(fs.store(prefix + "t", b"\xff\xfe", kind="text")) == C.INVALID_ARGUMENT
    assert await code_of(fs.store(prefix + "j", b"{not json", kind="json")) == C.INVALID_ARGUMENT
    assert await code_of(fs.store(prefix + "s", {1, 2})) == C.INVALID_ARGUMENT  # caught before sending
    assert await code_of(fs.stat(prefix + "missing")) == C.NOT_FOUND
    assert await code_of(fs.download(prefix + "missing", "/nonexistent/never-written")) == C.NOT_FOUND
    assert await code_of(fs.store(prefix + "k", "w", if_generation_match=gen + 1)) == C.FAILED_PRECONDITION
    assert await code_of(fs.store(prefix + "k", "w", if_generation_match=0)) == C.FAILED_PRECONDITION
    assert await code_of(fs.delete(prefix + "k", if_generation_match=gen + 1)) == C.FAILED_PRECONDITION
    # The daemon refuses a stream at its header; the writes already under way must not
    # turn that into grpc's local INTERNAL.
    for _ in range(3):
        assert await code_of(fs.upload(prefix + "k", b"x" * (8 * 1024 * 1024), if_generation_match=0)) == C.FAILED_PRECONDITION
    assert await code_of(fs.read_range(prefix + "k", 100)) == C.OUT_OF_RANGE
    assert await code_of(fs.list_keys(prefix, limit=-1)) == C.INVALID_ARGUMENT
    # A miss is a value, not an error, in strict mode too.
    assert await fs.retrieve(prefix + "missing") is None
    assert await fs.exists(prefix + "missing") is False
    assert await fs.delete(prefix + "missing") is False
    assert await fs.retrieve(prefix + "k") == "v"


async def test_lenient_mode_returns_false_or_none_and_logs(fs: FileStorage, prefix: str, caplog) -> None:
    with caplog.at_level(logging.ERROR, logger="filestorage_client"):
        assert await fs.store("../escape", "x") is False
        assert await fs.stat(prefix + "missing") is None
        assert await fs.read_range(prefix + "missing") is None
        assert await fs.upload(prefix + "u", "/nonexistent/file") is None
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("FileStorage.store('../escape') failed: INVALID_ARGUMENT: ") for m in messages), messages
    assert any("stat(" in m and "NOT_FOUND" in m for m in messages), messages
    assert any("upload(" in m and "No such file" in m for m in messages), messages


async def test_resource_exhausted_over_the_daemons_object_limit(tmp_path, prefix: str) -> None:
    with spawn_daemon(str(tmp_path), {"MAX_OBJECT_BYTES": "1000"}) as daemon:
        async with FileStorage({"address": daemon.address, "strict": True}) as fs:
            assert await code_of(fs.store(prefix + "big", b"x" * 1001)) == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert await code_of(fs.upload(prefix + "big", b"x" * 5000)) == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert await fs.exists(prefix + "big") is False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_unavailable_and_the_deadline(prefix: str) -> None:
    address = f"127.0.0.1:{free_port()}"
    async with FileStorage({"address": address, "strict": True, "retries": 0, "timeout_seconds": 2}) as fs:
        assert await code_of(fs.exists(prefix + "k")) == grpc.StatusCode.UNAVAILABLE
        assert await code_of(fs.initialize()) == grpc.StatusCode.UNAVAILABLE
    async with FileStorage({"address": address, "retries": 0, "timeout_seconds": 2}) as lenient:
        assert await lenient.initialize() is False
        stats = lenient.get_stats()
        assert stats["initialized"] is False and stats["stale"] is True and "UNAVAILABLE" in stats["error"]
    # Something that accepts connections but never speaks HTTP/2: the deadline ends the call.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        async with FileStorage({"address": f"127.0.0.1:{port}", "strict": True, "retries": 0, "timeout_seconds": 0.5}) as fs:
            started = time.monotonic()
            assert await code_of(fs.exists(prefix + "k")) == grpc.StatusCode.DEADLINE_EXCEEDED
            assert 0.4 < time.monotonic() - started < 5


async def test_idempotent_calls_are_retried_until_the_daemon_is_back(tmp_path, prefix: str) -> None:
    """The daemon comes up while the calls back off: retried calls succeed, a store without
    a precondition is not retried (a repeat could overwrite a newer write)."""
    port = free_port()
    config = {"address": f"127.0.0.1:{port}", "strict": True, "retries": 8, "timeout_seconds": 5}
    async with FileStorage(config) as fs:
        started = time.monotonic()
        assert await code_of(fs.store(prefix + "plain", "x")) == grpc.StatusCode.UNAVAILABLE
        assert time.monotonic() - started < 1.5, "an unconditional store is not retried"

        stop = threading.Event()

        def bring_up() -> None:
            time.sleep(0.3)
            with spawn_daemon(str(tmp_path), listen=f"127.0.0.1:{port}"):
                stop.wait(60)

        thread = threading.Thread(target=bring_up)
        thread.start()
        try:
            assert await fs.exists(prefix + "k") is False  # retried until the daemon answered
            assert await fs.store(prefix + "cond", "x", if_generation_match=0) is True  # conditional: retried
            assert await fs.list_keys(prefix) == [prefix + "cond"]
        finally:
            stop.set()
            thread.join()
