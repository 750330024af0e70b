"""Client settings: the config dict of ``FileStorage(config)``, validated once.

The keys of the in-process component this client replaces (``gcs_bucket_name``,
``local_storage_path``, ``enable_cache``, ...) are accepted and ignored, so an existing
config dict works unchanged: the daemon has those settings now.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Mapping, Optional

logger = logging.getLogger("filestorage_client")

MiB = 1024 * 1024
DEFAULT_ADDRESS = "127.0.0.1:50051"

#: Keys of the old component's FileStorageConfig that configure the daemon now.
#: (``timeout_seconds`` is not here: it is the client's deadline too.)
LEGACY_KEYS = frozenset(
    {
        "gcs_bucket_name",
        "gcs_project_id",
        "gcs_credentials_path",
        "gcs_location",
        "local_storage_path",
        "enable_local_fallback",
        "enable_cache",
        "cache_ttl_seconds",
        "max_cache_size_mb",
        "chunk_size",
        "max_retries",
        "enable_compression",
        "compression_threshold_bytes",
        "enable_encryption",
        "encryption_key",
    }
)

CLIENT_KEYS = frozenset(
    {"address", "token", "tls", "timeout_seconds", "strict", "max_unary_bytes", "retries", "channel_options"}
)

_warned_legacy = False


@dataclass(frozen=True)
class TlsConfig:
    """PEM bytes read from the ``tls`` dict's paths; None = grpc's default roots / no client cert."""

    root_certs: Optional[bytes] = None
    private_key: Optional[bytes] = None
    certificate_chain: Optional[bytes] = None
    server_name: Optional[str] = None


@dataclass(frozen=True)
class ClientConfig:
    """The validated settings. See ``parse_config`` for the keys and defaults."""

    address: str
    token: Optional[str]
    tls: Optional[TlsConfig]
    timeout_seconds: float
    strict: bool
    max_unary_bytes: int
    retries: int
    channel_options: tuple


def parse_config(config: Optional[Mapping[str, Any]]) -> ClientConfig:
    """Validates ``config`` and fills in defaults. Raises ValueError naming the key, the
    value and what is allowed.

    Keys (all optional):
      address          gRPC target; default ``$FILESTORAGE_ADDRESS`` or 127.0.0.1:50051
      token            sent as ``authorization: Bearer <token>`` on every call
      tls              False (default, plaintext), True (system roots), or a dict with
                       ``ca``, ``cert``, ``key`` (PEM file paths; cert+key = mutual TLS)
                       and ``server_name`` (expected name in the server certificate)
      timeout_seconds  deadline of each unary call attempt; default 30 (streams have none)
      strict           raise FileStorageError instead of returning False/None; default False
      max_unary_bytes  larger values go through the streaming RPCs; default 4 MiB
                       (the daemon's MAX_UNARY_BYTES)
      retries          retries of idempotent calls answered UNAVAILABLE; default 3
      channel_options  extra grpc channel options (list of (name, value)); they win
    """
    global _warned_legacy
    if config is None:
        config = {}
    if not isinstance(config, Mapping):
        raise ValueError(f"FileStorage config must be a dict, got {type(config).__name__}")
    legacy = sorted(k for k in config if k in LEGACY_KEYS)
    if legacy and not _warned_legacy:
        _warned_legacy = True
        logger.debug("FileStorage ignores the old component's config keys %s: the daemon is configured by its own settings", legacy)
    unknown = sorted(str(k) for k in config if k not in LEGACY_KEYS and k not in CLIENT_KEYS)
    if unknown:
        logger.warning("FileStorage config: unknown keys %s ignored (known: %s)", unknown, sorted(CLIENT_KEYS))

    address = config.get("address") or os.environ.get("FILESTORAGE_ADDRESS") or DEFAULT_ADDRESS
    if not isinstance(address, str):
        raise ValueError(f"FileStorage config key 'address' must be a string such as 127.0.0.1:50051, got {address!r}")
    token = config.get("token")
    if token is not None and (not isinstance(token, str) or not token or "\n" in token):
        raise ValueError("FileStorage config key 'token' must be a non-empty string of one line")
    return ClientConfig(
        address=address,
        token=token,
        tls=_parse_tls(config.get("tls", False)),
        timeout_seconds=_number(config, "timeout_seconds", 30.0, minimum=0.001),
        strict=_flag(config, "strict", False),
        max_unary_bytes=int(_number(config, "max_unary_bytes", 4 * MiB, minimum=1, integer=True)),
        retries=int(_number(config, "retries", 3, minimum=0, integer=True)),
        channel_options=_channel_options(config.get("channel_options", ())),
    )


def _number(config: Mapping[str, Any], key: str, default: float, *, minimum: float, integer: bool = False) -> float:
    value = config.get(key, default)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= minimum
    if ok and integer:
        ok = float(value).is_integer()
    if not ok:
        what = "an integer" if integer else "a number"
        raise ValueError(f"FileStorage config key '{key}' must be {what} >= {minimum:g}, got {value!r}")
    return value


def _flag(config: Mapping[str, Any], key: str, default: bool) -> bool:
    value = config.get(key, default)
    if not isinstance(value, bool):
        raise ValueError(f"FileStorage config key '{key}' must be true or false, got {value!r}")
    return value


def _parse_tls(value: Any) -> Optional[TlsConfig]:
    if value is False or value is None:
        return None
    if value is True:
        return TlsConfig()
    if not isinstance(value, Mapping):
        raise ValueError(f"FileStorage config key 'tls' must be true, false or a dict of ca/cert/key paths, got {value!r}")
    extra = sorted(set(value) - {"ca", "cert", "key", "server_name"})
    if extra:
        raise ValueError(f"FileStorage config key 'tls' has unknown entries {extra} (allowed: ca, cert, key, server_name)")
    if ("cert" in value) != ("key" in value):
        raise ValueError("FileStorage config key 'tls': 'cert' and 'key' go together (mutual TLS): give both or neither")

    def read(name: str) -> Optional[bytes]:
        path = value.get(name)
        if path is None:
            return None
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as err:
            raise ValueError(f"FileStorage config key 'tls': cannot read {name} file {path!r}: {err.strerror}") from err

    server_name = value.get("server_name")
    if server_name is not None and not isinstance(server_name, str):
        raise ValueError(f"FileStorage config key 'tls': 'server_name' must be a string, got {server_name!r}")
    return TlsConfig(root_certs=read("ca"), private_key=read("key"), certificate_chain=read("cert"), server_name=server_name)


def _channel_options(value: Any) -> tuple:
    try:
        options = tuple((str(name), v) for name, v in (value.items() if isinstance(value, Mapping) else value))
    except (TypeError, ValueError) as err:
        raise ValueError(f"FileStorage config key 'channel_options' must be a list of (name, value) pairs, got {value!r}") from err
    return options
