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
  wrong passwords cannot hold that slot; a browser that logged in under the name before
  is held only by its own failures (a device cookie, devices.py).
* Which credential a request carries, when this process knows it, cheaply and without
  the store (:meth:`Auth.credential`): the admin port's request budget gives each its
  own bucket. The live API keys are loaded at start, so a key is known from its first
  request.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import logging
import math
import secrets
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import web

from servers import logs
from servers.admin import Buckets, client_key
from servers.clock import wall_ms
from servers.console.devices import DEVICE_COOKIE, DeviceCookies
from servers.console.devices import LIFETIME_S as DEVICE_LIFETIME_S
from servers.console.errors import ApiError, read_form
from servers.console.lockout import FailedLogins
from servers.control.credentials import api_key_hash, api_key_matches, verify_password
from servers.limits import Gate
from servers.metrics import Counter
from servers.store.base import AuditEntry, RegistryStore
from servers.store.console import CredentialKind, Role
from servers.tasks import cancel_and_wait

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
#: API keys (their hashes) this process knows live, for :meth:`Auth.credential`.
MAX_KNOWN_KEYS = 1024
#: Logins from trusted browsers, per name: a burst, then this many a minute.
TRUSTED_LOGIN_BURST = 5
TRUSTED_LOGINS_PER_MIN = 6
#: How often the live API keys are read again from the store (a key made by the CLI
#: counts as anonymous until then, or until its first request is checked).
KEYS_RELOAD_S = 5.0


@dataclasses.dataclass(slots=True)
class Session:
    sid: str
    name: str
    csrf: str
    created: float
    used: float
    #: The id of the device cookie this login presented for its name (devices.py), if any.
    device: str | None = None


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

    def new(self, name: str, device: str | None = None) -> Session:
        now = time.monotonic()
        session = Session(
            secrets.token_urlsafe(32), name, secrets.token_urlsafe(32), now, now, device
        )
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

    def owner(self, sid: str) -> str | None:
        """The name whose live session ``sid`` is (without counting as a use), or None."""
        session = self._by_id.get(sid)
        if session is None:
            return None
        now = time.monotonic()
        if now - session.used > IDLE_S or now - session.created > LIFETIME_S:
            return None
        return session.name

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
    def __init__(
        self, store: RegistryStore, devices: DeviceCookies, *, secure_cookie: bool
    ) -> None:
        self.store = store
        self.sessions = Sessions()
        self.devices = devices
        self.secure_cookie = secure_cookie
        self.logins = Gate("admin logins", LOGIN_SLOTS)
        #: Logins from trusted browsers (a valid device cookie for the name) have a slot of
        #: their own: a guesser's anonymous logins kept the one slot busy (round 3).
        self.trusted_logins = Gate("admin logins from trusted browsers", LOGIN_SLOTS)
        #: ...and each name takes it at most ``TRUSTED_LOGINS_PER_MIN`` times a minute: any
        #: credential holder logging in again and again kept it from the others (round 4).
        self._trusted_pace = Buckets(
            TRUSTED_LOGINS_PER_MIN / 60, FailedLogins.MAX_ENTRIES, burst=TRUSTED_LOGIN_BURST
        )
        self.failed_logins = FailedLogins()
        #: ``kaa_admin_logins_total`` (install() adds it to /metrics).
        self.login_results = Counter(
            "kaa_admin_logins_total",
            "Console logins: ok, refused (wrong name or password), limited (after too many "
            "failures), busy (the Argon2 slot taken)",
            ("result",),
        )
        #: The live API keys' hashes and names: loaded from the store at start and every
        #: ``KEYS_RELOAD_S`` (so a key's first request after a restart is known), and
        #: learned when a request's key is checked.
        self._known_keys: OrderedDict[str, str] = OrderedDict()
        self._reloading: asyncio.Task[None] | None = None
        # A refused login is a warning in the log, not an audit row: a guesser must not be
        # able to fill the audit table. Rate limited like refused connections, with counts.
        self._log = logs.get("console")
        self.refused_logins = logs.Trouble(
            self._log, "login", base_s=0.0, event="login refused", log_every_s=10.0
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
            self._know_key(digest, found.name)
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

    def credential(self, request: web.Request) -> str | None:
        """The name of the credential the request carries, when it is a live session's
        cookie or a live API key this process knows: a dictionary look-up and at most one
        SHA-256, never the store (the request budget asks before the request is let in).
        The request itself is still identified by :meth:`identify`."""
        header = request.headers.get("Authorization")
        if header is not None:
            scheme, _, key = header.partition(" ")
            if scheme.lower() != "bearer":
                return None
            return self._known_keys.get(api_key_hash(key.strip()))
        sid = request.cookies.get(COOKIE)
        owner = None if sid is None else self.sessions.owner(sid)
        if owner is None and DEVICE_COOKIE in request.cookies:
            # A login from a trusted browser (one HMAC): its name's share, not the
            # anonymous one a flood of logins spends.
            trusted = self.devices.trusted(request.cookies[DEVICE_COOKIE])
            owner = None if trusted is None else trusted.name
        return owner

    def _know_key(self, digest: str, name: str) -> None:
        self._known_keys[digest] = name
        self._known_keys.move_to_end(digest)
        while len(self._known_keys) > MAX_KNOWN_KEYS:
            self._known_keys.popitem(last=False)

    async def reload_keys(self) -> None:
        """Know the store's live API keys (revoked ones are forgotten)."""
        live = [c for c in await self.store.list_credentials()
                if c.kind == CredentialKind.API_KEY and c.live]  # fmt: skip
        self._known_keys.clear()
        for credential in live[-MAX_KNOWN_KEYS:]:
            self._know_key(credential.secret_hash, credential.name)

    async def start(self) -> None:
        self._reloading = asyncio.create_task(self._reload_keys(), name="console-keys")

    async def stop(self) -> None:
        await cancel_and_wait(self._reloading)

    async def _reload_keys(self) -> None:
        while True:
            try:
                await self.reload_keys()
            except Exception as exc:  # the store is down: keys are learned as they come
                logs.event(self._log, logging.WARNING, "API keys not loaded", error=str(exc))
            await asyncio.sleep(KEYS_RELOAD_S)

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
                token = str((await read_form(request)).get("csrf", ""))
            # (as bytes: compare_digest refuses str with non-ASCII characters, a 500, round 5)
            sent = token.encode("utf-8", "surrogateescape") if token else b""
            if not sent or not hmac.compare_digest(sent, session.csrf.encode()):
                raise ApiError(403, "csrf_refused", "missing or wrong CSRF token")
        if not identity.can_change and not _reads_only(request):
            raise ApiError(403, "forbidden", f"the {identity.role} role cannot change anything")

    # -- logging in and out -----------------------------------------------------------------

    async def login(
        self, name: str, password: str, address: str | None, device_cookie: str | None = None
    ) -> Session | None:
        """A new session for a right name and password; None otherwise (audited on success).
        ``address`` is the client's (``request.remote``) and ``device_cookie`` what its
        browser sent as :data:`DEVICE_COOKIE`, for the failed-login limits (lockout.py)."""
        client = client_key(address)
        device = self.devices.device(device_cookie, name)
        wait = self.failed_logins.locked_for(client, name, device)
        if wait > 0:
            self.login_results.inc("limited")
            raise ApiError(429, "login_limited", "too many failed logins from this address "
                           f"or for this name: retry in {math.ceil(wait)} s")  # fmt: skip
        slot = self.logins if device is None else self.trusted_logins
        if not slot.try_enter():
            self.login_results.inc("busy")
            raise ApiError(429, "busy", "too many logins at once: retry")
        # (the pace after the slot: a login refused busy must not spend its name's pace)
        if device is not None and not self._trusted_pace.take(name):
            slot.leave()
            self.login_results.inc("limited")
            raise ApiError(429, "login_limited", "too many logins for this name: retry in a "
                           "minute")  # fmt: skip
        try:
            credential = await self.store.get_credential(name)
            ok = await asyncio.to_thread(verify_password, credential, password)
        finally:
            slot.leave()
        if not ok or credential is None or credential.kind != CredentialKind.PASSWORD:
            self.failed_logins.failed(client, name, device)
            self.login_results.inc("refused")
            # Only a name that exists is logged (repr: it must not forge a log line): an
            # unknown one may be a password typed into the name field.
            known = repr(name) if credential is not None else "(not a credential)"
            self.refused_logins.failed("wrong name or password", name=known, client=client)
            return None
        self.failed_logins.succeeded(client, name, device)
        self.login_results.inc("ok")
        await self.store.add_audit(AuditEntry(wall_ms(), f"console:{name}", "admin.login", name))
        return self.sessions.new(name, device)

    def set_cookie(self, response: web.StreamResponse, session: Session) -> None:
        """The session's cookie, and the device cookie that makes this browser trusted for
        the session's name at its next logins (devices.py)."""
        response.set_cookie(
            COOKIE, session.sid, httponly=True, samesite="Strict", secure=self.secure_cookie,
            path="/", max_age=LIFETIME_S,
        )  # fmt: skip
        response.set_cookie(
            DEVICE_COOKIE, self.devices.issue(session.name, session.device),
            httponly=True, samesite="Strict", secure=self.secure_cookie, path="/login",
            max_age=DEVICE_LIFETIME_S,
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
