"""The admin console's store methods on both backends: credentials (schema step 3) and
the cursor searches of endpoints and the audit log, with every filter."""

from __future__ import annotations

import asyncio

import pytest
from servers_harness import StoreBackend
from store_records import T0, endpoint_id, endpoint_write

from servers.store.base import AlreadyExists, AuditEntry, NotFound, RegistryStore
from servers.store.console import (
    AdminCredential,
    CredentialKind,
    EndpointQuery,
    FieldMatch,
    Role,
)
from tests.servers.test_servers_store import _app


def _audit(action: str, subject: str = "s", at: int = T0) -> AuditEntry:
    return AuditEntry(at, "test", action, subject, "")


def test_credentials_round_trip(store_backend: StoreBackend) -> None:
    async def body(store: RegistryStore) -> None:
        alice = AdminCredential("alice", CredentialKind.PASSWORD, Role.ADMIN, "$argon2id$x", T0)
        key = AdminCredential("bot", CredentialKind.API_KEY, Role.READ_ONLY, "ab" * 32, T0 + 1)
        await store.add_credential(alice, _audit("admin.add", "alice"))
        await store.add_credential(key, _audit("admin.key", "bot"))
        with pytest.raises(AlreadyExists):
            await store.add_credential(alice, _audit("admin.add", "alice"))
        assert await store.get_credential("alice") == alice
        assert await store.get_credential("nobody") is None
        assert await store.find_api_key("ab" * 32) == key
        assert await store.find_api_key("$argon2id$x") is None  # a password is no API key
        assert [c.name for c in await store.list_credentials()] == ["alice", "bot"]
        revoked = await store.revoke_credential("bot", _audit("admin.revoke", "bot", T0 + 5))
        again = await store.revoke_credential("bot", _audit("admin.revoke", "bot", T0 + 9))
        assert revoked.revoked_ms == again.revoked_ms == T0 + 5 and not again.live
        with pytest.raises(NotFound):
            await store.revoke_credential("nobody", _audit("admin.revoke"))
        actions = [e.action for e in await store.search_audit()]
        assert actions == ["admin.revoke", "admin.revoke", "admin.key", "admin.add"]

    store_backend.run(body)


def test_endpoint_searches_page_newest_first_with_every_filter(
    store_backend: StoreBackend,
) -> None:
    async def body(store: RegistryStore) -> None:
        await store.create_application(_app(), _audit("app.create"))
        await store.create_application(_app("app-2", name="other"), _audit("app.create"))
        for n in range(1, 8):
            profile = b'{"colour":"%s"}' % (b"red" if n % 2 else b"blue")
            write = endpoint_write(n, T0 + n, profile, application="app-2" if n == 7 else "app-1")
            await store.register_endpoint(write)
        await store.revoke_endpoint(endpoint_id(3), _audit("endpoint.revoke"))

        async def ids(**query: object) -> list[int]:
            page = await store.search_endpoints(EndpointQuery(**query))  # type: ignore[arg-type]
            by_id = {endpoint_id(n): n for n in range(1, 8)}
            return [by_id[e.endpoint_id] for _, e in page.rows]

        assert await ids() == [7, 6, 5, 4, 3, 2, 1]
        first = await store.search_endpoints(EndpointQuery(limit=3))
        assert first.examined is None and first.next_before == first.rows[-1][0]
        assert await ids(limit=3, before=first.next_before) == [4, 3, 2]
        assert await ids(application="app-2") == [7]
        assert await ids(status="revoked") == [3]
        assert await ids(status="active", profile_contains=b"red") == [7, 5, 1]
        assert await ids(since_ms=T0 + 11) == [7, 6]  # first seen: T0 + n + 5
        prefix = endpoint_id(4).hex()
        assert await ids(id_prefix=prefix[:6]) == [4]
        assert await ids(id_prefix=prefix) == [4]
        assert await ids(id_prefix=prefix[:5]) == [4]  # an odd number of digits
        assert await ids(profile_contains=b"green") == []

    store_backend.run(body)


def test_a_filter_without_an_index_examines_a_bounded_window_per_page(
    store_backend: StoreBackend,
) -> None:
    """A page of a profile search examines at most ``scan_limit`` candidate rows from
    its cursor down: fewer rows than its limit, or none, and a next position to go on."""

    async def body(store: RegistryStore) -> None:
        await store.create_application(_app(), _audit("app.create"))
        for n in range(1, 11):
            profile = b'{"n":%d,"tag":"%s"}' % (n, b"rare" if n in (2, 9) else b"common")
            await store.register_endpoint(endpoint_write(n, T0 + n, profile))
        by_id = {endpoint_id(n): n for n in range(1, 11)}

        async def walk(**query: object) -> list[tuple[list[int], int | None]]:
            """Every page of a search: (its endpoints, rows examined so far)."""
            pages: list[tuple[list[int], int | None]] = []
            before, examined = None, 0
            while True:
                q = EndpointQuery(before=before, examined=examined, **query)  # type: ignore[arg-type]
                page = await store.search_endpoints(q)
                pages.append(([by_id[e.endpoint_id] for _, e in page.rows], page.examined))
                if page.next_before is None:
                    return pages
                before, examined = page.next_before, page.examined or 0

        # A window of 4: 10 rows take three pages; the rare rows are found where they are.
        rare = await walk(profile_contains=b"rare", scan_limit=4)
        assert rare == [([9], 4), ([], 8), ([2], 10)]
        # A page that fills before its window ends has examined the rows down to its last.
        # The last page ends at the oldest row: no empty page after it.
        assert await walk(profile_contains=b"common", scan_limit=4, limit=2) == [
            ([10, 8], 3), ([7, 6], 5), ([5, 4], 7), ([3, 1], 10)
        ]
        # The JSON field match, bounded the same way.
        field = FieldMatch(("tag",), "rare")
        assert await walk(profile_field=field, scan_limit=6) == [([9], 6), ([2], 10)]
        # Indexed filters alone examine no window.
        assert await walk(limit=20) == [(list(range(10, 0, -1)), None)]

    store_backend.run(body)


def test_a_json_field_match_compares_type_and_value(store_backend: StoreBackend) -> None:
    """Profiles are bytes: a profile that is not JSON (or not UTF-8) never matches and
    never fails the search."""
    profiles = [
        b'{"model":"m7","serial":7,"fw":{"major":2,"beta":true},"note":null}',  # 1
        b'{"model":"m8","serial":7.0,"fw":{"major":"2"}}',  # 2: 7.0 is 7; "2" is no 2
        b'{"model":"m7","serial":"7"}',  # 3: "7" is no 7
        b'{"model":"m\\u0037","serial":1}',  # 4: an escaped "m7"
        b"model=m7",  # 5: not JSON
        b'\xff\xfe{"model":"m7"}',  # 6: not UTF-8
        b'{"model":"m7"',  # 7: cut short
        b"[" * 5000 + b"]" * 5000,  # 8: deeper than any parser goes
        b'{"n":1e999999,"z":"\\u0000"}',  # 9: JSON that jsonb cannot hold (PostgreSQL raises)
        b"",  # 10
        b'["model","m7"]',  # 11: an array at the top
        b'{"model":1,"serial":true}',  # 12: true is no 1
    ]

    async def body(store: RegistryStore) -> None:
        await store.create_application(_app(), _audit("app.create"))
        for n, profile in enumerate(profiles, 1):
            await store.register_endpoint(endpoint_write(n, T0 + n, profile))
        by_id = {endpoint_id(n): n for n in range(1, len(profiles) + 1)}

        async def found(path: str, value: object) -> list[int]:
            match = FieldMatch(tuple(path.split(".")), value)  # type: ignore[arg-type]
            page = await store.search_endpoints(EndpointQuery(profile_field=match))
            return sorted(by_id[e.endpoint_id] for _, e in page.rows)

        assert await found("model", "m7") == [1, 3, 4]
        assert await found("serial", 7) == [1, 2]
        assert await found("serial", 7.0) == [1, 2]
        assert await found("serial", "7") == [3]
        assert await found("serial", True) == [12]
        assert await found("model", 1) == [12]
        assert await found("fw.major", 2) == [1]
        assert await found("fw.major", "2") == [2]
        assert await found("fw.beta", True) == [1]
        assert await found("fw.beta", False) == []
        assert await found("note", None) == [1]  # a JSON null, not a missing field
        assert await found("fw", "x") == []  # an object is no string
        assert await found("no.such.field", "m7") == []

    store_backend.run(body)


def test_audit_search_by_subject_pages_with_a_cursor(store_backend: StoreBackend) -> None:
    async def body(store: RegistryStore) -> None:
        for i in range(5):
            await store.add_audit(_audit(f"a{i}", "x" if i % 2 else "y", T0 + i))
        assert [e.action for e in await store.search_audit("x")] == ["a3", "a1"]
        page = await store.search_audit(limit=2)
        assert [e.action for e in page] == ["a4", "a3"]
        rest = await store.search_audit(before=page[-1].seq, limit=10)
        assert [e.action for e in rest] == ["a2", "a1", "a0"]

    store_backend.run(body)


@pytest.mark.postgres
def test_the_profile_parser_runs_in_a_plan_postgres_makes_parallel(postgres_database: str) -> None:
    """kaa_profile_json catches the cast's errors in a subtransaction, which a parallel
    worker cannot start: it must keep a query that calls it out of parallel workers (a
    parallel plan of the JSON search failed with a 500 at a million endpoints)."""
    import asyncpg

    from servers.store.postgres.migrate import migrate

    async def body() -> list[object]:
        conn = await asyncpg.connect(postgres_database)
        try:
            await migrate(conn)
            version = int(await conn.fetchval("SHOW server_version_num"))
            knob = "debug_parallel_query" if version >= 160000 else "force_parallel_mode"
            await conn.execute(f"SET {knob} = on")  # every plan that can be parallel is
            rows = await conn.fetch(
                "SELECT kaa_profile_json(p) FROM (VALUES ('{\"a\":1}'::bytea), "
                "('\\xff00'::bytea), ('not json'::bytea)) AS t(p)"
            )
            return [r[0] for r in rows]
        finally:
            await conn.close()

    assert asyncio.run(body()) == ['{"a": 1}', None, None]
