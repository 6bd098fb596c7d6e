"""The registration rule: what one verified registration does to the endpoint it names.

Every backend decides with :func:`decide`, inside the write transaction that stores the
outcome (``RegistryStore.register_endpoint``): SQLite one write at a time, PostgreSQL over a
group-commit batch. The order of the checks is part of the rule: a revoked endpoint is
refused before its application is looked at, and one of another application before its
timestamp, so a refusal never tells more than it must.
"""

from __future__ import annotations

import dataclasses

from servers.store.base import EndpointStatus, EndpointWrite, WriteOutcome

__all__ = ["ACCEPTED", "StoredEndpoint", "decide", "stored_after"]

#: The outcomes that store the registration; the others write nothing.
ACCEPTED = frozenset({WriteOutcome.NEW, WriteOutcome.EXISTING, WriteOutcome.PROFILE_UPDATED})


@dataclasses.dataclass(frozen=True, slots=True)
class StoredEndpoint:
    """What the rule reads of a stored endpoint."""

    status: str
    application: str
    profile_hash: bytes
    #: The timestamp of the last accepted request; the next must be strictly greater.
    last_request_ms: int


def decide(stored: StoredEndpoint | None, write: EndpointWrite) -> WriteOutcome:
    """The outcome of ``write`` on an endpoint stored as ``stored`` (None: not stored)."""
    if stored is None:
        return WriteOutcome.NEW
    if stored.status == EndpointStatus.REVOKED:
        return WriteOutcome.REVOKED
    if stored.application != write.application:
        return WriteOutcome.OTHER_APPLICATION
    if write.request_ms <= stored.last_request_ms:
        return WriteOutcome.REPLAYED
    if stored.profile_hash != write.profile_hash:
        return WriteOutcome.PROFILE_UPDATED
    return WriteOutcome.EXISTING


def stored_after(write: EndpointWrite) -> StoredEndpoint:
    """What the rule reads of the endpoint once ``write`` is accepted (any outcome in
    :data:`ACCEPTED`): the next write of the same endpoint is judged against this."""
    return StoredEndpoint(
        EndpointStatus.ACTIVE.value, write.application, write.profile_hash, write.request_ms
    )
