"""Fixtures for the server tests (tests/servers/ only)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The suite imports test modules with --import-mode=importlib, which puts no test folder on
# sys.path; the helpers next to this file are imported by their own name.
sys.path.insert(0, str(Path(__file__).parent))

from servers_harness import StoreBackend

from kaa_wire import _crypto
from servers.store.sqlite import SqliteStore


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_backend(request: pytest.FixtureRequest, tmp_path: Path) -> StoreBackend:
    """Each store backend in turn; PostgreSQL on a fresh database per test (tests/conftest.py
    skips it without KAA_TEST_POSTGRES_DSN, and fails it then under CI)."""
    if request.param == "postgres":
        from servers.store.postgres import PostgresStore

        dsn: str = request.getfixturevalue("postgres_database")
        return StoreBackend("postgres", lambda: PostgresStore(dsn))
    path = tmp_path / "registry.db"
    return StoreBackend("sqlite", lambda: SqliteStore(path))


@pytest.fixture(scope="session")
def rsa_keys() -> list[_crypto.PrivateKey]:
    """Real RSA-2048 endpoint keys, generated once per session (tests take distinct ones)."""
    return [_crypto.generate_rsa_key(2048) for _ in range(8)]
