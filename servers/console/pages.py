"""The console's pages: server-rendered Jinja2 (autoescaped), forms that work without
JavaScript, and two small scripts (static/) that show times in the browser's zone and
keep the dashboard live. Every change goes through the same Api method the JSON API
calls, behind a confirmation page where it cannot be undone at a click.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from servers.console.api import (
    Api,
    decode_cursor,
    endpoint_id_of,
    path_text,
    query_text,
    text_of,
)
from servers.console.auth import COOKIE, IDENTITY, Auth, Identity, reads_only
from servers.console.devices import DEVICE_COOKIE
from servers.console.errors import PAGE_ERROR, ApiError, read_form
from servers.control import actions
from servers.control.documents import endpoint_doc
from servers.store.base import NotFound

__all__ = ["Pages"]

_HERE = Path(__file__).parent


def _iso(ms: int | None) -> str:
    if ms is None:
        return ""
    moment = datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _form_text(form: Any, name: str) -> str:
    """A form field, by the API's rule for text (a NUL was a 503 from PostgreSQL)."""
    value = form.get(name, "")
    return text_of(name, value.strip()) if isinstance(value, str) else ""


class Pages:
    def __init__(self, api: Api, auth: Auth) -> None:
        self.api = api
        self.auth = auth
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(_HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.env.filters["iso"] = _iso

    def install(self, app: web.Application) -> None:
        app[PAGE_ERROR] = self.error_page
        app.router.add_static("/static/", _HERE / "static", append_version=False)
        app.add_routes(
            [
                web.get("/login", self.login_form),
                web.post("/login", self.login),
                web.post("/logout", self.logout),
                web.get("/", self.dashboard),
                web.get("/endpoints", self.endpoints),
                web.get("/endpoints/{id}", self.endpoint),
                web.get("/endpoints/{id}/{action:revoke|reinstate}", self.confirm_endpoint),
                web.post("/endpoints/{id}/{action:revoke|reinstate}", self.change_endpoint),
                web.get("/apps", self.apps),
                web.post("/apps", self.create_app),
                web.get("/apps/{token}", self.app),
                web.post("/apps/{token}/sdk-tokens", self.create_sdk_token),
                web.get("/apps/{token}/sdk-tokens/{sha256}/revoke", self.confirm_sdk_revoke),
                web.post("/apps/{token}/sdk-tokens/{sha256}/revoke", self.revoke_sdk_token),
                web.post("/apps/{token}/sdk-export", self.sdk_export),
                web.get("/audit", self.audit),
            ]
        )

    # -- rendering ------------------------------------------------------------------------------

    def render(
        self, request: web.Request, template: str, status: int = 200, **context: Any
    ) -> web.Response:
        identity: Identity | None = request.get(IDENTITY)
        html = self.env.get_template(template).render(
            me=identity,
            csrf=identity.session.csrf if identity and identity.session else "",
            path=request.path,
            **context,
        )
        return web.Response(text=html, content_type="text/html", status=status)

    def error_page(self, request: web.Request, error: ApiError) -> web.Response:
        return self.render(request, "error.html", status=error.status, error=error)

    # -- logging in -----------------------------------------------------------------------------

    async def login_form(self, request: web.Request) -> web.Response:
        return self.render(request, "login.html", failed=False)

    async def login(self, request: web.Request) -> web.StreamResponse:
        form = await read_form(request)
        name, password = _form_text(form, "name"), form.get("password", "")
        if isinstance(password, str):  # (not stripped: a password is as typed)
            password = text_of("password", password)
        session = None
        if name and isinstance(password, str) and password and len(password) <= 1024:
            session = await self.auth.login(
                name, password, request.remote, request.cookies.get(DEVICE_COOKIE)
            )
        if session is None:
            return self.render(request, "login.html", status=401, failed=True)
        response = web.HTTPSeeOther("/")
        self.auth.set_cookie(response, session)
        return response

    @reads_only
    async def logout(self, request: web.Request) -> web.StreamResponse:
        self.auth.sessions.drop(request.cookies.get(COOKIE, ""))
        response = web.HTTPSeeOther("/login")
        self.auth.clear_cookie(response)
        return response

    # -- pages ----------------------------------------------------------------------------------

    async def dashboard(self, request: web.Request) -> web.Response:
        return self.render(request, "dashboard.html", figures=self.api.sampler.document())

    async def endpoints(self, request: web.Request) -> web.Response:
        try:
            query = self.api.endpoint_query(request)
        except ApiError as exc:
            return self.render(request, "endpoints.html", status=400, page=None,
                               error=exc.message, q=request.query)  # fmt: skip
        page = await self.api.endpoint_page(query)
        return self.render(request, "endpoints.html", page=page, error=None, q=request.query)

    async def endpoint(self, request: web.Request) -> web.Response:
        endpoint_id = endpoint_id_of(request.match_info["id"])
        endpoint = await self.api.store.get_endpoint(endpoint_id)
        if endpoint is None:
            raise NotFound("no such endpoint")
        history = await self.api.audit_page(endpoint_id.hex(), None, 50)
        return self.render(request, "endpoint.html", e=endpoint_doc(endpoint, with_profile=True),
                           history=history["items"])  # fmt: skip

    async def confirm_endpoint(self, request: web.Request) -> web.Response:
        endpoint_id = endpoint_id_of(request.match_info["id"])
        action = request.match_info["action"]
        return self.render(request, "confirm.html", action=action, subject=endpoint_id.hex(),
                           target=request.path, back=f"/endpoints/{endpoint_id.hex()}",
                           reason=True)  # fmt: skip

    async def change_endpoint(self, request: web.Request) -> web.StreamResponse:
        endpoint_id = endpoint_id_of(request.match_info["id"])
        form = await read_form(request)
        reason = _form_text(form, "reason")[:500]
        revoke = request.match_info["action"] == "revoke"
        await self.api.set_revoked(request[IDENTITY], endpoint_id, reason, revoke)
        raise web.HTTPSeeOther(f"/endpoints/{endpoint_id.hex()}")

    async def apps(self, request: web.Request) -> web.Response:
        apps = await self.api.store.list_applications()
        return self.render(request, "apps.html", apps=apps)

    async def create_app(self, request: web.Request) -> web.StreamResponse:
        form = await read_form(request)
        body: dict[str, Any] = {"name": _form_text(form, "name")}
        for field in ("config", "balancing"):
            if _form_text(form, field):
                body[field] = _form_text(form, field)
        body["cached_signature"] = form.get("cached_signature") == "on"
        doc = await self.api.create_app(request[IDENTITY], body)
        raise web.HTTPSeeOther(f"/apps/{doc['token']}")

    async def app(
        self, request: web.Request, new_token: dict[str, Any] | None = None
    ) -> web.Response:
        app = await actions.existing_application(self.api.store, path_text(request, "token"))
        tokens = await self.api.store.list_sdk_tokens(app.token)
        return self.render(request, "app.html", app=app, tokens=tokens, new_token=new_token)

    async def create_sdk_token(self, request: web.Request) -> web.Response:
        doc = await self.api.create_sdk_token(request[IDENTITY], path_text(request, "token"))
        # Shown on this answer only; reloading the page does not show it again.
        return await self.app(request, new_token=doc)

    async def confirm_sdk_revoke(self, request: web.Request) -> web.Response:
        token, sha = request.match_info["token"], request.match_info["sha256"]
        return self.render(request, "confirm.html", action="revoke SDK token", subject=sha[:16],
                           target=request.path, back=f"/apps/{token}", reason=False)  # fmt: skip

    async def revoke_sdk_token(self, request: web.Request) -> web.StreamResponse:
        token = path_text(request, "token")
        await self.api.revoke_sdk_token(request[IDENTITY], token, path_text(request, "sha256"))
        raise web.HTTPSeeOther(f"/apps/{token}")

    @reads_only
    async def sdk_export(self, request: web.Request) -> web.Response:
        form = await read_form(request)
        body = {"sdk_token": _form_text(form, "sdk_token"), "format": _form_text(form, "format")}
        return await self.api.export(path_text(request, "token"), body)

    async def audit(self, request: web.Request) -> web.Response:
        cursor, subject = query_text(request, "cursor"), query_text(request, "subject") or None
        before = None if cursor is None else decode_cursor("a", cursor, subject or "")
        page = await self.api.audit_page(subject, before, 50)
        return self.render(request, "audit.html", page=page)
