"""Fixtures for the cluster tests: several server processes on loopback addresses.

The process helpers are tests/servers/servers_harness.py's (ServerProcess, control...);
cluster_harness.py next to this file adds what a multi-process deployment needs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# --import-mode=importlib puts no test folder on sys.path: import the harnesses by name.
sys.path.insert(0, str(Path(__file__).parents[1] / "servers"))
sys.path.insert(0, str(Path(__file__).parent))

from kaa_wire import _crypto


@pytest.fixture(scope="session")
def endpoint_keys() -> list[_crypto.PrivateKey]:
    """Real RSA-2048 endpoint keys, generated once per session (tests take distinct ones)."""
    return [_crypto.generate_rsa_key(2048) for _ in range(2)]
