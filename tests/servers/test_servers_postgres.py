"""What only the PostgreSQL store has: migrations, node notifications, several stores on one
database, group-committed batches, and a database that drops its connections.

The backend-neutral contract is test_servers_store.py (run on PostgreSQL too); the tests
here that hold for both backends take ``store_backend`` as well.
"""

from __future__ import annotations

import argparse
import asyncio
import urllib.parse
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest
from servers_harness import IO_TIMEOUT_S, StoreBackend
from store_records import ONE_BATCH, T0, endpoint_id, endpoint_write, node_lease

from kaa_wire import RegistrationStatus
from servers import config as cfg
from servers.datadir import DataDir
from servers.store import (
    Application,
    AuditEntry,
    Balancing,
    RegistryStore,
    StoreBusy,
    StoreError,
    WriteOutcome,
)
from servers.store.factory import store_for
from servers.store.migrations_postgres import LATEST, MIGRATIONS
from servers.store.postgres import PostgresStore, migrate, redact_dsn
from servers.store.sqlite import SqliteStore


def _run(main: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(main())


def _app(token: str = "app-1") -> Application:
    return Application(token, "meters", b"{}", 1, (), Balancing.STATIC, False, T0)


def _audit(action: str = "app.create") -> AuditEntry:
    return AuditEntry(at_ms=T0, actor="test", action=action, subject="x")


# -- both backends ----------------------------------------------------------------------------


def test_one_batch_decides_like_one_transaction_per_write(store_backend: StoreBackend) -> None:
    """Writes of one endpoint submitted together (one group-commit batch) get the outcomes
    they would get one by one, in submission order, and leave the row the last one made."""

    async def body(store: RegistryStore) -> None:
        await store.create_application(_app(), _audit())
        writes = [w for w, _ in ONE_BATCH]
        outcomes = await asyncio.gather(*(store.register_endpoint(w) for w in writes))
        assert outcomes == [outcome for _, outcome in ONE_BATCH]
        one = await store.get_endpoint(writes[0].endpoint_id)
        assert one is not None
        assert (one.profile, one.last_request_ms) == (b"q", T0 + 3)
        assert (one.first_seen_ms, one.last_seen_ms) == (T0 + 5, T0 + 3 + 5)
        assert one.registration_status is RegistrationStatus.EXISTING
        two = await store.get_endpoint(writes[5].endpoint_id)
        assert two is not None and two.last_request_ms == T0
        assert [e.public_key for e in await store.list_endpoints()] == [b"key-1", b"key-2"]

    store_backend.run(body)


# -- PostgreSQL only ----------------------------------------------------------------------------

pg = pytest.mark.postgres


@pg
def test_migrations_apply_once_when_processes_start_together(postgres_database: str) -> None:
    async def main() -> None:
        conns = [await asyncpg.connect(postgres_database) for _ in range(3)]
        try:
            applied = await asyncio.gather(*(migrate(c) for c in conns))
            assert sorted(applied) == [[], [], [m.version for m in MIGRATIONS]]
            assert await migrate(conns[0]) == []
            versions = await conns[0].fetch("SELECT version FROM kaa_schema_migrations")
            assert [r["version"] for r in versions] == [m.version for m in MIGRATIONS]
            # A database migrated by newer code is refused, not used.
            await conns[0].execute(
                "INSERT INTO kaa_schema_migrations (version, name) VALUES ($1, 'future')",
                LATEST + 1,
            )
        finally:
            for c in conns:
                await c.close()
        with pytest.raises(StoreError, match="newer than this code"):
            async with PostgresStore(postgres_database):
                pass

    _run(main)


@pg
def test_node_changes_are_notified_to_other_stores(postgres_database: str) -> None:
    """Joins, lapsed-lease returns, changes and leaves notify; a live renewal does not."""

    async def main() -> None:
        async with (
            PostgresStore(postgres_database) as watcher,
            PostgresStore(postgres_database) as node,
        ):
            calls = 0
            changed = asyncio.Event()

            def callback() -> None:
                nonlocal calls
                calls += 1
                changed.set()

            async def next_call() -> int:
                await asyncio.wait_for(changed.wait(), IO_TIMEOUT_S)
                changed.clear()
                return calls

            assert watcher.subscribe_nodes(callback)
            base = await next_call()  # the LISTEN connection is up (and says so)
            await node.put_node(node_lease("a", T0 + 1000))  # joins
            assert await next_call() == base + 1
            await node.put_node(node_lease("a", T0 + 2000, renewed_ms=T0 + 500))  # live renewal
            await node.put_node(node_lease("a", T0 + 3000, renewed_ms=T0 + 2500))  # had lapsed
            # Notifications arrive in commit order: had the renewal notified, this would
            # be its call.
            assert await next_call() == base + 2
            await node.put_node(node_lease("a", T0 + 4000, renewed_ms=T0 + 2600, priority=7))
            assert await next_call() == base + 3
            await node.remove_node("a", "")
            assert await next_call() == base + 4
            await node.remove_node("a", "")  # nothing to remove: no news
            await node.put_node(node_lease("b", T0 + 1000))
            assert await next_call() == base + 5

    _run(main)


@pg
def test_one_request_on_two_stores_is_accepted_once(postgres_database: str) -> None:
    """Two Operations nodes' stores on one database: copies of one request, and racing
    first registrations, each endpoint NEW exactly once."""

    async def main() -> None:
        async with PostgresStore(postgres_database) as a, PostgresStore(postgres_database) as b:
            await a.create_application(_app(), _audit())
            copies = [s.register_endpoint(endpoint_write(1, T0)) for s in (a, b) for _ in range(10)]
            outcomes = await asyncio.gather(*copies)
            assert sorted(o.value for o in outcomes) == ["NEW"] + ["REPLAYED"] * 19
            # Many new endpoints, each sent to both stores at once, in opposite orders.
            ids = range(2, 60)
            first = [a.register_endpoint(endpoint_write(i, T0)) for i in ids]
            second = [b.register_endpoint(endpoint_write(i, T0 + 1)) for i in reversed(ids)]
            outcomes = await asyncio.gather(*first, *second)
            by_endpoint = dict.fromkeys(ids, "")
            for i, o in zip([*ids, *reversed(ids)], outcomes, strict=True):
                by_endpoint[i] += o.value[0]
            # Either a's write came first (NEW, then b's later timestamp: EXISTING) or b's
            # (NEW, then a's older one: REPLAYED).
            assert set(by_endpoint.values()) <= {"NE", "RN"}
            rows = await a.list_endpoints(limit=1000)
            assert len(rows) == len({r.endpoint_id for r in rows}) == 1 + len(ids)

    _run(main)


@pg
def test_revocation_from_another_store_applies_to_the_next_registration(
    postgres_database: str,
) -> None:
    async def main() -> None:
        async with (
            PostgresStore(postgres_database) as ops,
            PostgresStore(postgres_database) as control,
        ):
            await control.create_application(_app(), _audit())
            assert await ops.register_endpoint(endpoint_write(1, T0)) is WriteOutcome.NEW
            await control.revoke_endpoint(endpoint_id(1), _audit("endpoint.revoke"))
            assert await ops.register_endpoint(endpoint_write(1, T0 + 1)) is WriteOutcome.REVOKED

    _run(main)


@pg
def test_the_store_recovers_when_the_server_drops_its_connections(
    postgres_database: str, postgres_dsn: str
) -> None:
    """Every connection of the store killed by the server: what fails meanwhile fails as
    StoreBusy (the services answer OVERLOADED), and the store serves again afterwards."""

    async def main() -> None:
        async with PostgresStore(postgres_database) as store:
            await store.create_application(_app(), _audit())
            assert await store.register_endpoint(endpoint_write(1, T0)) is WriteOutcome.NEW
            admin = await asyncpg.connect(postgres_dsn)
            try:
                killed = await admin.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = $1 AND application_name = 'kaa-wire'",
                    urllib.parse.urlsplit(postgres_database).path.lstrip("/"),
                )
            finally:
                await admin.close()
            assert killed >= 2  # the writer's and at least one pooled connection
            await asyncio.sleep(0)
            outcomes: list[object] = []
            for n in range(1, 20):
                try:
                    outcome = await store.register_endpoint(endpoint_write(1, T0 + n))
                    app = await store.get_application("app-1")
                except StoreBusy as exc:
                    outcomes.append(exc)
                    continue
                assert outcome is WriteOutcome.EXISTING and app is not None
                break
            else:
                raise AssertionError(f"the store did not recover: {outcomes}")

    _run(main)


def test_dsn_passwords_are_not_shown() -> None:
    dsn = "postgresql://kaa:s3cret@db.example:5432/kaa?sslmode=require"
    assert redact_dsn(dsn) == "postgresql://kaa:***@db.example:5432/kaa?sslmode=require"
    assert "s3cret" not in repr(PostgresStore(dsn))
    assert PostgresStore(dsn).location == redact_dsn(dsn)
    assert redact_dsn("postgresql://kaa@db/kaa") == "postgresql://kaa@db/kaa"


def _settings(argv: list[str], environ: dict[str, str]) -> cfg.Settings:
    parser = argparse.ArgumentParser()
    cfg.add_arguments(parser, cfg.OPTIONS)
    return cfg.load_settings(parser.parse_args(argv), environ=environ)


def test_the_store_is_chosen_by_flag_environment_or_toml(tmp_path: Path) -> None:
    dsn = "postgresql://kaa@db.example:5432/kaa"
    toml = tmp_path / "kaa.toml"
    toml.write_text(f'store = "{dsn}"\nworkers = 3\n')
    from_toml = _settings([], {"KAA_CONFIG": str(toml)})
    assert (from_toml.store, from_toml.workers) == (dsn, 3)
    from_env = _settings([], {"KAA_STORE": dsn + "2", "KAA_CONFIG": str(toml)})
    assert from_env.store == dsn + "2"
    assert _settings(["--store", "postgres://x/y"], {"KAA_STORE": dsn}).store == "postgres://x/y"
    default = _settings(["--data", str(tmp_path)], {})
    assert (default.store, default.workers) == ("", 1)
    assert isinstance(store_for(default, DataDir(tmp_path)), SqliteStore)
    chosen = store_for(from_toml, DataDir(tmp_path))
    assert isinstance(chosen, PostgresStore) and chosen.dsn == dsn
    for bad in (["--store", "mysql://db/kaa"], ["--workers", "0"]):
        with pytest.raises(cfg.ConfigError):
            _settings(bad, {})
