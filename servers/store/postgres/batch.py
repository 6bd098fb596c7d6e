"""One group-commit batch of registrations, decided in Python: no database here.

The writer (``writer.py``) locks the rows of every endpoint in the batch, hands them to
:class:`Batch`, and writes what it decided with two statements: one INSERT of the new
endpoints and one UPDATE of the changed ones, each over ``unnest`` of column arrays, rows
in endpoint-id order (two nodes' batches then lock in the same order and cannot deadlock).
Outcomes are those that one transaction per write, in arrival order, would give
(``_decision.decide`` for each, against the row as the earlier writes left it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kaa_wire import RegistrationStatus
from servers.store._decision import ACCEPTED, StoredEndpoint, decide, stored_after
from servers.store.base import EndpointWrite, StoreError, WriteOutcome

__all__ = [
    "Batch",
    "Row",
    "locked_rows",
    "LOCK_ENDPOINTS",
    "INSERT_ENDPOINTS",
    "UPDATE_ENDPOINTS",
]

#: Locks the stored rows of the endpoints ``$1``, in endpoint-id order, and reads what the
#: rule needs of them (:func:`locked_rows` reads its records).
LOCK_ENDPOINTS = (
    "SELECT endpoint_id, status, application, profile_hash, last_request_ms FROM endpoints "
    "WHERE endpoint_id = ANY($1::bytea[]) ORDER BY endpoint_id FOR UPDATE"
)
#: Parameters: :meth:`Batch.insert_arrays`. Returns the endpoint ids it inserted: an id
#: another transaction inserted first is not among them.
INSERT_ENDPOINTS = """
INSERT INTO endpoints (endpoint_id, public_key, sdk_token_hash, application, profile,
    profile_hash, first_seen_ms, last_seen_ms, status, registration_status, last_request_ms)
SELECT u.e, u.k, u.t, u.a, u.p, u.ph, u.fs, u.ls, 'active', u.rs, u.lr
FROM unnest($1::bytea[], $2::bytea[], $3::bytea[], $4::text[], $5::bytea[], $6::bytea[],
            $7::bigint[], $8::bigint[], $9::text[], $10::bigint[])
     AS u(e, k, t, a, p, ph, fs, ls, rs, lr)
ORDER BY u.e
ON CONFLICT (endpoint_id) DO NOTHING
RETURNING endpoint_id
"""
#: The :class:`Row` field of each parameter of ``INSERT_ENDPOINTS``, in order.
_INSERT_COLUMNS = (
    "endpoint_id", "public_key", "sdk_token_hash", "application", "profile", "profile_hash",
    "first_seen_ms", "last_seen_ms", "registration_status", "last_request_ms",
)  # fmt: skip
#: Parameters: :meth:`Batch.update_arrays`. A NULL profile keeps the stored one.
UPDATE_ENDPOINTS = """
UPDATE endpoints AS e
SET sdk_token_hash = u.t,
    profile = COALESCE(u.p, e.profile),
    profile_hash = COALESCE(u.ph, e.profile_hash),
    last_seen_ms = u.ls,
    last_request_ms = u.lr,
    registration_status = u.rs
FROM unnest($1::bytea[], $2::bytea[], $3::bytea[], $4::bytea[], $5::bigint[], $6::bigint[],
            $7::text[]) AS u(e, t, p, ph, ls, lr, rs)
WHERE e.endpoint_id = u.e
"""
#: The :class:`Row` field of each parameter of ``UPDATE_ENDPOINTS``, in order.
_UPDATE_COLUMNS = (
    "endpoint_id", "sdk_token_hash", "profile", "profile_hash", "last_seen_ms",
    "last_request_ms", "registration_status",
)  # fmt: skip


@dataclasses.dataclass(slots=True)
class Row:
    """The final values one batch writes for one endpoint (an INSERT or an UPDATE)."""

    insert: bool
    endpoint_id: bytes
    public_key: bytes
    sdk_token_hash: bytes
    application: str
    #: None in an UPDATE: the stored profile stays.
    profile: bytes | None
    profile_hash: bytes | None
    first_seen_ms: int
    last_seen_ms: int
    registration_status: str
    last_request_ms: int


def _arrays(rows: Sequence[Row], columns: Sequence[str]) -> tuple[list[Any], ...]:
    return tuple([getattr(row, column) for row in rows] for column in columns)


def locked_rows(records: Iterable[Mapping[str, Any]]) -> dict[bytes, StoredEndpoint]:
    """The records ``LOCK_ENDPOINTS`` returned, by endpoint id."""
    return {
        bytes(r["endpoint_id"]): StoredEndpoint(
            r["status"], r["application"], bytes(r["profile_hash"]), r["last_request_ms"]
        )
        for r in records
    }


def _decide(
    writes: Sequence[EndpointWrite], stored: dict[bytes, StoredEndpoint]
) -> tuple[list[WriteOutcome], dict[bytes, Row]]:
    """Outcomes of ``writes`` in order, and the rows to write; ``stored`` is updated as the
    writes are applied."""
    outcomes: list[WriteOutcome] = []
    rows: dict[bytes, Row] = {}
    for w in writes:
        outcome = decide(stored.get(w.endpoint_id), w)
        outcomes.append(outcome)
        if outcome not in ACCEPTED:
            continue
        stored[w.endpoint_id] = stored_after(w)
        row = rows.get(w.endpoint_id)
        if row is None:
            row = rows[w.endpoint_id] = Row(
                outcome is WriteOutcome.NEW, w.endpoint_id, w.public_key, w.sdk_token_hash,
                w.application, None, None, w.now_ms, w.now_ms, outcome.value, w.request_ms,
            )  # fmt: skip
        row.sdk_token_hash = w.sdk_token_hash
        row.last_seen_ms = w.now_ms
        row.last_request_ms = w.request_ms
        row.registration_status = RegistrationStatus[outcome.value].name
        if row.insert or outcome is WriteOutcome.PROFILE_UPDATED:
            row.profile, row.profile_hash = w.profile, w.profile_hash
    return outcomes, rows


class Batch:
    """The decisions for ``writes`` against the endpoints as locked (``stored``)."""

    def __init__(
        self, writes: Sequence[EndpointWrite], stored: Mapping[bytes, StoredEndpoint]
    ) -> None:
        self.writes = list(writes)
        #: One per write, in arrival order.
        self.outcomes, self._rows = _decide(self.writes, dict(stored))

    @staticmethod
    def endpoint_ids(writes: Iterable[EndpointWrite]) -> list[bytes]:
        """The endpoints to lock, each once, in lock order."""
        return sorted({w.endpoint_id for w in writes})

    def inserts(self) -> list[Row]:
        """The new endpoints' rows, in endpoint-id order."""
        return [self._rows[i] for i in sorted(self._rows) if self._rows[i].insert]

    def updates(self) -> list[Row]:
        """The changed endpoints' rows, in endpoint-id order."""
        return [self._rows[i] for i in sorted(self._rows) if not self._rows[i].insert]

    def insert_arrays(self) -> tuple[list[Any], ...]:
        """The parameters of ``INSERT_ENDPOINTS``: a column array each."""
        return _arrays(self.inserts(), _INSERT_COLUMNS)

    def update_arrays(self) -> tuple[list[Any], ...]:
        """The parameters of ``UPDATE_ENDPOINTS``: a column array each."""
        return _arrays(self.updates(), _UPDATE_COLUMNS)

    def lost(self, inserted: Iterable[bytes]) -> set[bytes]:
        """The endpoints this batch inserts that ``inserted`` (what the INSERT returned)
        lacks: another transaction inserted them, and committed, after our lock."""
        return {r.endpoint_id for r in self.inserts()} - set(inserted)

    def judge_again(self, lost: set[bytes], stored: Mapping[bytes, StoredEndpoint]) -> None:
        """Decide the writes of the ``lost`` endpoints again, against their rows as now
        locked (``stored``); their rows become UPDATEs. Raises StoreError when one of them
        has no row after all: never acknowledge a write that was not made."""
        again = [k for k, w in enumerate(self.writes) if w.endpoint_id in lost]
        redone, rows = _decide([self.writes[k] for k in again], dict(stored))
        if any(row.insert for row in rows.values()):
            raise StoreError("an endpoint row vanished during its registration")
        for k, outcome in zip(again, redone, strict=True):
            self.outcomes[k] = outcome
        for endpoint_id in lost:
            del self._rows[endpoint_id]
        self._rows.update(rows)
