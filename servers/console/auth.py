"""Who is asking: a console session (cookie) or an API key (bearer), and what they may do.

* **Sessions** live in this process's memory, never in the store: a session id never
  touches a disk, a restart logs everyone out, and with ``--workers`` each worker's admin
  port keeps its own (a browser talks to one port). The cookie holds 256 random bits;
  it is HttpOnly, SameSite=Strict, and Secure unless the port is on loopback. A session
  lasts ``IDLE_S`` without use and ``LIFETIME_S`` at most; at most ``MAX_SESSIONS``
  exist (the oldest goes first).
* Every request re-reads its credential from the store (one indexed row), so a revoked
  credential or a changed role takes effect at the next request, in every process.
* **CSRF**: a state-changing request on a session must carry the session's CSRF token
  (``X-CSRF-Token`` or a ``csrf`` form field) and, when the browser says where it comes
  from (``Origin``, ``Sec-Fetch-Site``), come from this origin. A bearer key is not
  ambient (a browser never sends it by itself), so it needs neither.
* **Roles**: read-only may read everything; only admin may change anything.
* A password is checked with Argon2 off the event loop, at most ``LOGIN_SLOTS`` at once
  (each costs 64 MiB and ~50 ms of a core): more is refused ``429`` at once, so a login
  flood takes at most one core from the services. An address or a name with too many
  failed logins is refused at once for a while (lockout.py), so one client sending
  wrong passwords cannot hold that slot.
* Which requests carry a credential this process knows, cheaply and without the store
  (:meth:`Auth.credentialed`): the admin port's request budget keeps a share for them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import math
import secrets
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import web

from servers import logs
from servers.admin import client_key
from servers.clock import wall_ms
from servers.console.errors import ApiError
from servers.console.lockout import FailedLogins
from servers.control.credentials import api_key_hash, api_key_matches, verify_password
from servers.limits import Gate
from servers.metrics import Counter
from servers.store.base import AuditEntry, RegistryStore
from servers.store.console import AdminCredential, CredentialKind, Role

__all__ = [
    "COOKIE",
    "CSRF_HEADER",
    "Identity",
    "Sessions",
    "Auth",
    "IDENTITY",
    "reads_only",
]

COOKIE = "kaa_session"
CSRF_HEADER = "X-CSRF-Token"
IDLE_S = 30 * 60
LIFETIME_S = 12 * 3600
MAX_SESSIONS = 1000
#: Sessions one credential may hold; its oldest goes first beyond. Without it one login,
#: even a read-only one, repeated 1,000 times pushed every other user's session out.
MAX_SESSIONS_PER_NAME = 16
#: One: Argon2 is made to take a core, and on a 2-core machine two checks at once took both
#: from the services (the console review measured registrations 3x slower).
LOGIN_SLOTS = 1
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Paths anyone may ask for: the probes, the login page, the static files.
_PUBLIC = ("/healthz", "/livez", "/metrics", "/login", "/static/")
#: API keys (their hashes) this process found live lately, for :meth:`Auth.credentialed`.
MAX_KNOWN_KEYS = 256


@dataclasses.dataclass(slots=True)
class Session:
    sid: str
    name: str
    csrf: str
    created: float
    used: float


@dataclasses.dataclass(frozen=True, slots=True)
class Identity:
    name: str
    role: Role
    #: "session" (the console, a cookie) or "api-key" (a bearer key).
    via: str
    session: Session | None = None

    @property
    def actor(self) -> str:
        """Who the audit log names: the way in and the credential."""
        return f"{'console' if self.session else 'api'}:{self.name}"

    @property
    def can_change(self) -> bool:
        return self.role == Role.ADMIN


IDENTITY: web.RequestKey[Identity] = web.RequestKey("identity", Identity)


class Sessions:
    def __init__(self) -> None:
        self._by_id: OrderedDict[str, Session] = OrderedDict()

    def new(self, name: str) -> Session:
        now = time.monotonic()
        session = Session(secrets.token_urlsafe(32), name, secrets.token_urlsafe(32), now, now)
        own = [sid for sid, s in self._by_id.items() if s.name == name]  # oldest first
        for sid in own[: max(0, len(own) + 1 - MAX_SESSIONS_PER_NAME)]:
            del self._by_id[sid]
        self._by_id[session.sid] = session
        while len(self._by_id) > MAX_SESSIONS:
            self._by_id.popitem(last=False)
        return session

    def get(self, sid: str) -> Session | None:
        session = self._by_id.get(sid)
        if session is None:
            return None
        now = time.monotonic()
        if now - session.used > IDLE_S or now - session.created > LIFETIME_S:
            del self._by_id[sid]
            return None
        session.used = now
        self._by_id.move_to_end(sid)
        return session

    def live(self, sid: str) -> bool:
        """Whether ``sid`` is a session now (without counting as a use)."""
        session = self._by_id.get(sid)
        if session is None:
            return False
        now = time.monotonic()
        return now - session.used <= IDLE_S and now - session.created <= LIFETIME_S

    def drop(self, sid: str) -> None:
        self._by_id.pop(sid, None)

    def __len__(self) -> int:
        return len(self._by_id)


def _same_origin(request: web.Request) -> bool:
    """False when the browser says the request comes from another site or origin."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    if origin is not None:
        if origin == "null":
            return False
        return urllib.parse.urlsplit(origin).netloc == request.host
    return True


class Auth:
    def __init__(self, store: RegistryStore, *, secure_cookie: bool) -> None:
        self.store = store
        self.sessions = Sessions()
        self.secure_cookie = secure_cookie
        self.logins = Gate("admin logins", LOGIN_SLOTS)
        self.failed_logins = FailedLogins()
        #: ``kaa_admin_logins_total`` (install() adds it to /metrics).
        self.login_results = Counter(
            "kaa_admin_logins_total",
            "Console logins: ok, refused (wrong name or password), limited (after too many "
            "failures), busy (the Argon2 slot taken)",
            ("result",),
        )
        self._known_keys: OrderedDict[str, None] = OrderedDict()
        # A refused login is a warning in the log, not an audit row: a guesser must not be
        # able to fill the audit table. Rate limited like refused connections, with counts.
        self.refused_logins = logs.Trouble(
            logs.get("console"), "login", base_s=0.0, event="login refused", log_every_s=10.0
        )

    # -- identifying a request --------------------------------------------------------------

    async def identify(self, request: web.Request) -> Identity | None:
        header = request.headers.get("Authorization")
        if header is not None:
            scheme, _, key = header.partition(" ")
            if scheme.lower() != "bearer" or not key.strip():
                raise ApiError(401, "unauthenticated", "Authorization must be 'Bearer KEY'")
            digest = api_key_hash(key.strip())
            found = await self.store.find_api_key(digest)
            if found is None or not found.live or not api_key_matches(found, key.strip()):
                self._known_keys.pop(digest, None)
                raise ApiError(401, "unauthenticated", "unknown or revoked API key")
            self._known_keys[digest] = None
            self._known_keys.move_to_end(digest)
            while len(self._known_keys) > MAX_KNOWN_KEYS:
                self._known_keys.popitem(last=False)
            return Identity(found.name, found.role, "api-key")
        sid = request.cookies.get(COOKIE)
        if not sid:
            return None
        session = self.sessions.get(sid)
        if session is None:
            return None
        credential = await self.store.get_credential(session.name)
        if credential is None or not credential.live:
            self.sessions.drop(sid)
            return None
        return Identity(credential.name, credential.role, "session", session)

    def credentialed(self, request: web.Request) -> bool:
        """Whether the request carries a live session's cookie or an API key this process
        checked lately: a dictionary look-up and at most one SHA-256, never the store (the
        request budget asks before the request is let in). The request itself is still
        identified by :meth:`identify`."""
        header = request.headers.get("Authorization")
        if header is not None:
            scheme, _, key = header.partition(" ")
            return scheme.lower() == "bearer" and api_key_hash(key.strip()) in self._known_keys
        sid = request.cookies.get(COOKIE)
        return sid is not None and self.sessions.live(sid)

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        path = request.path
        if path.startswith(_PUBLIC):
            if request.method not in _SAFE_METHODS and not _same_origin(request):
                raise ApiError(403, "csrf_refused", "a request from another origin")
            return await handler(request)
        identity = await self.identify(request)
        if identity is None:
            if path.startswith("/api/"):
                raise ApiError(401, "unauthenticated", "log in or send 'Authorization: Bearer KEY'")
            raise web.HTTPSeeOther("/login")
        if request.method not in _SAFE_METHODS:
            await self._check_change(request, identity)
        request[IDENTITY] = identity
        return await handler(request)

    async def _check_change(self, request: web.Request, identity: Identity) -> None:
        session = identity.session
        if session is not None:
            if not _same_origin(request):
                raise ApiError(403, "csrf_refused", "a request from another origin")
            token = request.headers.get(CSRF_HEADER)
            if token is None and request.content_type == "application/x-www-form-urlencoded":
                token = str((await request.post()).get("csrf", ""))
            if not token or not hmac.compare_digest(token, session.csrf):
                raise ApiError(403, "csrf_refused", "missing or wrong CSRF token")
        if not identity.can_change and not _reads_only(request):
            raise ApiError(403, "forbidden", f"the {identity.role} role cannot change anything")

    # -- logging in and out -----------------------------------------------------------------

    async def login(self, name: str, password: str, address: str | None) -> Session | None:
        """A new session for a right name and password; None otherwise (audited on success).
        ``address`` is the client's (``request.remote``), for the failed-login limits."""
        client = client_key(address)
        wait = self.failed_logins.locked_for(client, name)
        if wait > 0:
            self.login_results.inc("limited")
            raise ApiError(429, "login_limited", "too many failed logins from this address "
                           f"or for this name: retry in {math.ceil(wait)} s")  # fmt: skip
        if not self.logins.try_enter():
            self.login_results.inc("busy")
            raise ApiError(429, "busy", "too many logins at once: retry")
        try:
            credential: AdminCredential | None = await self.store.get_credential(name)
            ok = await asyncio.to_thread(verify_password, credential, password)
        finally:
            self.logins.leave()
        if not ok or credential is None or credential.kind != CredentialKind.PASSWORD:
            self.failed_logins.failed(client, name)
            self.login_results.inc("refused")
            # (repr: the name is the requester's text; it must not forge a log line)
            self.refused_logins.failed("wrong name or password", name=repr(name[:64]))
            return None
        self.failed_logins.succeeded(client, name)
        self.login_results.inc("ok")
        await self.store.add_audit(AuditEntry(wall_ms(), f"console:{name}", "admin.login", name))
        return self.sessions.new(name)

    def set_cookie(self, response: web.StreamResponse, session: Session) -> None:
        response.set_cookie(
            COOKIE, session.sid, httponly=True, samesite="Strict", secure=self.secure_cookie,
            path="/", max_age=LIFETIME_S,
        )  # fmt: skip

    def clear_cookie(self, response: web.StreamResponse) -> None:
        response.del_cookie(COOKIE, path="/")


H = TypeVar("H", bound=Callable[..., Awaitable[web.StreamResponse]])


def reads_only(handler: H) -> H:
    """Mark a POST handler that changes nothing in the registry (a download whose secret
    is kept out of the URL, logging out): a read-only credential may use it."""
    handler.reads_only = True  # type: ignore[attr-defined]
    return handler


def _reads_only(request: web.Request) -> bool:
    return bool(getattr(request.match_info.handler, "reads_only", False))
