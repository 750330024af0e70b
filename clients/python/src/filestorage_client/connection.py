"""The channels to one daemon and the unary call with deadline, token and retries.

grpc.aio channels belong to the event loop that made them, while services call one
shared FileStorage from several loops (``asyncio.run`` per Celery task, a loop per
thread). So there is one aio channel per running loop, made on first use and dropped
with its loop, plus one sync channel for the sync ``get_stats()``.
"""

from __future__ import annotations

import asyncio
import random
import threading
import weakref
from typing import Any, Optional

import grpc

from ._gen import file_storage_pb2_grpc as pb_grpc
from .config import MiB, ClientConfig
from .errors import FileStorageError


def backoff_seconds(attempt: int) -> float:
    """Exponential backoff with jitter: 0.1 s doubling per attempt, capped at 2 s, then
    half of it to all of it, at random (so clients retrying together spread out)."""
    ceiling = min(2.0, 0.1 * 2**attempt)
    return ceiling / 2 + random.random() * ceiling / 2


class Connection:
    """Channels and call options of one FileStorage."""

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self.metadata: tuple = (("authorization", f"Bearer {config.token}"),) if config.token else ()
        limit = max(16 * MiB, config.max_unary_bytes + MiB)
        self._options = [
            # A unary Retrieve of max_unary_bytes plus its ObjectInfo and framing must fit.
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            # grpc's default reconnect backoff starts at 1 s, longer than the retry
            # backoff: retries after a daemon restart would all meet a waiting channel.
            # (Not grpc.min_reconnect_backoff_ms: that is also the connect timeout.)
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 2000),
        ]
        if config.tls and config.tls.server_name:
            self._options.append(("grpc.ssl_target_name_override", config.tls.server_name))
        overridden = {name for name, _ in config.channel_options}
        self._options = [o for o in self._options if o[0] not in overridden] + list(config.channel_options)
        self._lock = threading.Lock()
        self._aio: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple]" = weakref.WeakKeyDictionary()
        self._sync: Optional[tuple] = None

    def _credentials(self) -> Optional[grpc.ChannelCredentials]:
        tls = self.config.tls
        if tls is None:
            return None
        return grpc.ssl_channel_credentials(
            root_certificates=tls.root_certs, private_key=tls.private_key, certificate_chain=tls.certificate_chain
        )

    def stub(self) -> pb_grpc.FileStorageServiceStub:
        """The aio stub for the running event loop (made on first use in that loop)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            found = self._aio.get(loop)
            if found is None:
                creds = self._credentials()
                channel = (
                    grpc.aio.secure_channel(self.config.address, creds, options=self._options)
                    if creds
                    else grpc.aio.insecure_channel(self.config.address, options=self._options)
                )
                found = (channel, pb_grpc.FileStorageServiceStub(channel))
                self._aio[loop] = found
            return found[1]

    def sync_stub(self) -> pb_grpc.FileStorageServiceStub:
        """The blocking stub (one channel for the FileStorage's lifetime)."""
        with self._lock:
            if self._sync is None:
                creds = self._credentials()
                channel = (
                    grpc.secure_channel(self.config.address, creds, options=self._options)
                    if creds
                    else grpc.insecure_channel(self.config.address, options=self._options)
                )
                self._sync = (channel, pb_grpc.FileStorageServiceStub(channel))
            return self._sync[1]

    async def unary(self, method: str, request: Any, *, idempotent: bool) -> Any:
        """Calls ``method`` with the deadline and token; an idempotent call answered
        UNAVAILABLE is retried up to ``retries`` times with backoff. Raises FileStorageError."""
        for attempt in range(self.config.retries + 1):
            call = getattr(self.stub(), method)
            try:
                return await call(request, timeout=self.config.timeout_seconds, metadata=self.metadata)
            except grpc.RpcError as err:
                failure = FileStorageError.from_rpc_error(err)
                if not idempotent or failure.code != grpc.StatusCode.UNAVAILABLE or attempt >= self.config.retries:
                    raise failure from err
            await asyncio.sleep(backoff_seconds(attempt))
        raise AssertionError("unreachable")

    async def close(self) -> None:
        """Closes the channel of the running loop and the sync channel; channels of other
        loops close when their loop goes."""
        with self._lock:
            found = self._aio.pop(asyncio.get_running_loop(), None)
            sync, self._sync = self._sync, None
        if found is not None:
            await found[0].close()
        if sync is not None:
            sync[0].close()
