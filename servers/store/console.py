"""What the admin console and API keep and ask of the store, for every SQL backend.

* **Admin credentials** (``admin_credentials``, schema step 3): a person's password,
  stored as an Argon2id hash, or an API key, stored as its SHA-256 (it is 256 random bits,
  so a fast hash loses nothing and lets a request find it by an index). Each has a role.
* **Searches** with cursors, newest first: endpoints by id prefix, application, status,
  first-seen time, profile content and a profile's JSON field; the audit log, optionally
  of one subject. Each page is read by an index and stops at its limit; a filter no index
  serves is tested on a bounded window of rows per page (docs/console.md, "How it
  scales").

The SQL is built here once for both backends; they differ in placeholders, the name of
the ordering column (SQLite's rowid ``id``, PostgreSQL's ``seq``), and how a profile is
searched (``instr`` or ``position``; ``json_type``/``json_extract`` or jsonb).
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Awaitable, Callable, Sequence
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
    "EndpointPage",
    "FieldMatch",
    "JsonScalar",
    "SCAN_ROWS",
    "JSON_SCAN_ROWS",
    "endpoint_search",
    "search_endpoints",
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


#: At most this many candidate rows (those the indexed filters leave) are examined per page
#: when a filter without an index is given (``since_ms``, ``profile``): docs/console.md,
#: "How it scales". About 15 ms of a core on SQLite or PostgreSQL.
SCAN_ROWS = 20_000
#: The same with a JSON field match: parsing a profile costs PostgreSQL about 8 µs.
JSON_SCAN_ROWS = 5_000

#: A JSON scalar a profile field is compared with.
JsonScalar = str | int | float | bool | None


@dataclasses.dataclass(frozen=True, slots=True)
class FieldMatch:
    """A profile (parsed as JSON) whose field at ``path`` (object keys from the top) equals
    ``value``: same JSON type, and equal (numbers by value: 7 equals 7.0)."""

    path: tuple[str, ...]
    value: JsonScalar


@dataclasses.dataclass(frozen=True, slots=True)
class EndpointQuery:
    """One page of an endpoint search, newest first. Every filter given must match."""

    #: Lower-case hex digits the endpoint id starts with (up to 40).
    id_prefix: str | None = None
    application: str | None = None
    status: str | None = None
    #: First seen at or after this time (epoch ms).
    since_ms: int | None = None
    #: Bytes the profile contains.
    profile_contains: bytes | None = None
    #: A field of the profile, parsed as JSON (a profile that is not JSON never matches).
    profile_field: FieldMatch | None = None
    #: The cursor: only rows older than this row position.
    before: int | None = None
    limit: int = 50
    #: Candidate rows to examine at most (``scan_rows``); None: the backend's default.
    scan_limit: int | None = None
    #: Candidate rows the earlier pages of this search examined (carried by the cursor).
    examined: int = 0

    @property
    def bounded(self) -> bool:
        """Whether a filter without an index is given, so a page examines a window."""
        return (
            self.since_ms is not None
            or bool(self.profile_contains)
            or self.profile_field is not None
        )

    @property
    def window(self) -> int:
        """How many candidate rows this page examines at most."""
        most = JSON_SCAN_ROWS if self.profile_field is not None else SCAN_ROWS
        return most if self.scan_limit is None else min(self.scan_limit, most)


@dataclasses.dataclass(frozen=True, slots=True)
class EndpointPage:
    """A page of :func:`search_endpoints`."""

    rows: list[tuple[int, Endpoint]]
    #: The position the next page continues below; None when nothing is left.
    next_before: int | None
    #: Candidate rows examined by the search so far (this page and the earlier ones);
    #: None for a search of indexed filters only (it examines only rows it returns).
    examined: int | None = None


Placeholder = Callable[[int], str]


def _qmark(n: int) -> str:
    return f"?{n}"  # numbered, so that one parameter may appear twice


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


class _Sql:
    """Collects the parameters of one statement, numbered as the backend wants them."""

    def __init__(self, postgres: bool) -> None:
        self.postgres = postgres
        self.mark, self.key, self.contains = _dialect(postgres)
        self.params: list[object] = []

    def arg(self, value: object) -> str:
        self.params.append(value)
        return self.mark(len(self.params))


def _indexed(q: EndpointQuery, s: _Sql) -> list[str]:
    """The conditions an index serves: they choose the candidate rows."""
    where: list[str] = []
    if q.id_prefix:
        low, high = _id_range(q.id_prefix)
        where.append(f"endpoint_id BETWEEN {s.arg(low)} AND {s.arg(high)}")
    if q.application is not None:
        where.append(f"application = {s.arg(q.application)}")
    if q.status is not None:
        where.append(f"status = {s.arg(q.status)}")
    return where


def _tested(q: EndpointQuery, s: _Sql) -> list[str]:
    """The conditions tested on each candidate row (no index serves them)."""
    where: list[str] = []
    if q.since_ms is not None:
        where.append(f"first_seen_ms >= {s.arg(q.since_ms)}")
    if q.profile_contains:
        where.append(s.contains.format(col="profile", arg=s.arg(q.profile_contains)))
    if q.profile_field is not None:
        where.append(_field_match(q.profile_field, s))
    return where


def _field_match(match: FieldMatch, s: _Sql) -> str:
    value = match.value
    if s.postgres:
        # kaa_profile_json (schema step 5) is NULL for a profile that is not JSON; jsonb
        # equality compares type and value (numbers by value).
        path = s.arg(list(match.path))
        return f"kaa_profile_json(profile) #> {path}::text[] = {s.arg(json.dumps(value))}::jsonb"
    # SQLite: the profile as text, checked by json_valid first (json_type raises on
    # anything else); json_type tells true from 1 and a string from a number.
    doc = "CAST(profile AS TEXT)"
    path = s.arg("$" + "".join(f'."{key}"' for key in match.path))
    kind = f"json_type({doc}, {path})"
    if value is None or isinstance(value, bool):
        test = f"{kind} = {s.arg(json.dumps(value))}"
    elif isinstance(value, str):
        test = f"{kind} = 'text' AND json_extract({doc}, {path}) = {s.arg(value)}"
    else:
        test = f"{kind} IN ('integer', 'real') AND json_extract({doc}, {path}) = {s.arg(value)}"
    return f"(CASE WHEN json_valid({doc}) THEN {test} ELSE 0 END)"


def _where(conditions: list[str]) -> str:
    return f" WHERE {' AND '.join(conditions)}" if conditions else ""


def endpoint_search(
    q: EndpointQuery, *, postgres: bool, floor: int | None = None
) -> tuple[str, list[object]]:
    """SQL and parameters selecting ``(position, ENDPOINT_COLUMNS...)`` for ``q``: at most
    ``q.limit`` rows, newest first, none below the position ``floor``."""
    s = _Sql(postgres)
    where = _indexed(q, s) + _tested(q, s)
    if q.before is not None:
        where.append(f"{s.key} < {s.arg(q.before)}")
    if floor is not None:
        where.append(f"{s.key} >= {s.arg(floor)}")
    sql = (
        f"SELECT {s.key}, {ENDPOINT_COLUMNS} FROM endpoints{_where(where)} "
        f"ORDER BY {s.key} DESC LIMIT {s.arg(q.limit)}"
    )
    return sql, s.params


def scan_window(q: EndpointQuery, *, postgres: bool) -> tuple[str, list[object]]:
    """SQL selecting ``(count, lowest position)`` of the next ``q.window`` candidate rows
    below the cursor: read from an index, no row's profile touched."""
    s = _Sql(postgres)
    where = _indexed(q, s)
    if q.before is not None:
        where.append(f"{s.key} < {s.arg(q.before)}")
    sql = (
        f"SELECT count(*), min({s.key}) FROM (SELECT {s.key} FROM endpoints{_where(where)} "
        f"ORDER BY {s.key} DESC LIMIT {s.arg(q.window)}) AS candidates"
    )
    return sql, s.params


def scan_count(q: EndpointQuery, last: int, *, postgres: bool) -> tuple[str, list[object]]:
    """SQL counting the candidate rows from the cursor down to ``last`` (a page that
    filled before its window ended examined those: fewer than a window, by an index)."""
    s = _Sql(postgres)
    where = [*_indexed(q, s), f"{s.key} >= {s.arg(last)}"]
    if q.before is not None:
        where.append(f"{s.key} < {s.arg(q.before)}")
    return f"SELECT count(*) FROM endpoints{_where(where)}", s.params


Select = Callable[[str, list[object]], Awaitable[list[Sequence[Any]]]]


async def search_endpoints(q: EndpointQuery, select: Select, *, postgres: bool) -> EndpointPage:
    """One page of ``q``, by the backend's ``select(sql, params)``.

    With indexed filters only, a page reads its rows by an index and stops at its limit.
    With a filter no index serves, a page examines at most ``q.window`` candidate rows,
    newest first from the cursor: it may hold fewer than ``q.limit`` rows, or none, and
    still have a next page; ``examined`` says how far the search got.
    """
    if not q.bounded:
        found = await select(*endpoint_search(q, postgres=postgres))
        rows = [positioned_endpoint(r) for r in found]
        more = len(rows) == q.limit
        return EndpointPage(rows, rows[-1][0] if rows and more else None)
    [(candidates, lowest)] = await select(*scan_window(q, postgres=postgres))
    full_window = candidates == q.window
    sql, params = endpoint_search(q, postgres=postgres, floor=lowest if full_window else None)
    rows = [positioned_endpoint(r) for r in await select(sql, params)]
    if len(rows) == q.limit:
        # The page filled before its window ended: it examined the rows down to its last.
        last = rows[-1][0]
        [(counted,)] = await select(*scan_count(q, last, postgres=postgres))
        ended = not full_window and last == lowest  # it was the oldest candidate
        return EndpointPage(rows, None if ended else last, q.examined + int(counted))
    return EndpointPage(
        rows, int(lowest) if full_window else None, q.examined + int(candidates)
    )


def audit_search(
    subject: str | None, before: int | None, limit: int, *, postgres: bool
) -> tuple[str, list[object]]:
    """SQL and parameters selecting AuditEntry fields (``seq`` last), newest first."""
    s = _Sql(postgres)
    where: list[str] = []
    if subject is not None:
        where.append(f"subject = {s.arg(subject)}")
    if before is not None:
        where.append(f"{s.key} < {s.arg(before)}")
    sql = (
        f"SELECT at_ms, actor, action, subject, detail, {s.key} FROM audit_log{_where(where)} "
        f"ORDER BY {s.key} DESC LIMIT {s.arg(limit)}"
    )
    return sql, s.params


def positioned_endpoint(row: Sequence[Any]) -> tuple[int, Endpoint]:
    """A row of :func:`endpoint_search`: (row position, endpoint)."""
    return int(row[0]), endpoint(tuple(row)[1:])
