"""Fixtures shared by the whole suite: both implementations of the hot paths, and vectors."""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

import pytest

from kaa_wire import _framing, _registration, _signer

VECTORS = Path(__file__).parent / "vectors"


def _pure() -> types.SimpleNamespace:
    return types.SimpleNamespace(
        name="py",
        Framer=_framing.Framer,
        encode_frame=_framing.encode_frame,
        parse_registration_payload=_registration.parse_registration_payload,
        RegistrationVerifier=_registration.RegistrationVerifier,
        Signer=_signer.Signer,
        verify_batch=_registration.verify_batch,
    )


def _extension() -> types.SimpleNamespace | None:
    try:
        from kaa_wire_ext import _ext  # type: ignore[attr-defined]
    except ImportError:
        return None
    return types.SimpleNamespace(
        name="ext",
        Framer=_ext.Framer,
        encode_frame=_ext.encode_frame,
        parse_registration_payload=_ext.parse_registration_payload,
        RegistrationVerifier=_ext.RegistrationVerifier,
        Signer=_ext.Signer,
        verify_batch=_ext.verify_batch,
    )


@pytest.fixture(params=["py", "ext"])
def impl(request: pytest.FixtureRequest) -> types.SimpleNamespace:
    """Each hot-path implementation in turn; the extension's runs skip when it is not built
    (tests/test_ext_build.py fails CI in that case, so the skip cannot hide a broken build)."""
    if request.param == "py":
        return _pure()
    ext = _extension()
    if ext is None:
        pytest.skip("kaa_wire_ext is not built")
    return ext


def load_vectors(name: str) -> Any:
    return json.loads((VECTORS / name).read_text())


@pytest.fixture(scope="session")
def vector_keys() -> dict[str, Any]:
    """The fixed test keys of tests/vectors/keys.json, loaded (no key generation cost)."""
    from kaa_wire import _crypto

    pems = load_vectors("keys.json")
    return {name: _crypto.load_private_key(pem.encode()) for name, pem in pems.items()}
