"""The one error type of the client: FileStorageError, carrying a gRPC status code."""

from __future__ import annotations

import grpc


class FileStorageError(Exception):
    """A failed call. ``code`` is the ``grpc.StatusCode`` the daemon answered (or the one
    grpc chose locally: UNAVAILABLE when it cannot connect, DEADLINE_EXCEEDED after
    ``timeout_seconds``); ``details`` is the daemon's message without the code name.

    The old component raised an exception of the same name, so ``except FileStorageError``
    in existing services keeps working (in strict mode; otherwise failures return
    False/None, as the old component documented).
    """

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details

    @property
    def code_name(self) -> str:
        """The status name, e.g. ``"NOT_FOUND"``."""
        return self.code.name

    @classmethod
    def from_rpc_error(cls, err: grpc.RpcError) -> "FileStorageError":
        """Wraps a grpc ``RpcError`` (sync or aio), keeping it as ``__cause__``."""
        code = err.code() if callable(getattr(err, "code", None)) else grpc.StatusCode.UNKNOWN
        details = err.details() if callable(getattr(err, "details", None)) else str(err)
        wrapped = cls(code or grpc.StatusCode.UNKNOWN, details or "")
        wrapped.__cause__ = err
        return wrapped


def invalid_argument(details: str) -> FileStorageError:
    """A FileStorageError for bad input caught before anything is sent."""
    return FileStorageError(grpc.StatusCode.INVALID_ARGUMENT, details)
