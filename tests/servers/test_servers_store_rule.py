"""The registration rule (servers/store/_decision.py), case by case.

One table: what is stored, what is written, the outcome. The rule alone is checked against
it without a database; then every backend, whose hot path writes part of the rule as SQL,
is checked against the same table.
"""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from servers_harness import StoreBackend
from store_records import T0, endpoint_id, endpoint_write

from servers.store import (
    Application,
    AuditEntry,
    Balancing,
    EndpointStatus,
    EndpointWrite,
    RegistryStore,
    WriteOutcome,
)
from servers.store._decision import ACCEPTED, StoredEndpoint, decide, stored_after

ACTIVE, REVOKED = EndpointStatus.ACTIVE.value, EndpointStatus.REVOKED.value


def _hash(profile: bytes) -> bytes:
    return hashlib.sha256(profile).digest()


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    #: (status, application, profile, last_request_ms), or None: nothing stored.
    stored: tuple[str, str, bytes, int] | None
    #: (application, profile, request_ms) of the registration.
    write: tuple[str, bytes, int]
    outcome: WriteOutcome

    def stored_endpoint(self) -> StoredEndpoint | None:
        if self.stored is None:
            return None
        status, application, profile, last_ms = self.stored
        return StoredEndpoint(status, application, _hash(profile), last_ms)

    def registration(self, endpoint: int = 1, carried_key: bool = False) -> EndpointWrite:
        application, profile, request_ms = self.write
        return endpoint_write(
            endpoint, request_ms, profile, application=application, carried_key=carried_key
        )


Out = WriteOutcome
CASES = [
    Case("nothing stored", None, ("a", b"p", T0), Out.NEW),
    Case("newer, same profile", (ACTIVE, "a", b"p", T0), ("a", b"p", T0 + 1), Out.EXISTING),
    Case("newer, other profile", (ACTIVE, "a", b"p", T0), ("a", b"q", T0 + 1), Out.PROFILE_UPDATED),
    Case("same timestamp", (ACTIVE, "a", b"p", T0), ("a", b"p", T0), Out.REPLAYED),
    Case("older timestamp", (ACTIVE, "a", b"p", T0), ("a", b"p", T0 - 1), Out.REPLAYED),
    Case("replay, other profile", (ACTIVE, "a", b"p", T0), ("a", b"q", T0), Out.REPLAYED),
    Case("other application", (ACTIVE, "b", b"p", T0), ("a", b"p", T0 + 1), Out.OTHER_APPLICATION),
    # The order of the checks: application before timestamp, revocation before both.
    Case("other app, replay", (ACTIVE, "b", b"p", T0), ("a", b"p", T0), Out.OTHER_APPLICATION),
    Case("revoked", (REVOKED, "a", b"p", T0), ("a", b"p", T0 + 1), Out.REVOKED),
    Case("revoked, other profile", (REVOKED, "a", b"p", T0), ("a", b"q", T0 + 1), Out.REVOKED),
    Case("revoked, replay", (REVOKED, "a", b"p", T0), ("a", b"p", T0), Out.REVOKED),
    Case("revoked, other application", (REVOKED, "b", b"p", T0), ("a", b"p", T0), Out.REVOKED),
]


def test_the_table_covers_every_outcome() -> None:
    assert {c.outcome for c in CASES} == set(WriteOutcome)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_the_rule(case: Case) -> None:
    assert decide(case.stored_endpoint(), case.registration()) is case.outcome


def test_an_accepted_write_is_what_the_next_one_is_judged_against() -> None:
    first = endpoint_write(1, T0, b"p", application="a")
    after = stored_after(first)
    assert after == StoredEndpoint(ACTIVE, "a", _hash(b"p"), T0)
    assert decide(after, first) is Out.REPLAYED
    assert decide(after, endpoint_write(1, T0 + 1, b"p", application="a")) is Out.EXISTING
    assert decide(after, endpoint_write(1, T0 + 1, b"q", application="a")) is Out.PROFILE_UPDATED
    assert {Out.NEW, Out.EXISTING, Out.PROFILE_UPDATED} == ACCEPTED


# -- every backend keeps the rule ------------------------------------------------------------


def _audit(action: str) -> AuditEntry:
    return AuditEntry(at_ms=T0, actor="test", action=action, subject="x")


async def _store_case(store: RegistryStore, endpoint: int, case: Case) -> None:
    """Bring ``endpoint`` to the case's stored state through the store's own API."""
    if case.stored is None:
        return
    status, application, profile, last_ms = case.stored
    first = endpoint_write(endpoint, last_ms, profile, application=application)
    assert await store.register_endpoint(first) is Out.NEW
    if status == REVOKED:
        await store.revoke_endpoint(endpoint_id(endpoint), _audit("revoke"))


@pytest.mark.parametrize("carried_key", [False, True], ids=["update-first", "insert-first"])
def test_every_backend_keeps_the_rule(store_backend: StoreBackend, carried_key: bool) -> None:
    """Each case on its own endpoint: the backend's outcome is the rule's, and the row is
    the written one exactly when the rule accepts the write."""

    async def body(store: RegistryStore) -> None:
        for app in ("a", "b"):
            application = Application(app, app, b"{}", 1, (), Balancing.STATIC, False, T0)
            await store.create_application(application, _audit("app.create"))
        for endpoint, case in enumerate(CASES):
            await _store_case(store, endpoint, case)
            before = await store.get_endpoint(case.registration(endpoint).endpoint_id)
            write = case.registration(endpoint, carried_key)
            outcome = await store.register_endpoint(write)
            assert outcome is case.outcome, case.name
            after = await store.get_endpoint(write.endpoint_id)
            assert after is not None
            if outcome in ACCEPTED:
                assert (after.profile, after.last_request_ms) == (write.profile, write.request_ms)
                assert after.registration_status.name == outcome.value, case.name
            else:
                assert after == before, case.name

    store_backend.run(body)
