"""Chooses the servers' per-connection path: compiled when the extension is, else pure Python.

The same choice as kaa_wire/_impl.py makes for the hot paths, from the same function
(:func:`kaa_wire._impl.extension`): ``KAA_WIRE_PUREPYTHON=1`` forces the pure classes, and
the two layers can never disagree. The pure classes are the normative behaviour; their C
twins live in ``kaa_wire_ext/server.pyx`` (docs/connection-path.md).

:data:`PURE` is the one list of the names the extension replaces here.
"""

from __future__ import annotations

from typing import Any, TypeVar

from kaa_wire import _connection, _impl
from servers import net

__all__ = [
    "IMPLEMENTATION",
    "PURE",
    "BootstrapServerConnection",
    "ExchangeProtocol",
    "OperationsServerConnection",
]

_T = TypeVar("_T")

#: Name -> the pure-Python class, for every name the extension replaces here.
PURE: dict[str, Any] = {}

_ext = _impl.extension()
#: "ext" or "py": always kaa_wire's own choice.
IMPLEMENTATION: str = _impl.IMPLEMENTATION


def _pick(name: str, pure: _T) -> _T:
    PURE[name] = pure
    chosen: _T = pure if _ext is None else getattr(_ext, name)
    return chosen


#: The asyncio protocol of one connection, for both services.
ExchangeProtocol = _pick("ExchangeProtocol", net.ExchangeProtocol)
#: The Operations side of one exchange (sans-IO).
OperationsServerConnection = _pick(
    "OperationsServerConnection", _connection.OperationsServerConnection
)
#: The Bootstrap side of one exchange (sans-IO).
BootstrapServerConnection = _pick(
    "BootstrapServerConnection", _connection.BootstrapServerConnection
)
