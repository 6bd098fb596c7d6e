"""How a registry store is set up: its limits, which backend the settings choose, and the
SQLite schema migrations (PostgreSQL's are in test_servers_postgres.py)."""

from __future__ import annotations

import argparse

import pytest

from servers import config as cfg
from servers.store import StoreLimits


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
