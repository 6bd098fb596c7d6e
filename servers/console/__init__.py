"""The admin console and the admin JSON API, on the admin port (servers/admin.py).

    auth.py       sessions, API keys, roles, CSRF
    lockout.py    failed logins and their lockouts
    devices.py    device cookies: browsers trusted for a name
    api.py        /api/v1 (openapi.py describes it)
    pages.py      the server-rendered console (templates/, static/)
    dashboard.py  the dashboard's figures, read from the /metrics text
    errors.py     JSON errors with stable codes; the security headers

docs/console.md says what was chosen and why.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable

from aiohttp import web

from servers.admin import CREDENTIAL
from servers.admin_hosts import AllowedHosts
from servers.config import Settings
from servers.console.api import Api
from servers.console.auth import Auth
from servers.console.dashboard import Sampler
from servers.console.devices import DeviceCookies
from servers.console.errors import ApiError, errors, security_headers
from servers.console.openapi import document
from servers.console.pages import Pages
from servers.datadir import DataDir
from servers.metrics import Registry
from servers.store.base import RegistryStore

__all__ = ["install", "is_loopback"]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def install(
    app: web.Application,
    *,
    store: RegistryStore,
    settings: Settings,
    datadir: DataDir,
    render_metrics: Callable[[], str],
    bootstrap: Callable[[], tuple[str, int]],
    registry: Registry | None = None,
) -> None:
    """Add the console and the API to the admin port's ``app``, and its figures
    (``kaa_admin_logins_total``) to the ``/metrics`` of ``registry``."""
    # Secure cookies unless the port is on loopback (plain HTTP there is the default;
    # anywhere else it must sit behind TLS: docs/operations.md).
    auth = Auth(
        store, DeviceCookies.of(datadir), secure_cookie=not is_loopback(settings.admin_host)
    )
    sampler = Sampler(render_metrics)
    api = Api(store, settings, datadir, sampler, bootstrap)
    pages = Pages(api, auth)
    app.middlewares.insert(0, errors)  # outermost: every refusal becomes JSON or a page
    hosts = AllowedHosts(settings.admin_host, settings.admin_allowed_hosts)
    app.middlewares.append(_host_check(hosts))
    app.middlewares.append(auth.middleware)
    app[CREDENTIAL] = auth.credential  # the request budget's bucket per credential
    if registry is not None:
        registry.add(auth.login_results)
    app.on_response_prepare.append(security_headers)
    app.add_routes(api.routes())
    spec = document()

    async def openapi(_: web.Request) -> web.Response:
        return web.json_response(spec)

    app.router.add_get("/api/v1/openapi.json", openapi)
    pages.install(app)

    async def start(_: web.Application) -> None:
        await sampler.start()
        await auth.start()

    async def stop(_: web.Application) -> None:
        await auth.stop()
        await sampler.stop()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)


#: Not checked against the allowed names: a scraper or a probe may use any.
_PROBES = frozenset({"/metrics", "/healthz", "/livez"})


def _host_check(hosts: AllowedHosts) -> Callable[..., Awaitable[web.StreamResponse]]:
    """A middleware refusing a ``Host`` the console does not answer to (admin_hosts.py)."""

    @web.middleware
    async def check(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path not in _PROBES:
            sockname = request.transport.get_extra_info("sockname") if request.transport else None
            port = sockname[1] if isinstance(sockname, tuple) else None
            if not hosts.allows(request.headers.get("Host"), port):
                raise ApiError(421, "unknown_host", "this port does not answer to that Host "
                               "name (admin_allowed_hosts)")  # fmt: skip
        return await handler(request)

    return check
