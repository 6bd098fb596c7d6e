"""Errors as JSON with a stable code, and the headers every admin answer carries.

An API client reads ``{"error": {"code": ..., "message": ...}}``; the codes are the
contract (docs/console.md lists them, the OpenAPI document names them); messages are for
people and may change. A console page gets the same facts as a small HTML page.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from servers import logs
from servers.store.base import AlreadyExists, NotFound, Refused, StoreBusy, StoreError

__all__ = ["ApiError", "errors", "security_headers", "CSP", "error_body", "read_form"]

_log = logging.getLogger("servers.console")
#: A store failure is answered 503; it is logged too (rate limited, with counts), or a
#: real fault would look like nothing but an outage to the operator (round 4).
_store_trouble = logs.Trouble(_log, "store", base_s=0.0, event="store failed", log_every_s=10.0)

#: No inline script or style anywhere: every script and sheet is a file under /static/.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'"
)

#: aiohttp's HTTP errors (raised before or around a handler) -> our codes.
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "timeout",
    413: "body_too_large",
    415: "unsupported_media_type",
    429: "busy",
    503: "unavailable",
}


class ApiError(Exception):
    """A refusal with an HTTP status and a stable code."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def _from_exception(exc: BaseException) -> ApiError | None:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, NotFound):
        return ApiError(404, "not_found", str(exc))
    if isinstance(exc, AlreadyExists):
        return ApiError(409, "conflict", str(exc))
    if isinstance(exc, StoreBusy):
        return ApiError(503, "busy", "the store is busy: retry")
    if isinstance(exc, Refused):
        return ApiError(400, "invalid_parameter", str(exc))
    if isinstance(exc, StoreError):
        _store_trouble.failed(exc)
        return ApiError(503, "store_unavailable", "the store cannot be reached")
    if isinstance(exc, web.HTTPException) and exc.status >= 400:
        code = _HTTP_CODES.get(exc.status, "error")
        message = exc.reason if exc.text is None else exc.text.strip()
        return ApiError(exc.status, code, message)
    return None


async def read_form(request: web.Request) -> Any:
    """The request's form (aiohttp's ``post()``); a body it cannot read (a multipart
    without its boundary, an unknown charset) is 400, not a 500 with an ERROR line
    (round 4)."""
    try:
        return await request.post()
    except (ValueError, LookupError):
        raise ApiError(400, "bad_request", "a form body that cannot be read") from None


def _answer(request: web.Request, error: ApiError) -> web.Response:
    if request.path.startswith("/api/"):
        return web.json_response(
            error_body(error.code, error.message, **error.extra), status=error.status
        )
    render = request.app.get(PAGE_ERROR)
    if render is not None:
        return render(request, error)
    return web.Response(status=error.status, text=f"{error.code}: {error.message}\n")


#: An app key: how the console renders an error page (pages.py sets it).
PAGE_ERROR: web.AppKey[Callable[[web.Request, ApiError], web.Response]] = web.AppKey(
    "page_error", object  # type: ignore[arg-type]
)


@web.middleware
async def errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects
        error = _from_exception(exc)
        assert error is not None
        return _answer(request, error)
    except Exception as exc:
        error = _from_exception(exc)
        if error is None:
            logs.event(_log, logging.ERROR, "admin request failed", path=request.path,
                       error=repr(exc))  # fmt: skip
            error = ApiError(500, "internal", "internal error (logged)")
        return _answer(request, error)


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """On every answer, errors included (``on_response_prepare``)."""
    headers = response.headers
    headers.popall("Server", None)  # (no version for a scanner to match)
    headers["Content-Security-Policy"] = CSP
    headers["X-Frame-Options"] = "DENY"
    headers["X-Content-Type-Options"] = "nosniff"
    # (not no-referrer: with it Chromium sends "Origin: null" on a form post, which the
    # CSRF check must refuse)
    headers["Referrer-Policy"] = "same-origin"
    headers["Cross-Origin-Opener-Policy"] = "same-origin"
    if not request.path.startswith("/static/"):
        headers["Cache-Control"] = "no-store"
