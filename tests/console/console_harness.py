"""A real ``python -m servers`` with console credentials, and HTTP helpers over real
sockets (urllib: no client library between the test and the wire)."""

from __future__ import annotations

import dataclasses
import http.cookiejar
import json
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.hardening.tools import fresh_endpoint
from tests.servers.servers_harness import IO_TIMEOUT_S, MainServer, _env, control, start_main

ADMIN_PASSWORD = "correct horse battery staple"
READER_PASSWORD = "read only but long enough"


@dataclasses.dataclass
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def code(self) -> str:
        """The stable error code of a refusal."""
        return str(self.json["error"]["code"])


@dataclasses.dataclass
class Console:
    main: MainServer
    admin_key: str
    reader_key: str

    @property
    def url(self) -> str:
        return self.main.admin_url

    def request(
        self,
        method: str,
        path: str,
        *,
        key: str | None = None,
        body: Any = None,
        raw: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        opener: urllib.request.OpenerDirector | None = None,
    ) -> Answer:
        data = raw
        sent = dict(headers or {})
        if body is not None:
            data = json.dumps(body).encode()
            sent.setdefault("Content-Type", "application/json")
        if key is not None:
            sent["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=sent)
        open_ = (opener or _NO_REDIRECTS).open
        try:
            with open_(request, timeout=IO_TIMEOUT_S) as answer:
                return Answer(answer.status, answer.headers, answer.read())
        except urllib.error.HTTPError as exc:
            return Answer(exc.code, exc.headers, exc.read())

    def api(self, method: str, path: str, *, key: str | None = None, **kw: Any) -> Answer:
        return self.request(method, "/api/v1" + path, key=key or self.admin_key, **kw)

    def login(self, name: str, password: str) -> tuple[urllib.request.OpenerDirector, Answer]:
        """A browser-like client (cookie jar, no redirects followed) after a login."""
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(_NoRedirect, urllib.request.HTTPCookieProcessor(jar))
        form = urllib.parse.urlencode({"name": name, "password": password}).encode()
        answer = self.request(
            "POST", "/login", raw=form, opener=opener,
            headers={"Content-Type": "application/x-www-form-urlencoded", "Origin": self.url},
        )  # fmt: skip
        return opener, answer


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_NO_REDIRECTS = urllib.request.build_opener(_NoRedirect)


def add_password(
    data: Path, name: str, role: str, password: str, store: Sequence[str] = ()
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "servers.control", "--data", str(data), *store, "admin", "add",
         name, "--role", role, "--password-file", "-"],
        input=password + "\n", capture_output=True, text=True, env=_env(), timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def add_key(data: Path, name: str, role: str, store: Sequence[str] = ()) -> str:
    doc = json.loads(control(data, *store, "admin", "key", name, "--role", role).stdout)
    return str(doc["api_key"])


def start_console(data: Path, store: Sequence[str] = ()) -> Iterator[Console]:
    """``store``: ``("--store", DSN)`` for PostgreSQL; SQLite in ``data`` when empty."""
    # (The request budget is for people; the tests ask faster than people do.)
    main = start_main(data, *store, "--admin-requests-per-s", "1000")
    try:
        add_password(data, "alice", "admin", ADMIN_PASSWORD, store)
        add_password(data, "rita", "read-only", READER_PASSWORD, store)
        robot = add_key(data, "robot", "admin", store)
        reader = add_key(data, "reader", "read-only", store)
        yield Console(main, robot, reader)
    finally:
        assert main.process.stop() == 0, main.process.logs()


def register_devices(console: Console, profiles: list[bytes]) -> list[str]:
    """Real devices register; their endpoint ids, in order."""
    ids = []
    for profile in profiles:
        endpoint = fresh_endpoint(console.main.sdk)
        endpoint.register(profile)
        ids.append(endpoint.endpoint_id.hex())
    return ids
