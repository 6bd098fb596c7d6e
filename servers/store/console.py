"""What the admin console and API keep and ask of the store, for every SQL backend.

* **Admin credentials** (``admin_credentials``, schema step 3): a person's password,
  stored as an Argon2id hash, or an API key, stored as its SHA-256 (it is 256 random bits,
  so a fast hash loses nothing and lets a request find it by an index). Each has a role.
* **Searches** with cursors, newest first: endpoints by id prefix, application, status,
  first-seen time and profile content; the audit log, optionally of one subject. Each page
  is read by an index and stops at its limit (docs/console.md, "Scale").

The SQL is built here once for both backends; they differ only in placeholders and in
the name of the ordering column (SQLite's rowid ``id``, PostgreSQL's ``seq``).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Sequence
from typing import Any

from servers.store._rows import ENDPOINT_COLUMNS, endpoint
from servers.store.base import Endpoint

__all__ = [
    "Role",
    "CredentialKind",
    "AdminCredential",
    "CREDENTIAL_COLUMNS",
    "credential",
    "EndpointQuery",
    "endpoint_search",
    "audit_search",
    "MAX_PAGE",
    "positioned_endpoint",
]

#: The largest page a search returns.
MAX_PAGE = 500


class Role(enum.StrEnum):
    """What a credential may do: read everything, or also change things."""

    READ_ONLY = "read-only"
    ADMIN = "admin"


class CredentialKind(enum.StrEnum):
    PASSWORD = "password"
    API_KEY = "api-key"


@dataclasses.dataclass(frozen=True, slots=True)
class AdminCredential:
    name: str
    kind: CredentialKind
    role: Role
    #: An Argon2id hash string (password) or a SHA-256 in hex (API key): never the secret.
    secret_hash: str
    created_ms: int
    revoked_ms: int | None = None

    @property
    def live(self) -> bool:
        return self.revoked_ms is None


CREDENTIAL_COLUMNS = "name, kind, role, secret_hash, created_ms, revoked_ms"


def credential(row: Sequence[Any]) -> AdminCredential:
    name, kind, role, secret_hash, created_ms, revoked_ms = row
    return AdminCredential(
        name, CredentialKind(kind), Role(role), secret_hash, created_ms, revoked_ms
    )


@dataclasses.dataclass(frozen=True, slots=True)
class EndpointQuery:
    """One page of an endpoint search, newest first. Every filter given must match."""

    #: Lower-case hex digits the endpoint id starts with (up to 40).
    id_prefix: str | None = None
    application: str | None = None
    status: str | None = None
    #: First seen at or after this time (epoch ms).
    since_ms: int | None = None
    #: Bytes the profile contains (a scan of the rows the other filters leave).
    profile_contains: bytes | None = None
    #: The cursor: only rows older than this row position.
    before: int | None = None
    limit: int = 50


Placeholder = Callable[[int], str]


def _qmark(_: int) -> str:
    return "?"


def _dollar(n: int) -> str:
    return f"${n}"


def _dialect(postgres: bool) -> tuple[Placeholder, str, str]:
    """(placeholder, ordering column, 'contains' template with {col} and {arg})."""
    if postgres:
        return _dollar, "seq", "position({arg} in {col}) > 0"
    return _qmark, "id", "instr({col}, {arg}) > 0"


def _id_range(prefix: str) -> tuple[bytes, bytes]:
    """The smallest and largest 20-byte ids starting with the hex ``prefix``."""
    return bytes.fromhex(prefix.ljust(40, "0")), bytes.fromhex(prefix.ljust(40, "f"))


def endpoint_search(q: EndpointQuery, *, postgres: bool) -> tuple[str, list[object]]:
    """SQL and parameters selecting ``(position, ENDPOINT_COLUMNS...)`` for ``q``."""
    mark, key, contains = _dialect(postgres)
    where: list[str] = []
    params: list[object] = []

    def arg(value: object) -> str:
        params.append(value)
        return mark(len(params))

    if q.id_prefix:
        low, high = _id_range(q.id_prefix)
        where.append(f"endpoint_id BETWEEN {arg(low)} AND {arg(high)}")
    if q.application is not None:
        where.append(f"application = {arg(q.application)}")
    if q.status is not None:
        where.append(f"status = {arg(q.status)}")
    if q.since_ms is not None:
        where.append(f"first_seen_ms >= {arg(q.since_ms)}")
    if q.profile_contains:
        where.append(contains.format(col="profile", arg=arg(q.profile_contains)))
    if q.before is not None:
        where.append(f"{key} < {arg(q.before)}")
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    sql = (
        f"SELECT {key}, {ENDPOINT_COLUMNS} FROM endpoints{clause} "
        f"ORDER BY {key} DESC LIMIT {arg(q.limit)}"
    )
    return sql, params


def audit_search(
    subject: str | None, before: int | None, limit: int, *, postgres: bool
) -> tuple[str, list[object]]:
    """SQL and parameters selecting AuditEntry fields (``seq`` last), newest first."""
    mark, key, _ = _dialect(postgres)
    where: list[str] = []
    params: list[object] = []

    def arg(value: object) -> str:
        params.append(value)
        return mark(len(params))

    if subject is not None:
        where.append(f"subject = {arg(subject)}")
    if before is not None:
        where.append(f"{key} < {arg(before)}")
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    sql = (
        f"SELECT at_ms, actor, action, subject, detail, {key} FROM audit_log{clause} "
        f"ORDER BY {key} DESC LIMIT {arg(limit)}"
    )
    return sql, params


def positioned_endpoint(row: Sequence[Any]) -> tuple[int, Endpoint]:
    """A row of :func:`endpoint_search`: (row position, endpoint)."""
    return int(row[0]), endpoint(tuple(row)[1:])
