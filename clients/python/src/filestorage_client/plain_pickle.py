"""Reading the old component's pickled values without running their code.

The old component stored every value that was not str or bytes with ``pickle.dumps`` and
called ``pickle.loads`` on whatever it read: anyone who could write its folder or bucket
could run code in every service. Here a pickle is decoded only on request
(``--trust-pickle``), and then by an unpickler that resolves no name but ``set``,
``frozenset`` and ``bytearray``: a pickle that names any other class or function (a
datetime, a model object, ``os.system``) is refused before anything is called.
"""

from __future__ import annotations

import io
import math
import pickle
from typing import Any, List, Tuple

_ALLOWED = {("builtins", "set"): set, ("builtins", "frozenset"): frozenset, ("builtins", "bytearray"): bytearray}


class NotPlainData(Exception):
    """The pickle holds something other than plain data, or plain data JSON cannot hold."""


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        found = _ALLOWED.get((module, name))
        if found is None:
            raise NotPlainData(f"the pickle references {module}.{name}, which is not plain data: refused, nothing was run")
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise NotPlainData("the pickle uses persistent ids: refused")


def looks_pickled(head: bytes) -> bool:
    """True when ``head`` starts like ``pickle.dumps`` output of protocol 2 to 5 (0x80, then
    the protocol): bytes no UTF-8 text starts with."""
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def loads_plain(data: bytes) -> Any:
    """Unpickles ``data`` holding only dict, list, tuple, set, frozenset, str, bytes,
    bytearray, int, float, bool and None. Raises NotPlainData for anything else, and
    pickle.UnpicklingError (or ValueError, EOFError...) for bytes that are no pickle."""
    return _PlainUnpickler(io.BytesIO(data)).load()


def to_kind(value: Any) -> Tuple[str, Any, List[str]]:
    """How an unpickled value is stored now: ("text", str), ("bytes", bytes) or ("json",
    JSON value), with notes on what changed shape (a tuple or set becomes a list). Raises
    NotPlainData for what JSON cannot hold (bytes inside a dict, non-string dict keys, NaN)."""
    if isinstance(value, str):
        return "text", value, []
    if isinstance(value, (bytes, bytearray)):
        return "bytes", bytes(value), []
    notes: List[str] = []
    return "json", _json(value, "the value", notes), sorted(set(notes))


def _json(value: Any, where: str, notes: List[str]) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise NotPlainData(f"{where} holds {value!r}, which JSON cannot hold")
        return value
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise NotPlainData(f"{where} has the key {k!r} ({type(k).__name__}): JSON object keys are strings")
            out[k] = _json(v, f"{where}[{k!r}]", notes)
        return out
    if isinstance(value, list):
        return [_json(v, f"{where}[{i}]", notes) for i, v in enumerate(value)]
    if isinstance(value, tuple):
        notes.append("a tuple became a list")
        return [_json(v, f"{where}[{i}]", notes) for i, v in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        notes.append("a set became a list")
        items = list(value)
        try:
            items.sort()
        except TypeError:
            pass
        return [_json(v, f"{where} item", notes) for v in items]
    raise NotPlainData(f"{where} holds a {type(value).__name__}, which has no JSON form")
