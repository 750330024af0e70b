"""Bearer tokens, TLS and mutual TLS against a daemon started with AUTH_TOKENS_FILE,
TLS_CERT_FILE/TLS_KEY_FILE and TLS_CLIENT_CA_FILE (certificates made by openssl)."""

from __future__ import annotations

import json

import grpc
import pytest

from conftest import Pki, spawn_daemon, token_entry
from filestorage_client import FileStorage, FileStorageError

WRITER = "writer-token-5f1c"
ADMIN = "admin-token-93ab"


@pytest.fixture(scope="module")
def secured(tmp_path_factory, pki: Pki):
    d = tmp_path_factory.mktemp("secured")
    tokens = d / "tokens.json"
    tokens.write_text(json.dumps([
        token_entry("writer", WRITER, ["svc/"], ["read", "write", "delete", "list"]),
        token_entry("admin", ADMIN, [""], ["admin"]),
    ]))
    env = {"AUTH_TOKENS_FILE": str(tokens), "TLS_CERT_FILE": pki.server_cert, "TLS_KEY_FILE": pki.server_key,
           "TLS_CLIENT_CA_FILE": pki.ca}
    with spawn_daemon(str(d / "storage"), env) as daemon:
        yield daemon


def client(secured, pki: Pki, token=None, *, cert=True, ca=None, strict=True) -> FileStorage:
    tls = {"ca": ca or pki.ca, "server_name": "localhost"}
    if cert:
        tls.update(cert=pki.client_cert, key=pki.client_key)
    config = {"address": f"127.0.0.1:{secured.port}", "tls": tls, "strict": strict, "retries": 0, "timeout_seconds": 5}
    if token:
        config["token"] = token
    return FileStorage(config)


async def code_of(call) -> grpc.StatusCode:
    with pytest.raises(FileStorageError) as err:
        await call
    return err.value.code


async def test_a_token_over_mutual_tls_reads_and_writes_its_prefix(secured, pki: Pki) -> None:
    async with client(secured, pki, WRITER) as fs:
        assert await fs.initialize() is True  # GetStats needs admin: PERMISSION_DENIED still proves the token
        assert await fs.store("svc/a", {"ok": True}, {"tags": ["t"]})
        assert await fs.retrieve("svc/a") == {"ok": True}
        assert await fs.list_keys("svc/") == ["svc/a"]
        info = await fs.upload("svc/big", b"z" * (5 * 1024 * 1024))
        assert info.size == 5 * 1024 * 1024
        assert await fs.retrieve("svc/big") == b"z" * (5 * 1024 * 1024)
        assert await code_of(fs.store("other/a", "x")) == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(FileStorageError) as err:
            fs.get_stats()
        assert err.value.code == grpc.StatusCode.PERMISSION_DENIED
    async with client(secured, pki, ADMIN) as admin:
        assert admin.get_stats()["initialized"] is True
        assert (await admin.get_stats_async())["total_operations"] > 0


async def test_a_missing_or_unknown_token_is_unauthenticated(secured, pki: Pki) -> None:
    async with client(secured, pki, None) as fs:
        # The client certificate's CN has no entry of its own in the tokens file.
        assert await code_of(fs.exists("svc/a")) == grpc.StatusCode.UNAUTHENTICATED
    async with client(secured, pki, "not-a-token") as fs:
        assert await code_of(fs.exists("svc/a")) == grpc.StatusCode.UNAUTHENTICATED
    async with client(secured, pki, "not-a-token", strict=False) as lenient:
        assert await lenient.initialize() is False
        assert await lenient.store("svc/x", "x") is False


async def test_tls_is_required_and_checked(secured, pki: Pki) -> None:
    async with client(secured, pki, WRITER, cert=False) as no_cert:
        assert await code_of(no_cert.exists("svc/a")) == grpc.StatusCode.UNAVAILABLE
    async with client(secured, pki, WRITER, ca=pki.other_ca) as wrong_ca:
        assert await code_of(wrong_ca.exists("svc/a")) == grpc.StatusCode.UNAVAILABLE
    async with FileStorage({"address": f"127.0.0.1:{secured.port}", "token": WRITER, "strict": True, "retries": 0,
                            "timeout_seconds": 3}) as plaintext:
        assert await code_of(plaintext.exists("svc/a")) == grpc.StatusCode.UNAVAILABLE


def test_tls_config_is_checked_when_made(pki: Pki) -> None:
    with pytest.raises(ValueError, match="'cert' and 'key' go together"):
        FileStorage({"tls": {"ca": pki.ca, "cert": pki.client_cert}})
    with pytest.raises(ValueError, match="cannot read ca file '/nonexistent.pem'"):
        FileStorage({"tls": {"ca": "/nonexistent.pem"}})
    with pytest.raises(ValueError, match="unknown entries"):
        FileStorage({"tls": {"cafile": pki.ca}})
