"""The admin console's store methods on both backends: credentials (schema step 3) and
the cursor searches of endpoints and the audit log, with every filter."""

from __future__ import annotations

import pytest
from servers_harness import StoreBackend
from store_records import T0, endpoint_id, endpoint_write

from servers.store.base import AlreadyExists, AuditEntry, NotFound, RegistryStore
from servers.store.console import AdminCredential, CredentialKind, EndpointQuery, Role
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
            rows = await store.search_endpoints(EndpointQuery(**query))  # type: ignore[arg-type]
            by_id = {endpoint_id(n): n for n in range(1, 8)}
            return [by_id[e.endpoint_id] for _, e in rows]

        assert await ids() == [7, 6, 5, 4, 3, 2, 1]
        first = await store.search_endpoints(EndpointQuery(limit=3))
        assert await ids(limit=3, before=first[-1][0]) == [4, 3, 2]
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
