"""Fixtures: a real daemon (the one at $FILESTORAGE_ADDRESS, as the jest wrapper passes, or
one started here with ``node bin/filestorage.js serve``), clients on it, a key prefix per
test, and a throwaway PKI made with openssl for the TLS tests.

Daemons started here need the built daemon: ``npm run build`` first (``npm test`` does).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, Optional

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # old_component, beside this file

from filestorage_client import FileStorage  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
BIN = ROOT / "bin" / "filestorage.js"


@dataclass
class Daemon:
    address: str
    port: int
    process: subprocess.Popen
    storage_path: str
    log: list


@contextlib.contextmanager
def spawn_daemon(storage_path: str, env: Optional[Dict[str, str]] = None, *, listen: str = "127.0.0.1:0") -> Iterator[Daemon]:
    """Runs the daemon as a child process until the block ends; waits for its first
    "FileStorage is serving" log line and takes the bound address from it."""
    if not (ROOT / "dist" / "server" / "cli" / "main.js").exists():
        raise RuntimeError(f"the daemon is not built: run `npm run build` in {ROOT} first")
    child_env = {
        "PATH": os.environ.get("PATH", ""),
        "LISTEN_ADDRESS": listen,
        "METRICS_PORT": "0",
        "LOG_LEVEL": "info",
        "LOCAL_STORAGE_PATH": storage_path,
        **(env or {}),
    }
    proc = subprocess.Popen(["node", str(BIN), "serve"], env=child_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log: list = []
    ready = threading.Event()
    found: dict = {}

    def drain() -> None:
        # Keeps reading so a chatty daemon never blocks on a full pipe.
        for line in proc.stdout:
            log.append(line)
            if not ready.is_set():
                with contextlib.suppress(ValueError):
                    entry = json.loads(line)
                    if entry.get("msg") == "FileStorage is serving":
                        found["address"] = entry["address"]
                        ready.set()
        ready.set()

    threading.Thread(target=drain, daemon=True).start()
    if not ready.wait(20) or "address" not in found:
        proc.kill()
        raise RuntimeError(f"the daemon did not start serving in 20 s:\n{''.join(log)}")
    address = found["address"]
    try:
        yield Daemon(address, int(address.rsplit(":", 1)[1]), proc, storage_path, log)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def daemon_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The daemon every plain test talks to."""
    given = os.environ.get("FILESTORAGE_ADDRESS")
    if given:
        yield given
        return
    with spawn_daemon(str(tmp_path_factory.mktemp("daemon-storage"))) as daemon:
        yield daemon.address


@pytest.fixture
def prefix() -> str:
    """A key prefix of this test's own, so tests never see each other's keys."""
    return f"pytest/{uuid.uuid4().hex[:12]}/"


@pytest.fixture
async def fs(daemon_address: str) -> FileStorage:
    """A lenient client (the old component's behaviour: failures return False/None)."""
    async with FileStorage({"address": daemon_address}) as client:
        yield client


@pytest.fixture
async def strict_fs(daemon_address: str) -> FileStorage:
    """A strict client: failures raise FileStorageError."""
    async with FileStorage({"address": daemon_address, "strict": True, "retries": 0}) as client:
        yield client


@pytest.fixture
def fake_gcs() -> Iterator[str]:
    """The real fake-gcs-server emulator (installed by test/setup/install-tools.sh) on a
    free loopback port, memory backend; yields its base URL for STORAGE_EMULATOR_HOST."""
    binary = ROOT / ".test-tools" / "bin" / "fake-gcs-server"
    if not binary.exists():
        raise RuntimeError(f"fake-gcs-server is missing at {binary}: run test/setup/install-tools.sh")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [str(binary), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port), "-backend", "memory",
         "-public-host", f"127.0.0.1:{port}", "-external-url", url, "-log-level", "error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"{url}/storage/v1/b", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("fake-gcs-server did not answer in 20 s") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def token_entry(name: str, token: str, prefixes: list, rights: list) -> dict:
    """An AUTH_TOKENS_FILE entry: the file holds the token's SHA-256, never the token."""
    return {"name": name, "sha256": hashlib.sha256(token.encode()).hexdigest(), "prefixes": prefixes, "rights": rights}


@dataclass
class Pki:
    ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str
    other_ca: str


def _openssl(args: list, cwd: Path) -> None:
    try:
        subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)
    except FileNotFoundError:
        raise RuntimeError("openssl is missing (test/setup/install-tools.sh installs it)") from None
    except subprocess.CalledProcessError as err:
        raise RuntimeError(f"openssl {args[0]} failed: {err.stderr.decode()}") from None


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA, a server certificate for localhost/127.0.0.1, a client certificate (CN
    py-client), and an unrelated CA: EC P-256, as test/support/certs.ts makes them."""
    d = tmp_path_factory.mktemp("pki")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "other-ca"):
        _openssl(["req", "-x509", *ec, "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-days", "2", "-subj", f"/CN={ca}",
                  "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"], d)
    for name, cn, ext in (
        ("server", "localhost", "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n"),
        ("client", "py-client", "extendedKeyUsage=clientAuth\n"),
    ):
        (d / f"{name}.ext").write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n" + ext)
        _openssl(["req", "-new", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}"], d)
        _openssl(["x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-out", f"{name}.pem",
                  "-days", "2", "-set_serial", f"0x{uuid.uuid4().hex[:16]}", "-extfile", f"{name}.ext"], d)
    return Pki(str(d / "ca.pem"), str(d / "server.pem"), str(d / "server.key"), str(d / "client.pem"),
               str(d / "client.key"), str(d / "other-ca.pem"))


def wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)
