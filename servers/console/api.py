"""``/api/v1``: the admin JSON API, what ``servers.control`` does except ``init``.

It calls the same store methods and actions as the CLI and answers with the same
documents (servers/control/documents.py). Lists page with opaque cursors, newest first;
refusals are JSON with a stable code (errors.py); openapi.py describes every route, and
tests/console/test_console_api.py holds the two together.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import json
import math
import re
import secrets
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from kaa_wire import Topic
from servers.clock import wall_ms
from servers.config import Settings
from servers.console.auth import IDENTITY, Identity, reads_only
from servers.console.dashboard import Sampler
from servers.console.errors import ApiError
from servers.control import actions
from servers.control.credentials import credential_doc
from servers.control.documents import (
    app_doc,
    changed,
    endpoint_doc,
    keyring_doc,
    node_doc,
    sdk_token_doc,
)
from servers.control.export import build_sdk_config, c_header
from servers.datadir import DataDir
from servers.store.base import (
    ApplicationChanges,
    AuditEntry,
    Balancing,
    EndpointStatus,
    NotFound,
    Refused,
    RegistryStore,
)
from servers.store.console import MAX_PAGE, SCAN_ROWS, EndpointQuery, FieldMatch

__all__ = [
    "Api",
    "audit_doc",
    "decode_cursor",
    "decode_endpoint_cursor",
    "encode_cursor",
    "endpoint_id_of",
    "path_text",
    "query_text",
    "text_of",
]

PREFIX = "/api/v1"
DEFAULT_PAGE = 50
_HEX = re.compile(r"[0-9a-f]*")
_MAX_CONFIG = 32 * 1024
_MAX_REASON = 500
_MAX_PROFILE_QUERY = 200
#: profile_field: object keys from the top, joined by ".".
_FIELD_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")
_MAX_FIELD_DEPTH = 8
_NOT_SCALAR = object()
#: A row position in a cursor: 18 digits always fit a signed 64-bit column.
_MAX_CURSOR_DIGITS = 18
#: Cursors carry an HMAC-SHA-256 (its first _CURSOR_MAC bytes) under this process's own
#: random key, so that an answer never reports a count a client made up (a search's
#: ``scan.examined``): docs/console.md, "How it scales". A cursor of another process (a
#: restart, another admin port) is a bad cursor, as a console session is gone.
_CURSOR_KEY = secrets.token_bytes(32)
_CURSOR_MAC = 16


# -- cursors ---------------------------------------------------------------------------------


def encode_cursor(
    kind: str, position: int, examined: int | None = None, *, search: str = ""
) -> str:
    """Opaque to clients: which list it belongs to and the last row's position (and, for
    a bounded endpoint search, how many rows it has examined so far). Its MAC also covers
    ``search``, what the list is of (its filters): another search's cursor, and so its
    count, is refused (round 4 of the attack carried a count over to another search)."""
    text = f"{kind}:{position}" if examined is None else f"{kind}:{position}:{examined}"
    raw = text.encode()
    return base64.urlsafe_b64encode(_cursor_mac(raw, search) + raw).decode().rstrip("=")


def _cursor_mac(raw: bytes, search: str) -> bytes:
    message = raw + b"\x00" + search.encode()
    return hmac.new(_CURSOR_KEY, message, hashlib.sha256).digest()[:_CURSOR_MAC]


def _cursor_numbers(kind: str, text: str, search: str) -> list[int]:
    """The numbers of a cursor ``kind:N[:N]`` as encode_cursor writes them."""
    try:
        signed = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        mac, body = signed[:_CURSOR_MAC], signed[_CURSOR_MAC:]
        if not hmac.compare_digest(mac, _cursor_mac(body, search)):
            raise ValueError("forged, or of another process")
        raw = body.decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ApiError(400, "bad_cursor", "the cursor is not one this API process gave for "
                       "this search: start the list again") from None  # fmt: skip
    found, _, rest = raw.partition(":")
    numbers = rest.split(":")
    # Exactly what encode_cursor writes: digits that fit the stores' 64-bit row positions
    # (int() would also take " 5", "+5", "1_0" and numbers no column can hold).
    if len(numbers) > 2 or not all(
        n.isascii() and n.isdigit() and len(n) <= _MAX_CURSOR_DIGITS for n in numbers
    ):
        raise ApiError(400, "bad_cursor", "the cursor is not one this API gave")
    if found != kind:
        raise ApiError(400, "bad_cursor", "the cursor is not one of this list")
    return [int(n) for n in numbers]


def decode_cursor(kind: str, text: str, search: str = "") -> int:
    numbers = _cursor_numbers(kind, text, search)
    if len(numbers) != 1:
        raise ApiError(400, "bad_cursor", "the cursor is not one this API gave")
    return numbers[0]


def decode_endpoint_cursor(text: str, search: str) -> tuple[int, int]:
    """(position, rows examined so far) of an endpoint list's cursor."""
    numbers = _cursor_numbers("e", text, search)
    return numbers[0], numbers[1] if len(numbers) == 2 else 0


def _search_of(query: EndpointQuery) -> str:
    """What an endpoint search's cursors are bound to: its filters, not its page."""
    return repr(dataclasses.replace(query, before=None, examined=0, limit=0, scan_limit=None))


# -- reading requests ------------------------------------------------------------------------


def _bad(field: str, message: str) -> ApiError:
    return ApiError(400, "invalid_parameter", f"{field}: {message}", field=field)


def text_of(field: str, value: str) -> str:
    """The API's one rule for every string it is given (a query or path parameter, a JSON
    field): text a store can keep (actions.checked_text), so that PostgreSQL and SQLite
    answer the same 400 (a NUL was a 503 from PostgreSQL)."""
    try:
        return actions.checked_text(value)
    except ValueError as exc:
        raise _bad(field, str(exc)) from None


def query_text(request: web.Request, name: str) -> str | None:
    """A query parameter, by the API's rule for text; None when absent."""
    value = request.query.get(name)
    return None if value is None else text_of(name, value)


def path_text(request: web.Request, name: str) -> str:
    """A path parameter (``{token}``, ``{id}``...), by the API's rule for text."""
    return text_of(name, request.match_info[name])


def _query_int(
    request: web.Request, name: str, low: int, high: int, default: int | None
) -> int | None:
    text = query_text(request, name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise _bad(name, "an integer") from None
    if not low <= value <= high:
        raise _bad(name, f"from {low} to {high}")
    return value


async def _body(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "send application/json")
    try:
        body = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: [[[[...
        raise ApiError(400, "invalid_json", "the body is not JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "the body is not a JSON object")
    return body


def _field(
    body: dict[str, Any], name: str, kind: type | tuple[type, ...], *, required: bool = False
) -> Any:
    if name not in body:
        if required:
            raise _bad(name, "required")
        return None
    value = body[name]
    # bool is an int in Python: a JSON true is not a number here.
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
        raise _bad(name, f"wrong type ({type(value).__name__})")
    if isinstance(value, str):
        text_of(name, value)  # (JSON lets "\u0000" and a lone "\ud800" through)
    return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _text(body: dict[str, Any], name: str, limit: int, *, required: bool = False) -> str | None:
    value: str | None = _field(body, name, str, required=required)
    if value is not None and not 0 < len(value) <= limit:
        raise _bad(name, f"1 to {limit} characters")
    return value


T = TypeVar("T")


def _checked(
    body: dict[str, Any], key: str, kind: type[T], rule: Callable[[T], T], *, required: bool = False
) -> T | None:
    """``body[key]`` of ``kind`` (None when absent), held to the CLI's own ``rule``."""
    value: T | None = _field(body, key, kind, required=required)
    if value is None:
        return None
    try:
        return rule(value)
    except ValueError as exc:
        raise _bad(key, str(exc)) from None


def _name(body: dict[str, Any], *, required: bool = False) -> str | None:
    return _checked(body, "name", str, actions.checked_name, required=required)


def _topics(body: dict[str, Any]) -> tuple[Topic, ...] | None:
    value = _field(body, "topics", list)
    if value is None:
        return None
    topics = []
    for item in value:
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("id"), int)
            or isinstance(item.get("id"), bool)
            or not isinstance(item.get("name"), str)
        ):
            raise _bad("topics", 'a list of {"id": integer, "name": string}')
        try:
            topics.append(actions.checked_topic(item["id"], item["name"]))
        except ValueError as exc:
            raise _bad("topics", str(exc)) from None
    try:
        return actions.checked_topics(tuple(topics))
    except ValueError as exc:
        raise _bad("topics", str(exc)) from None


def _balancing(body: dict[str, Any]) -> Balancing | None:
    value = _field(body, "balancing", str)
    if value is None:
        return None
    try:
        return Balancing(value)
    except ValueError:
        raise _bad("balancing", "one of " + ", ".join(b.value for b in Balancing)) from None


def _config(body: dict[str, Any]) -> bytes | None:
    value = _text(body, "config", _MAX_CONFIG)
    return None if value is None else value.encode()


def _version(body: dict[str, Any]) -> int | None:
    return _checked(body, "config_version", int, actions.checked_config_version)


def _default(value: T | None, default: T) -> T:
    return default if value is None else value


def _bootstrap_servers(body: dict[str, Any]) -> list[tuple[str, int]]:
    """``"bootstrap_servers": ["host:port", ...]``, as the CLI's ``--bootstrap``."""
    value = _field(body, "bootstrap_servers", list) or []
    servers = []
    for item in value:
        host, sep, port = item.rpartition(":") if isinstance(item, str) else ("", "", "")
        if not sep or not host or not port.isascii() or not port.isdigit() or len(port) > 5:
            raise _bad("bootstrap_servers", 'a list of "HOST:PORT"')
        try:
            servers.append(actions.checked_bootstrap_server(host, int(port)))
        except ValueError as exc:
            raise _bad("bootstrap_servers", str(exc)) from None
    return servers


def endpoint_id_of(text: str) -> bytes:
    if len(text) != 40 or not _HEX.fullmatch(text.lower()):
        raise ApiError(400, "invalid_parameter", "an endpoint id is 40 hex digits", field="id")
    return bytes.fromhex(text)


def _field_match(request: web.Request) -> FieldMatch | None:
    """``profile_field=a.b`` and ``profile_value=JSON``: docs/console.md, "The API"."""
    # Empty counts as absent, as for the other filters (a search form sends every field).
    path = query_text(request, "profile_field") or None
    value = query_text(request, "profile_value") or None
    if path is None and value is None:
        return None
    if path is None or value is None:
        name = "profile_field" if path is None else "profile_value"
        raise _bad(name, "profile_field and profile_value go together")
    keys = tuple(path.split("."))
    if len(keys) > _MAX_FIELD_DEPTH or not all(_FIELD_KEY.fullmatch(k) for k in keys):
        raise _bad("profile_field", f"up to {_MAX_FIELD_DEPTH} keys joined by '.', each "
                   "1 to 64 of A-Z a-z 0-9 _ -")  # fmt: skip
    if len(value) > _MAX_PROFILE_QUERY:
        raise _bad("profile_value", f"at most {_MAX_PROFILE_QUERY} characters")
    try:
        parsed = json.loads(value, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        parsed = _NOT_SCALAR
    if isinstance(parsed, float) and not math.isfinite(parsed):  # 1e999
        parsed = _NOT_SCALAR
    if isinstance(parsed, int) and not isinstance(parsed, bool) and abs(parsed) >= 2**63:
        parsed = _NOT_SCALAR
    # "\ud800" no store can encode; "\u0000" jsonb refuses (and no profile holds it).
    if isinstance(parsed, str) and not _keeps(parsed):
        parsed = _NOT_SCALAR
    if parsed is _NOT_SCALAR or isinstance(parsed, (list, dict)):
        raise _bad("profile_value", 'one JSON value: "text", a number (64-bit), true, '
                   "false or null")  # fmt: skip
    return FieldMatch(keys, parsed)


def _keeps(text: str) -> bool:
    try:
        actions.checked_text(text)
    except ValueError:
        return False
    return True


def _no_constant(name: str) -> object:
    raise ValueError(name)  # NaN, Infinity: not JSON


def audit_doc(e: AuditEntry) -> dict[str, Any]:
    return {
        "seq": e.seq,
        "at_ms": e.at_ms,
        "actor": e.actor,
        "action": e.action,
        "subject": e.subject,
        "detail": e.detail,
    }


def _identity(request: web.Request) -> Identity:
    return request[IDENTITY]


# -- the API -----------------------------------------------------------------------------------


class Api:
    def __init__(
        self,
        store: RegistryStore,
        settings: Settings,
        datadir: DataDir,
        sampler: Sampler,
        bootstrap: Callable[[], tuple[str, int]],
    ) -> None:
        #: The Bootstrap an SDK export names by default (host, port).
        self.bootstrap_address = bootstrap
        self.store = store
        self.settings = settings
        self.datadir = datadir
        self.sampler = sampler

    def routes(self) -> list[web.RouteDef]:
        p = PREFIX
        return [
            web.get(f"{p}/me", self.me),
            web.get(f"{p}/dashboard", self.dashboard),
            web.get(f"{p}/apps", self.app_list),
            web.post(f"{p}/apps", self.app_create),
            web.get(f"{p}/apps/{{token}}", self.app_show),
            web.patch(f"{p}/apps/{{token}}", self.app_update),
            web.get(f"{p}/apps/{{token}}/sdk-tokens", self.sdk_list),
            web.post(f"{p}/apps/{{token}}/sdk-tokens", self.sdk_create),
            web.post(f"{p}/apps/{{token}}/sdk-tokens/{{sha256}}/revoke", self.sdk_revoke),
            web.post(f"{p}/apps/{{token}}/sdk-export", self.sdk_export),
            web.get(f"{p}/endpoints", self.endpoint_list),
            web.get(f"{p}/endpoints/{{id}}", self.endpoint_show),
            web.post(f"{p}/endpoints/{{id}}/revoke", self.endpoint_revoke),
            web.post(f"{p}/endpoints/{{id}}/reinstate", self.endpoint_reinstate),
            web.get(f"{p}/nodes", self.nodes),
            web.get(f"{p}/audit", self.audit),
            web.get(f"{p}/bootstrap", self.bootstrap),
            web.get(f"{p}/credentials", self.credentials),
        ]

    # -- who, and what is happening ----------------------------------------------------------

    async def me(self, request: web.Request) -> web.Response:
        who = _identity(request)
        doc: dict[str, Any] = {"name": who.name, "role": str(who.role), "via": who.via}
        if who.session is not None:
            doc["csrf_token"] = who.session.csrf  # for scripts of the console's own pages
        return web.json_response(doc)

    async def dashboard(self, request: web.Request) -> web.Response:
        now = wall_ms()
        nodes = []
        for node in await self.store.list_nodes():
            doc = node_doc(node, now)
            doc["lease_age_ms"] = now - node.renewed_ms
            nodes.append(doc)
        return web.json_response({**self.sampler.document(), "nodes": nodes})

    async def nodes(self, request: web.Request) -> web.Response:
        now = wall_ms()
        nodes = await self.store.list_nodes()
        return web.json_response({"items": [node_doc(n, now) for n in nodes]})

    # -- applications ---------------------------------------------------------------------------

    async def app_list(self, request: web.Request) -> web.Response:
        apps = await self.store.list_applications()
        return web.json_response({"items": [app_doc(a) for a in apps]})

    async def app_show(self, request: web.Request) -> web.Response:
        app = await actions.existing_application(self.store, path_text(request, "token"))
        count = len(await self.store.list_sdk_tokens(app.token))
        return web.json_response(app_doc(app, count))

    async def app_create(self, request: web.Request) -> web.Response:
        doc = await self.create_app(_identity(request), await _body(request))
        return web.json_response(doc, status=201)

    def _check_state(self, config: bytes, topics: tuple[Topic, ...]) -> None:
        try:
            actions.checked_state(config, topics, self.settings.max_frame_size)
        except ValueError as exc:
            raise ApiError(400, "invalid_parameter", str(exc), field="config") from None

    async def create_app(self, who: Identity, body: dict[str, Any]) -> dict[str, Any]:
        name = _name(body, required=True)
        cached = _field(body, "cached_signature", bool)
        assert name is not None
        config, topics = _config(body) or b"{}", _topics(body) or ()
        self._check_state(config, topics)
        app = await actions.create_application(
            self.store,
            name=name,
            config=config,
            config_version=_default(_version(body), 1),
            topics=topics,
            balancing=_balancing(body) or Balancing.STATIC,
            cached_signature=bool(cached),
            who=who.actor,
        )
        return app_doc(app, 0)

    async def app_update(self, request: web.Request) -> web.Response:
        body = await _body(request)
        changes = ApplicationChanges(
            name=_name(body),
            config=_config(body),
            config_version=_version(body),
            topics=_topics(body),
            balancing=_balancing(body),
            cached_signature=_field(body, "cached_signature", bool),
        )
        if changes == ApplicationChanges():
            raise ApiError(400, "nothing_to_change", "give at least one field to change")
        token = path_text(request, "token")
        app = await actions.existing_application(self.store, token)
        try:
            actions.checked_next_version(app, changes)
        except ValueError as exc:
            raise _bad("config_version", str(exc)) from None
        audit = actions.application_audit(wall_ms(), _identity(request).actor, "app.update",
                                          app, changed(changes))  # fmt: skip
        check = actions.update_check(self.settings.max_frame_size)
        try:
            updated = await self.store.update_application(token, changes, audit, check)
        except Refused as exc:
            raise ApiError(400, "invalid_parameter", str(exc), field="config") from None
        return web.json_response(app_doc(updated))

    # -- SDK tokens ---------------------------------------------------------------------------

    async def sdk_list(self, request: web.Request) -> web.Response:
        app = await actions.existing_application(self.store, path_text(request, "token"))
        tokens = await self.store.list_sdk_tokens(app.token)
        return web.json_response({"items": [sdk_token_doc(t) for t in tokens]})

    async def sdk_create(self, request: web.Request) -> web.Response:
        doc = await self.create_sdk_token(_identity(request), path_text(request, "token"))
        return web.json_response(doc, status=201)

    async def create_sdk_token(self, who: Identity, app_token: str) -> dict[str, Any]:
        token = await actions.create_sdk_token(self.store, app_token, who.actor)
        found = await self.store.find_sdk_token(actions.sdk_token_hash(token))
        assert found is not None
        # The token itself appears in this answer only: the store keeps its SHA-256.
        return {**sdk_token_doc(found), "sdk_token": token}

    async def sdk_revoke(self, request: web.Request) -> web.Response:
        who, token = _identity(request), path_text(request, "token")
        sha256 = path_text(request, "sha256")
        return web.json_response(await self.revoke_sdk_token(who, token, sha256))

    async def revoke_sdk_token(self, who: Identity, app_token: str, sha256: str) -> dict[str, Any]:
        app = await actions.existing_application(self.store, app_token)
        text = sha256.lower()
        if len(text) != 64 or not _HEX.fullmatch(text):
            raise _bad("sha256", "64 hex digits")
        found = await self.store.find_sdk_token(bytes.fromhex(text))
        if found is None or found.application != app.token:
            raise NotFound("no such SDK token of this application")
        audit = actions.application_audit(wall_ms(), who.actor, "sdk.revoke", app, text[:16])
        return sdk_token_doc(await self.store.revoke_sdk_token(found.token_hash, audit))

    @reads_only
    async def sdk_export(self, request: web.Request) -> web.Response:
        """The SDK configuration (``sdk.json``, or ``sdk.h`` with ``"format": "header"``);
        a POST so that the SDK token travels in the body, never in a URL or a log."""
        return await self.export(path_text(request, "token"), await _body(request))

    async def export(self, app_token: str, body: dict[str, Any]) -> web.Response:
        app = await actions.existing_application(self.store, app_token)
        sdk_token = _text(body, "sdk_token", 200, required=True)
        form = _field(body, "format", str) or "json"
        if form not in ("json", "header"):
            raise _bad("format", "json or header")
        assert sdk_token is not None
        if not sdk_token.isascii():  # (tokens are URL-safe base64; the hash takes ASCII)
            raise _bad("sdk_token", "an SDK token is ASCII")
        found = await self.store.find_sdk_token(actions.sdk_token_hash(sdk_token))
        if found is None or found.application != app.token:
            raise NotFound("that SDK token does not belong to this application")
        servers = _bootstrap_servers(body) or [self.bootstrap_address()]
        keyring = self.datadir.keyring()
        config = build_sdk_config(
            app, sdk_token, servers, keyring.public_key_pem, keyring.generation,
            self.settings.max_frame_size,
        )  # fmt: skip
        if form == "header":
            text, name, kind = c_header(config), "sdk.h", "text/x-c"
        else:
            text, name, kind = config.to_json(), "sdk.json", "application/json"
        return web.Response(
            text=text, content_type=kind,
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )  # fmt: skip

    # -- endpoints ------------------------------------------------------------------------------

    def endpoint_query(self, request: web.Request) -> EndpointQuery:
        """The search a request's query string asks for (the API's and the pages')."""
        prefix = (query_text(request, "id_prefix") or "").lower() or None
        if prefix is not None and (len(prefix) > 40 or not _HEX.fullmatch(prefix)):
            raise _bad("id_prefix", "up to 40 hex digits")
        status = query_text(request, "status") or None
        if status is not None and status not in {s.value for s in EndpointStatus}:
            raise _bad("status", "active or revoked")
        profile = query_text(request, "profile") or None
        if profile is not None and len(profile) > _MAX_PROFILE_QUERY:
            raise _bad("profile", f"at most {_MAX_PROFILE_QUERY} characters")
        limit = _query_int(request, "limit", 1, MAX_PAGE, DEFAULT_PAGE)
        assert limit is not None
        query = EndpointQuery(
            id_prefix=prefix,
            application=query_text(request, "application") or None,
            status=status,
            since_ms=_query_int(request, "since_ms", 0, 2**63 - 1, None),
            profile_contains=profile.encode() if profile else None,
            profile_field=_field_match(request),
            limit=limit,
            scan_limit=_query_int(request, "scan_rows", 1, SCAN_ROWS, None),
        )
        cursor = query_text(request, "cursor")
        if cursor is None:
            return query
        before, examined = decode_endpoint_cursor(cursor, _search_of(query))
        return dataclasses.replace(query, before=before, examined=examined)

    async def endpoint_list(self, request: web.Request) -> web.Response:
        return web.json_response(await self.endpoint_page(self.endpoint_query(request)))

    async def endpoint_page(self, query: EndpointQuery) -> dict[str, Any]:
        page = await self.store.search_endpoints(query)
        scan = None
        if page.examined is not None:
            scan = {"examined": page.examined, "window": query.window}
        return {
            "items": [endpoint_doc(e) for _, e in page.rows],
            "next_cursor": None if page.next_before is None
            else encode_cursor("e", page.next_before, page.examined, search=_search_of(query)),
            "scan": scan,
        }

    async def endpoint_show(self, request: web.Request) -> web.Response:
        endpoint_id = endpoint_id_of(path_text(request, "id"))
        endpoint = await self.store.get_endpoint(endpoint_id)
        if endpoint is None:
            raise NotFound("no such endpoint")
        return web.json_response(endpoint_doc(endpoint, with_profile=True))

    async def _revocation(self, request: web.Request, revoke: bool) -> web.Response:
        endpoint_id = endpoint_id_of(path_text(request, "id"))
        reason = ""
        if request.body_exists:
            reason = _text(await _body(request), "reason", _MAX_REASON) or ""
        doc = await self.set_revoked(_identity(request), endpoint_id, reason, revoke)
        return web.json_response(doc)

    async def set_revoked(
        self, who: Identity, endpoint_id: bytes, reason: str, revoke: bool
    ) -> dict[str, Any]:
        action = "endpoint.revoke" if revoke else "endpoint.reinstate"
        audit = AuditEntry(wall_ms(), who.actor, action, endpoint_id.hex(), reason)
        change: Callable[..., Any] = (
            self.store.revoke_endpoint if revoke else self.store.reinstate_endpoint
        )
        return endpoint_doc(await change(endpoint_id, audit))

    async def endpoint_revoke(self, request: web.Request) -> web.Response:
        return await self._revocation(request, True)

    async def endpoint_reinstate(self, request: web.Request) -> web.Response:
        return await self._revocation(request, False)

    # -- the rest -------------------------------------------------------------------------------

    async def audit(self, request: web.Request) -> web.Response:
        subject = query_text(request, "subject") or None
        cursor = query_text(request, "cursor")
        limit = _query_int(request, "limit", 1, MAX_PAGE, DEFAULT_PAGE)
        assert limit is not None
        before = None if cursor is None else decode_cursor("a", cursor, subject or "")
        return web.json_response(await self.audit_page(subject, before, limit))

    async def audit_page(
        self, subject: str | None, before: int | None, limit: int
    ) -> dict[str, Any]:
        entries = await self.store.search_audit(subject, before, limit)
        more = len(entries) == limit
        return {
            "items": [audit_doc(e) for e in entries],
            "next_cursor": encode_cursor("a", entries[-1].seq, search=subject or "")
            if entries and more
            else None,
        }

    async def bootstrap(self, request: web.Request) -> web.Response:
        return web.json_response(keyring_doc(self.datadir.keyring(), self.datadir))

    async def credentials(self, request: web.Request) -> web.Response:
        found = await self.store.list_credentials()
        return web.json_response({"items": [credential_doc(c) for c in found]})
