"""python -m filestorage_client.migrate on a folder written by the real old component."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys

import pytest

from filestorage_client import FileStorage
from old_component import load_old_file_storage

BIG_TEXT = "line of a long report\n" * 300  # over the 1024-byte compression threshold
BIG_DICT = {"rows": [{"i": i, "label": f"row {i}"} for i in range(200)]}
HUGE_TEXT = "ünïcode log line\n" * 300_000  # over 4 MiB: streamed twice (tell the kind, then upload)
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001")


class Evil:
    """What someone who can write the bucket stores: unpickling it runs code."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


@pytest.fixture
async def old_folder(tmp_path):
    """A folder the old component wrote, one value of each shape it knew."""
    folder = tmp_path / "old-storage"
    old = load_old_file_storage().FileStorage({"local_storage_path": str(folder)})
    marker = str(tmp_path / "code-ran")
    values = [
        ("notes/hello.txt", "hello wörld", None),  # raw UTF-8, no sidecar
        ("images/pixel.png", PNG, {"tags": ["img"], "w": 1}),  # raw bytes, sidecar
        ("tasks/1/result", {"score": 0.93, "labels": ["a", "b"]}, {"tags": ["ml"], "attempt": 2}),  # pickled
        ("tasks/2/result", BIG_DICT, {"tags": ["big"]}),  # pickled, then gzipped (flag in the sidecar)
        ("logs/long.log", BIG_TEXT, None),  # gzipped with no sidecar: the flag was never recorded
        ("logs/huge.log", HUGE_TEXT, {"kind": "log"}),
        ("blobs/random.bin", os.urandom(5 * 1024 * 1024), None),  # gzipped, unflagged, over 4 MiB
        ("looks/like.json", '{"a": 1}', None),  # a JSON-looking str: stays TEXT
        ("shapes/list", [1, "two", (3, 4)], None),  # pickled list holding a tuple
        ("shapes/set", {3, 1, 2}, None),
        ("report.json", "first", {"owner": "a"}),  # report.json and report.txt share report.metadata
        ("report.txt", "second", {"owner": "b"}),
        ("when/created", datetime.datetime(2024, 5, 1, 12, 0), None),  # pickled datetime: not plain data
        ("evil/payload", Evil(marker), None),  # a pickle that runs code
    ]
    for key, value, metadata in values:
        assert await old.store(key, value, metadata) is True
    return {"folder": str(folder), "marker": marker, "values": {k: v for k, v, _ in values}}


def migrate(folder: str, address: str, prefix: str, *extra: str) -> tuple:
    r = subprocess.run(
        [sys.executable, "-m", "filestorage_client.migrate", folder, "--address", address, "--key-prefix", prefix, "--json", *extra],
        capture_output=True, text=True, timeout=120,
    )
    lines = r.stdout.splitlines()
    assert lines, f"no output; stderr: {r.stderr}"
    return r.returncode, json.loads(lines[-1]), lines[:-1], r.stderr


async def test_migrate_moves_values_with_their_kinds_and_refuses_pickles_by_default(
    old_folder, daemon_address: str, prefix: str
) -> None:
    folder = old_folder["folder"]
    async with FileStorage({"address": daemon_address, "strict": True}) as fs:
        # A dry run writes nothing.
        code, summary, lines, _ = migrate(folder, daemon_address, prefix, "--dry-run", "--trust-pickle")
        assert code == 1 and summary["dry_run"] is True and summary["moved"] == 12 and summary["failed"] == 2
        assert await fs.list_keys(prefix) == []

        # Without --trust-pickle: the plain values move, every pickle is refused with a reason.
        code, summary, lines, stderr = migrate(folder, daemon_address, prefix)
        assert code == 1, stderr
        notes = "\n".join(lines)
        assert "sidecar report.metadata is shared by report.json, report.txt" in notes
        assert summary == {"moved": 8, "by_kind": {"bytes": 2, "text": 6}, "already_present": 0, "failed": 6, "dry_run": False}
        failed = [line.split(":")[0] for line in lines if line.startswith("FAILED")]
        assert failed == [f"FAILED {prefix}{k}" for k in
                          ["evil/payload", "shapes/list", "shapes/set", "tasks/1/result", "tasks/2/result", "when/created"]]
        assert all("rerun with --trust-pickle" in line for line in lines if line.startswith("FAILED"))

        # With it: plain data is decoded; what is not plain data is refused and never run.
        code, summary, lines, _ = migrate(folder, daemon_address, prefix, "--trust-pickle")
        assert code == 1
        assert summary["moved"] == 4 and summary["by_kind"] == {"json": 4} and summary["already_present"] == 8
        assert summary["failed"] == 2
        refused = {line.split(":")[0]: line for line in lines if line.startswith("FAILED")}
        assert "references datetime.datetime, which is not plain data" in refused[f"FAILED {prefix}when/created"]
        assert "references builtins.exec, which is not plain data: refused, nothing was run" in refused[f"FAILED {prefix}evil/payload"]
        assert not os.path.exists(old_folder["marker"])

        values = old_folder["values"]
        expected = {
            "notes/hello.txt": ("text", "hello wörld", {}),
            "images/pixel.png": ("bytes", PNG, {"tags": ["img"], "w": 1}),
            "tasks/1/result": ("json", {"score": 0.93, "labels": ["a", "b"]}, {"tags": ["ml"], "attempt": 2}),
            "tasks/2/result": ("json", BIG_DICT, {"tags": ["big"]}),
            "logs/long.log": ("text", BIG_TEXT, {}),
            "logs/huge.log": ("text", HUGE_TEXT, {"kind": "log"}),
            "blobs/random.bin": ("bytes", values["blobs/random.bin"], {}),
            "looks/like.json": ("text", '{"a": 1}', {}),
            "shapes/list": ("json", [1, "two", [3, 4]], {}),
            "shapes/set": ("json", [1, 2, 3], {}),
        }
        for key, (kind, value, metadata) in expected.items():
            info = await fs.stat(prefix + key)
            assert (key, info.kind, info.metadata) == (key, kind, metadata)
            got = await fs.retrieve(prefix + key)
            assert got == value and type(got) is type(value), key
        for key in ("report.json", "report.txt"):
            assert await fs.retrieve(prefix + key) in ("first", "second")
        notes = "\n".join(lines)
        assert "a tuple became a list" in notes and "a set became a list" in notes

        # A repeat moves nothing; --overwrite replaces.
        code, summary, _, _ = migrate(folder, daemon_address, prefix, "--trust-pickle")
        assert summary["moved"] == 0 and summary["already_present"] == 12
        code, summary, _, _ = migrate(folder, daemon_address, prefix, "--trust-pickle", "--overwrite")
        assert summary["moved"] == 12 and summary["already_present"] == 0


async def test_the_old_component_itself_ran_the_pickle(old_folder) -> None:
    """Why pickles are refused: the old component's retrieve runs them."""
    old = load_old_file_storage().FileStorage({"local_storage_path": old_folder["folder"], "enable_cache": False})
    await old.retrieve("evil/payload")
    assert os.path.exists(old_folder["marker"])


def test_migrate_reports_an_unreachable_daemon_and_bad_arguments(tmp_path) -> None:
    (tmp_path / "k").write_text("v")
    r = subprocess.run([sys.executable, "-m", "filestorage_client.migrate", str(tmp_path), "--address", "127.0.0.1:1"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "cannot take writes: UNAVAILABLE" in r.stderr
    r = subprocess.run([sys.executable, "-m", "filestorage_client.migrate"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "give a folder or --gcs-bucket" in r.stderr


async def test_migrate_reads_the_old_components_bucket(fake_gcs: str, daemon_address: str, prefix: str, monkeypatch) -> None:
    """The old component on GCS (fake-gcs-server): blob metadata became strings, gzip went to
    Content-Encoding (and its own retrieve then failed on it), bytes came back None."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", fake_gcs)
    old = load_old_file_storage().FileStorage({"gcs_bucket_name": "old-bucket", "gcs_project_id": "proj",
                                               "enable_local_fallback": False, "enable_cache": False})
    assert await old.initialize() is True and old.get_stats()["gcs_available"] is True
    assert await old.store("tasks/1/result", {"score": 0.5}, {"tags": ["ml", "v2"], "attempt": 2})
    assert await old.store("logs/long.log", BIG_TEXT, {"kind": "log"})
    assert await old.store("images/pixel.png", PNG)
    assert await old.store("notes/hello.txt", "hello wörld")
    assert await old.retrieve("logs/long.log") is None  # its gzip was undone twice
    assert await old.retrieve("images/pixel.png") is None

    r = subprocess.run(
        [sys.executable, "-m", "filestorage_client.migrate", "--gcs-bucket", "old-bucket", "--gcs-project", "proj",
         "--address", daemon_address, "--key-prefix", prefix, "--trust-pickle", "--json"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "STORAGE_EMULATOR_HOST": fake_gcs},
    )
    assert r.returncode == 0, r.stdout + r.stderr
    summary = json.loads(r.stdout.splitlines()[-1])
    assert summary["moved"] == 4 and summary["by_kind"] == {"bytes": 1, "json": 1, "text": 2}
    assert "metadata tags read back from the Python repr GCS kept" in r.stdout
    async with FileStorage({"address": daemon_address, "strict": True}) as fs:
        assert await fs.retrieve(prefix + "tasks/1/result") == {"score": 0.5}
        assert (await fs.stat(prefix + "tasks/1/result")).metadata == {"tags": ["ml", "v2"], "attempt": "2"}
        assert await fs.retrieve(prefix + "logs/long.log") == BIG_TEXT
        assert (await fs.stat(prefix + "logs/long.log")).metadata == {"kind": "log"}
        assert await fs.retrieve(prefix + "images/pixel.png") == PNG
        assert await fs.retrieve(prefix + "notes/hello.txt") == "hello wörld"
