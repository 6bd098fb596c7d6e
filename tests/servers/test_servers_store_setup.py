"""How a registry store is set up: its limits, which backend the settings choose, and the
SQLite schema migrations (PostgreSQL's are in test_servers_postgres.py)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import pytest

from servers import config as cfg
from servers.datadir import DataDir
from servers.store import StoreLimits
from servers.store.factory import is_postgres_dsn, store_for
from servers.store.sqlite import SqliteStore


def _settings(argv: list[str], environ: dict[str, str] | None = None) -> cfg.Settings:
    parser = argparse.ArgumentParser()
    cfg.add_arguments(parser, cfg.OPTIONS)
    return cfg.load_settings(parser.parse_args(argv), environ=environ or {})


# -- limits ------------------------------------------------------------------------------------


def test_the_settings_default_to_the_store_limits() -> None:
    assert _settings([]).store_limits == StoreLimits()
    chosen = _settings(["--max-pending-writes", "7", "--group-commit-ms", "0"]).store_limits
    assert chosen == StoreLimits(max_pending_writes=7, group_commit_ms=0.0)
    assert chosen.window_s == 0.0 and StoreLimits(group_commit_ms=2.5).window_s == 0.0025


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("max_pending_writes", 0, "max_pending_writes must be >= 1"),
        ("group_commit_ms", -1.0, "group_commit_ms must be >= 0"),
        ("max_batch", 0, "max_batch must be >= 1"),
        ("max_pending_reads", 0, "max_pending_reads must be >= 1"),
    ],
)
def test_bad_store_limits_are_refused(field: str, value: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StoreLimits(**{field: value})  # type: ignore[arg-type]
    if field in cfg.OPTIONS:  # a setting: the same words, as a configuration error
        with pytest.raises(cfg.ConfigError, match=message):
            _settings([cfg.OPTIONS[field].flag, str(value)])


# -- which backend -----------------------------------------------------------------------------


@pytest.mark.parametrize("store", ["", "sqlite"])
def test_no_dsn_is_the_data_directorys_sqlite_file(tmp_path: Path, store: str) -> None:
    settings = _settings(["--data", str(tmp_path), "--store", store, "--max-pending-writes", "9"])
    chosen = store_for(settings, DataDir(settings.data))
    assert isinstance(chosen, SqliteStore)
    assert chosen.location == str(tmp_path / "registry.db")
    assert chosen._writer._max_pending == 9  # the settings' limits

    async def opened() -> str:
        async with chosen as store:
            return store.location

    assert asyncio.run(opened()) == chosen.location
    assert (tmp_path / "registry.db").is_file()


@pytest.mark.parametrize(
    ("store", "dsn"),
    [
        ("postgresql://kaa@db/kaa", True),
        ("postgres://kaa@db/kaa", True),
        ("", False),
        ("sqlite", False),
        ("mysql://db/kaa", False),
        ("registry.db", False),
    ],
)
def test_the_store_setting_takes_a_dsn_or_nothing(store: str, dsn: bool) -> None:
    assert is_postgres_dsn(store) is dsn
    if dsn or store in ("", "sqlite"):
        assert _settings(["--store", store]).store == store
    else:
        with pytest.raises(cfg.ConfigError, match="store must be empty"):
            _settings(["--store", store])
