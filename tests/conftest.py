"""Fixtures shared by the whole suite: both implementations of the hot paths, and vectors."""

from __future__ import annotations

import json
import os
import shutil
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.throwaway_db import fresh_database
from kaa_wire import _impl

VECTORS = Path(__file__).parent / "vectors"


def _pure() -> types.SimpleNamespace:
    return types.SimpleNamespace(name="py", **_impl.PURE)


def _extension() -> types.SimpleNamespace | None:
    try:
        from kaa_wire_ext import _ext  # type: ignore[attr-defined]
    except ImportError:
        return None
    return types.SimpleNamespace(name="ext", **{name: getattr(_ext, name) for name in _impl.NAMES})


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


# -- The parity tests (tests/test_parity_*.py, helpers in tests/parity.py) -------------------


@pytest.fixture(scope="session")
def ext() -> Any:
    """kaa_wire_ext._ext itself; the test skips when it is not built (tests/test_ext_build.py
    fails CI in that case)."""
    return pytest.importorskip("kaa_wire_ext._ext")


@pytest.fixture(scope="session")
def keys(vector_keys: dict[str, Any]) -> dict[str, Any]:
    """The fixed vector keys, plus a few generated once: RSA-1024 (too small), RSA-4096
    (the largest allowed), P-256 (signature algorithm 3) and X25519 (a wrong kind). Modules
    that need other keys
    under this name define their own fixture."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, x25519

    return {
        "rsa": vector_keys["endpoint_rsa"],
        "rsa2": vector_keys["other_rsa"],
        "ed25519": vector_keys["endpoint_ed25519"],
        "ed25519_2": ed25519.Ed25519PrivateKey.generate(),
        "rsa1024": rsa.generate_private_key(65537, 1024),
        "rsa4096": rsa.generate_private_key(65537, 4096),
        "p256": ec.generate_private_key(ec.SECP256R1()),
        "x25519": x25519.X25519PrivateKey.generate(),
    }


# -- PostgreSQL (issue #6): tests marked `postgres` --------------------------------------
#
# They need a server: KAA_TEST_POSTGRES_DSN (``scripts/postgres-throwaway start DIR`` prints
# one). Without it they skip, except under CI (env CI set), where they fail: CI must never
# pass by skipping them. Each test takes a fresh database (``postgres_database``).

POSTGRES_DSN_ENV = "KAA_TEST_POSTGRES_DSN"


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("postgres") is not None and not os.environ.get(POSTGRES_DSN_ENV):
        _unavailable(
            f"needs PostgreSQL: set {POSTGRES_DSN_ENV} (scripts/postgres-throwaway start DIR)"
        )
    if item.get_closest_marker("browser") is not None:
        missing = [tool for tool in BROWSER_TOOLS if shutil.which(tool) is None]
        if missing:
            wanted = " and ".join(missing)
            _unavailable(f"needs {wanted} (apt-get install chromium chromium-driver)")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI is set, so this is a failure, not a skip", pytrace=False)
    pytest.skip(reason)


# -- a real browser (issue #15): tests marked `browser` ------------------------------------
#
# Headless Chromium from Debian's packages, driven by Selenium through Debian's
# chromedriver. Without them the tests skip, except under CI, where they fail.

BROWSER_TOOLS = ("chromium", "chromedriver")


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    """The test server's DSN (tests using it must be marked ``postgres``)."""
    dsn = os.environ.get(POSTGRES_DSN_ENV)
    if not dsn:
        pytest.fail(f"{POSTGRES_DSN_ENV} is unset: mark the test `postgres`", pytrace=False)
    return dsn


@pytest.fixture
def postgres_database(postgres_dsn: str) -> Iterator[str]:
    """The DSN of a new, empty database on the test server, dropped after the test."""
    with fresh_database(postgres_dsn, "kaa_test_") as dsn:
        yield dsn
