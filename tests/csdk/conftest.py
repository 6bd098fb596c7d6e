"""Fixtures for the C SDK's end-to-end tests (tests/csdk/, marker ``csdk``).

They need a C compiler, make and mbedTLS's headers and library (Debian: build-essential,
libmbedtls-dev). Without them they skip, except under CI (env CI set), where they fail,
like the ``postgres`` tests: CI must never pass by skipping them.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
# The server harness and the fault proxy are imported by their own names (see
# tests/servers/conftest.py: --import-mode=importlib puts no test folder on sys.path).
sys.path.insert(0, str(HERE.parent / "servers"))
sys.path.insert(0, str(HERE.parent / "hardening"))

MBEDTLS_HEADER = Path("/usr/include/mbedtls/chachapoly.h")


def c_toolchain_missing() -> str | None:
    """Why the C SDK cannot be built here, or None."""
    for tool in ("cc", "make"):
        if shutil.which(tool) is None:
            return f"no {tool}"
    if not MBEDTLS_HEADER.exists():
        return "no mbedTLS headers (apt-get install libmbedtls-dev)"
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("csdk") is None:
        return
    missing = c_toolchain_missing()
    if missing is None:
        return
    reason = f"needs a C compiler and mbedTLS: {missing}"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI is set, so this is a failure, not a skip", pytrace=False)
    pytest.skip(reason)
