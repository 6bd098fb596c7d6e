"""How a registry store is set up: its limits, which backend the settings choose, and the
SQLite schema migrations (PostgreSQL's are in test_servers_postgres.py)."""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from servers import config as cfg
from servers.datadir import DataDir
from servers.store import (
    Application,
    Balancing,
    StoreError,
    StoreLimits,
    migrations_postgres,
    migrations_sqlite,
)
from servers.store._migrations import Migration, pending
from servers.store.factory import is_postgres_dsn, store_for
from servers.store.sqlite import SqliteStore, migrate

REPO = Path(__file__).resolve().parents[2]


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
        with pytest.raises(cfg.ConfigError, match=r"TOML store\) must be empty"):
            _settings(["--store", store])


# -- SQLite schema migrations ------------------------------------------------------------------

#: A next step, as a release would add it: a column with a default, and an index.
#: A step after the real ones, as the next release would add.
NEXT = migrations_sqlite.LATEST + 1
STEP_NEXT = Migration(
    NEXT,
    "test: endpoint notes",
    """
ALTER TABLE endpoints ADD COLUMN note TEXT NOT NULL DEFAULT '';
CREATE INDEX endpoints_note ON endpoints(note)
""",
)


def _user_version(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    return version


def _migrate(path: Path, steps: tuple[Migration, ...]) -> list[int]:
    """``migrate`` as the store runs it: in a BEGIN IMMEDIATE transaction."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            done = migrate(conn, steps)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return done
    finally:
        conn.close()


@pytest.mark.parametrize(
    "steps", [migrations_sqlite.MIGRATIONS, migrations_postgres.MIGRATIONS], ids=["sqlite", "pg"]
)
def test_migration_steps_are_numbered_in_order(steps: tuple[Migration, ...]) -> None:
    versions = [step.version for step in steps]
    # Strictly increasing from 1. (Two changes made in parallel number their steps 3 and 4;
    # on a branch with only one of them the other's number is missing until they merge.)
    assert versions[0] == 1 and versions == sorted(set(versions))


def test_pending_steps_and_a_newer_schema() -> None:
    steps = (*migrations_sqlite.MIGRATIONS, STEP_NEXT)
    applied = {m.version for m in migrations_sqlite.MIGRATIONS}
    assert pending(steps, ()) == list(steps)
    assert pending(steps, applied) == [STEP_NEXT]
    assert pending(steps, applied | {NEXT}) == []
    newer = rf"database schema {NEXT + 1} is newer than this code \({NEXT}\)"
    with pytest.raises(StoreError, match=newer):
        pending(steps, applied | {NEXT, NEXT + 1})


def test_a_new_sqlite_database_gets_every_step(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"

    async def main() -> None:
        async with SqliteStore(path) as store:
            assert await store.list_applications() == []
        async with SqliteStore(path):  # and reopening applies nothing
            pass

    asyncio.run(main())
    assert _user_version(path) == migrations_sqlite.LATEST
    assert _migrate(path, migrations_sqlite.MIGRATIONS) == []


def test_an_older_sqlite_database_is_migrated_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    app = Application("app-1", "meters", b"{}", 1, (), Balancing.STATIC, False, 1)

    # A database as the first release left it: step 1 only, with a row in it.
    assert _migrate(path, migrations_sqlite.MIGRATIONS[:1]) == [1]
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO applications (token, name, config, config_version, topics, balancing, "
            "cached_signature, created_ms) VALUES (?, ?, ?, 1, '[]', 'static', 0, 1)",
            (app.token, app.name, app.config),
        )
    assert _user_version(path) == 1
    # This release's steps: the store then works on it, rows and SDK tokens and all.
    later = [step.version for step in migrations_sqlite.MIGRATIONS[1:]]
    assert _migrate(path, migrations_sqlite.MIGRATIONS) == later

    async def read() -> None:
        async with SqliteStore(path) as store:
            assert [a.token for a in await store.list_applications()] == ["app-1"]
            assert await store.list_sdk_tokens("app-1") == []

    asyncio.run(read())
    # And the next release's step on top.
    assert _migrate(path, (*migrations_sqlite.MIGRATIONS, STEP_NEXT)) == [NEXT]
    assert _user_version(path) == NEXT
    with sqlite3.connect(path) as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(endpoints)")]
        indexes = [row[1] for row in conn.execute("PRAGMA index_list(endpoints)")]
        tokens = [row[0] for row in conn.execute("SELECT token FROM applications")]
    assert columns[-1] == "note" and "endpoints_note" in indexes and tokens == ["app-1"]
    assert _migrate(path, (*migrations_sqlite.MIGRATIONS, STEP_NEXT)) == []  # each step once


def test_a_failing_step_leaves_the_database_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    broken = Migration(
        NEXT, "test: broken", "CREATE TABLE extra (x INTEGER); SELECT nope FROM gone"
    )
    with pytest.raises(sqlite3.OperationalError):
        _migrate(path, (*migrations_sqlite.MIGRATIONS, broken))
    assert _user_version(path) == 0
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == []


def test_a_sqlite_database_of_newer_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {migrations_sqlite.LATEST + 1}")

    async def main() -> None:
        async with SqliteStore(path):
            pass

    with pytest.raises(StoreError, match="newer than this code"):
        asyncio.run(main())
    # The failed open stopped what it had started.
    assert "kaa-store-writer" not in {t.name for t in threading.enumerate()}


@pytest.mark.parametrize("module", ["servers", "servers.control"])
def test_a_postgres_store_without_asyncpg_is_one_line(tmp_path: Path, module: str) -> None:
    """A device-style install (no asyncpg) told to use PostgreSQL: one line, what to install."""
    data = tmp_path / "data"
    args = ["--data", str(data), "--store", "postgresql://kaa@127.0.0.1:1/kaa"]
    if module == "servers.control":
        args += ["app", "list"]
        subprocess.run(
            [sys.executable, "-m", "servers.control", "--data", str(data), "init"],
            check=True, capture_output=True, cwd=REPO,
        )
    # sys.modules["asyncpg"] = None makes every import of asyncpg fail as if not installed.
    code = (
        "import runpy, sys; sys.modules['asyncpg'] = None; "
        f"sys.argv = [{module!r}, *{args!r}]; "
        f"runpy.run_module({module!r}, run_name='__main__')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert out.returncode == 1, out
    assert "Traceback" not in out.stderr + out.stdout
    assert "pip install 'kaa-wire[postgres]'" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
