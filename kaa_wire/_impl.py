"""Chooses the implementation of the hot paths: the extension when built, else pure Python.

``KAA_WIRE_PUREPYTHON=1`` forces pure Python. Both implementations provide the same
names with the same behaviour and raise the same exception classes; the pure resolution
functions and ``encode_registration_result`` are the construct ones of ``_codec``, the
normative path.

:data:`PURE` is the one list of the names the extension replaces: each ``_pick`` below
adds one. ``kaa_wire_ext``'s ``__all__`` and its ``.pyi`` are checked against it
(tests/test_ext_build.py), and the tests build both implementations' namespaces from it.
"""

from __future__ import annotations

import os
from typing import Any, TypeVar

from kaa_wire import _codec, _framing, _opener, _registration, _signer

__all__ = ["IMPLEMENTATION", "NAMES", "PURE", "extension"]

_T = TypeVar("_T")

#: Name -> the pure-Python implementation, for every name the extension replaces.
PURE: dict[str, Any] = {}


def extension() -> Any | None:
    """``kaa_wire_ext._ext``, or None when it is not built (or pure Python is forced)."""
    if os.environ.get("KAA_WIRE_PUREPYTHON", "") not in ("", "0"):
        return None
    try:
        import kaa_wire_ext._ext as ext
    except ImportError:
        return None
    return ext


_ext = extension()
IMPLEMENTATION: str = "py" if _ext is None else "ext"


def _pick(name: str, pure: _T) -> _T:
    """The active implementation of ``name``, whose pure one is ``pure``."""
    PURE[name] = pure
    chosen: _T = pure if _ext is None else getattr(_ext, name)
    return chosen


Framer = _pick("Framer", _framing.Framer)
encode_frame = _pick("encode_frame", _framing.encode_frame)
parse_registration_payload = _pick(
    "parse_registration_payload", _registration.parse_registration_payload
)
RegistrationVerifier = _pick("RegistrationVerifier", _registration.RegistrationVerifier)
RegistrationOpener = _pick("RegistrationOpener", _opener.RegistrationOpener)
seal_response = _pick("seal_response", _opener.seal_response)
encode_registration_result = _pick("encode_registration_result", _codec.encode_registration_result)
Signer = _pick("Signer", _signer.Signer)
verify_batch = _pick("verify_batch", _registration.verify_batch)
decode_resolve_request = _pick("decode_resolve_request", _codec.decode_resolve_request)
resolve_response_signed_part = _pick(
    "resolve_response_signed_part", _codec.resolve_response_signed_part
)
resolve_signed_data = _pick("resolve_signed_data", _codec.resolve_signed_data)
encode_resolve_response = _pick("encode_resolve_response", _codec.encode_resolve_response)

#: Every name the extension replaces, in one tuple.
NAMES: tuple[str, ...] = tuple(PURE)
