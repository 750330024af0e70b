"""The installed package: its dependencies, its stubs, its config, CRC32C, get_stats."""

from __future__ import annotations

import importlib.metadata
import logging
import os
import re

import pytest

import filestorage_client
from conftest import spawn_daemon
from filestorage_client import FileStorage, config
from filestorage_client.crc32c import crc32c, crc32c_python

OLD_COMPONENT_CONFIG = {
    # Every key of the old FileStorageConfig, with its defaults.
    "gcs_bucket_name": "my-bucket", "gcs_project_id": "my-project", "gcs_credentials_path": "/key.json",
    "gcs_location": "US", "local_storage_path": "./storage", "enable_local_fallback": True, "enable_cache": True,
    "cache_ttl_seconds": 3600, "max_cache_size_mb": 100, "chunk_size": 8192, "max_retries": 3, "timeout_seconds": 30,
    "enable_compression": True, "compression_threshold_bytes": 1024, "enable_encryption": False, "encryption_key": None,
}


def test_it_depends_on_grpcio_and_protobuf_only() -> None:
    requires = importlib.metadata.requires("filestorage-client")
    plain = sorted(re.split(r"[<>=!~ ;]", r)[0] for r in requires if "extra ==" not in r)
    assert plain == ["grpcio", "protobuf"]
    assert filestorage_client.__file__.endswith(os.path.join("filestorage_client", "__init__.py"))


def test_the_stubs_ship_inside_the_package() -> None:
    from filestorage_client._gen import file_storage_pb2, file_storage_pb2_grpc

    assert file_storage_pb2.DESCRIPTOR.package == "filestorage.v1"
    assert file_storage_pb2_grpc.FileStorageServiceStub.__module__ == "filestorage_client._gen.file_storage_pb2_grpc"
    folder = os.path.dirname(file_storage_pb2.__file__)
    assert os.path.exists(os.path.join(folder, "file_storage_pb2.pyi"))


def test_crc32c_fallback_matches_the_native_one() -> None:
    assert crc32c_python(b"123456789") == 0xE3069283  # the CRC-32C check value
    data = os.urandom(100_000)
    assert crc32c_python(data) == crc32c(data)
    assert crc32c_python(data[50_000:], crc32c_python(data[:50_000])) == crc32c(data)
    assert crc32c(memoryview(data)[10:20]) == crc32c_python(data[10:20]) == crc32c(bytearray(data[10:20]))


def test_the_old_components_config_dict_works_and_is_mentioned_once_at_debug(caplog, monkeypatch) -> None:
    monkeypatch.setattr(config, "_warned_legacy", False)
    monkeypatch.delenv("FILESTORAGE_ADDRESS", raising=False)
    with caplog.at_level(logging.DEBUG, logger="filestorage_client"):
        fs = FileStorage(OLD_COMPONENT_CONFIG)
        FileStorage(OLD_COMPONENT_CONFIG)
    assert fs.address == "127.0.0.1:50051"
    ignored = [r for r in caplog.records if "ignores the old component's config keys" in r.getMessage()]
    assert len(ignored) == 1 and ignored[0].levelno == logging.DEBUG
    assert "gcs_bucket_name" in ignored[0].getMessage() and "timeout_seconds" not in ignored[0].getMessage()


def test_unknown_keys_warn_and_bad_values_say_which_key(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="filestorage_client"):
        FileStorage({"adress": "x:1"})
    assert "unknown keys ['adress'] ignored" in caplog.text
    for bad, message in [
        ({"timeout_seconds": 0}, "'timeout_seconds' must be a number >= 0.001, got 0"),
        ({"retries": -1}, "'retries' must be an integer >= 0, got -1"),
        ({"retries": 1.5}, "'retries' must be an integer >= 0, got 1.5"),
        ({"max_unary_bytes": "4MiB"}, "'max_unary_bytes' must be an integer >= 1, got '4MiB'"),
        ({"strict": "yes"}, "'strict' must be true or false, got 'yes'"),
        ({"tls": "on"}, "'tls' must be true, false or a dict"),
        ({"token": ""}, "'token' must be a non-empty string"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            FileStorage(bad)


async def test_get_stats_is_fresh_from_a_running_loop_and_stale_after_the_daemon_goes(tmp_path, prefix: str) -> None:
    with spawn_daemon(str(tmp_path)) as daemon:
        fs = FileStorage({"address": daemon.address, "retries": 0, "timeout_seconds": 2})
        first = fs.get_stats()
        assert first["initialized"] is True and first["stale"] is False
        assert {"gcs_available", "local_fallback_enabled", "cache_enabled", "cache_size", "metrics", "cache_bytes",
                "total_operations", "pending_replication", "version"} <= set(first)
        await fs.store(prefix + "a", "x")
        second = fs.get_stats()  # a blocking call, made right here on the event loop's thread
        assert second["metrics"]["Store"]["total"] == 1
        assert second["total_operations"] > first["total_operations"]
    stale = fs.get_stats()
    assert stale["stale"] is True and "UNAVAILABLE" in stale["error"]
    assert stale["metrics"]["Store"]["total"] == 1  # the last answer, marked stale
    await fs.close()
