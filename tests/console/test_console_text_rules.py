"""The input rules the console attack of 2026-12-03 found loose, over real HTTP against a
real ``python -m servers`` on SQLite and on PostgreSQL: a NUL in any text the API is
given (PostgreSQL answered 503 ``store_unavailable``, SQLite as for any other value), a
configuration version 0 (stored as 1), an empty topic name and a topic id given twice
(taken), and a cursor whose ``examined`` count was made up (echoed back)."""

from __future__ import annotations

import base64
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from benchmarks.throwaway_db import fresh_database
from tests.console.console_harness import (
    ADMIN_PASSWORD,
    Console,
    register_devices,
    start_console,
)
from tests.console.test_console_api import _check, _spec

ENDPOINT = "ab" * 20


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Console, tuple[str, ...]]]:
    """A console on either backend, and the CLI's store arguments for it."""
    data = tmp_path_factory.mktemp("text-rules") / "data"
    if request.param == "sqlite":
        for console in start_console(data):
            yield console, ()
        return
    with fresh_database(request.getfixturevalue("postgres_dsn"), "kaa_test_") as dsn:
        for console in start_console(data, ("--store", dsn)):
            yield console, ("--store", dsn)


@pytest.fixture(scope="module")
def console(served: tuple[Console, tuple[str, ...]]) -> Console:
    return served[0]


@pytest.fixture(scope="module")
def app_token(console: Console) -> str:
    answer = console.api("POST", "/apps", body={"name": "text rules"})
    assert answer.status == 201, answer.body
    return str(answer.json["token"])


# (method, OpenAPI path, path, request keywords, the field named in the refusal)
NUL_CASES: list[tuple[str, str, str, dict[str, Any], str]] = [
    ("GET", "/api/v1/endpoints", "/endpoints?application=%00", {}, "application"),
    ("GET", "/api/v1/endpoints", "/endpoints?application=app%00x&status=active", {},
     "application"),
    ("GET", "/api/v1/endpoints", "/endpoints?profile=a%00", {}, "profile"),
    ("GET", "/api/v1/endpoints", "/endpoints?id_prefix=ab%00", {}, "id_prefix"),
    ("GET", "/api/v1/endpoints", "/endpoints?cursor=%00", {}, "cursor"),
    ("GET", "/api/v1/endpoints", "/endpoints?profile_field=model&profile_value=%00", {},
     "profile_value"),
    ("GET", "/api/v1/audit", "/audit?subject=%00", {}, "subject"),
    ("GET", "/api/v1/apps/{token}", "/apps/a%00b", {}, "token"),
    ("GET", "/api/v1/apps/{token}/sdk-tokens", "/apps/a%00b/sdk-tokens", {}, "token"),
    ("POST", "/api/v1/apps/{token}/sdk-tokens", "/apps/a%00b/sdk-tokens", {}, "token"),
    ("PATCH", "/api/v1/apps/{token}", "/apps/a%00b", {"body": {"name": "x"}}, "token"),
    ("POST", "/api/v1/apps/{token}/sdk-export", "/apps/a%00b/sdk-export",
     {"body": {"sdk_token": "x"}}, "token"),
    ("POST", "/api/v1/apps/{token}/sdk-export", "/apps/{app}/sdk-export",
     {"body": {"sdk_token": "x\x00"}}, "sdk_token"),
    ("POST", "/api/v1/endpoints/{id}/revoke", f"/endpoints/{ENDPOINT}/revoke",
     {"body": {"reason": "lost\x00"}}, "reason"),
    ("POST", "/api/v1/endpoints/{id}/reinstate", f"/endpoints/{ENDPOINT}/reinstate",
     {"body": {"reason": "\x00"}}, "reason"),
    ("POST", "/api/v1/apps", "/apps", {"body": {"name": "a", "config": "a\x00b"}}, "config"),
    ("PATCH", "/api/v1/apps/{token}", "/apps/{app}", {"body": {"config": "\x00"}}, "config"),
    ("POST", "/api/v1/apps", "/apps", {"body": {"name": "a\x00"}}, "name"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "template", "path", "kw", "field"), NUL_CASES)
def test_a_nul_in_any_text_is_the_same_400_on_both_backends(
    console: Console,
    app_token: str,
    method: str,
    template: str,
    path: str,
    kw: dict[str, Any],
    field: str,
) -> None:
    """Before: PostgreSQL answered 503 store_unavailable (its text cannot hold U+0000),
    SQLite 404 or 200 or 201. Now one rule at the API's boundary, one 400 on both."""
    answer = console.api(method, path.replace("{app}", app_token), **kw)
    assert (answer.status, answer.code) == (400, "invalid_parameter"), answer.body
    assert answer.json["error"]["field"] == field, answer.body
    _check(_spec(console), method, template, answer)


def test_nothing_was_written_by_a_refused_nul(console: Console, app_token: str) -> None:
    console.api("POST", f"/endpoints/{ENDPOINT}/revoke", body={"reason": "x\x00"})
    audit = console.api("GET", f"/audit?subject={ENDPOINT}")
    assert audit.status == 200 and audit.json["items"] == [], audit.body
    app = console.api("GET", f"/apps/{app_token}").json
    assert (app["config"], app["config_version"]) == ("{}", 1)


@pytest.mark.parametrize(
    ("method", "path", "form"),
    [
        ("GET", "/audit?subject=%00", None),
        ("GET", "/audit?subject=a&cursor=%00", None),
        ("GET", "/apps/a%00b", None),
        ("POST", f"/endpoints/{ENDPOINT}/revoke", {"reason": "lost\x00"}),
        ("POST", "/apps", {"name": "a\x00"}),
        ("POST", "/apps/a%00b/sdk-tokens", {}),
        ("POST", "/apps/a%00b/sdk-export", {"sdk_token": "x", "format": "json"}),
    ],
)
def test_a_nul_on_the_console_pages_is_a_400_page_on_both_backends(
    console: Console, method: str, path: str, form: dict[str, str] | None
) -> None:
    """Before: the pages passed a query parameter, a path parameter or a form field to the
    store as it came, and PostgreSQL answered a NUL 503 (the helper that fixed the API
    noted it)."""
    opener, login = console.login("alice", ADMIN_PASSWORD)
    assert login.status == 303
    raw = None
    if form is not None:
        csrf = console.request("GET", "/api/v1/me", opener=opener).json["csrf_token"]
        raw = urllib.parse.urlencode({**form, "csrf": csrf}).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Origin": console.url}
    answer = console.request(method, path, raw=raw, opener=opener, headers=headers)
    assert answer.status == 400, (answer.status, answer.body[:300])


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/apps", {"name": "v0", "config_version": 0}, "config_version"),
        ("PATCH", "/apps/{app}", {"config_version": 0}, "config_version"),
        ("POST", "/apps", {"name": "t", "topics": [{"id": 1, "name": ""}]}, "topics"),
        ("PATCH", "/apps/{app}", {"topics": [{"id": 1, "name": ""}]}, "topics"),
        ("POST", "/apps", {"name": "t", "topics": [{"id": 1, "name": "a"},
                                                   {"id": 1, "name": "b"}]}, "topics"),
        ("PATCH", "/apps/{app}", {"topics": [{"id": 9, "name": "a"}, {"id": 2, "name": "b"},
                                             {"id": 9, "name": "a"}]}, "topics"),
    ],
)  # fmt: skip
def test_version_zero_empty_topic_names_and_repeated_topic_ids_are_refused(
    console: Console, app_token: str, method: str, path: str, body: dict[str, Any], field: str
) -> None:
    """Before: a version 0 was stored as 1 (the CLI stored 0), an empty topic name and a
    topic id given twice were taken. The CLI refuses the same (test_console_api.py)."""
    answer = console.api(method, path.replace("{app}", app_token), body=body)
    assert (answer.status, answer.code) == (400, "invalid_parameter"), answer.body
    assert answer.json["error"]["field"] == field
    app = console.api("GET", f"/apps/{app_token}").json
    assert (app["config_version"], app["topics"]) == (1, [])


def test_the_lowest_version_and_distinct_topics_are_taken(console: Console) -> None:
    topics = [{"id": 0, "name": "a"}, {"id": 2**32 - 1, "name": "a"}]  # (names may repeat)
    answer = console.api("POST", "/apps", body={"name": "v1", "config_version": 1,
                                                "topics": topics})  # fmt: skip
    assert answer.status == 201, answer.body
    assert (answer.json["config_version"], answer.json["topics"]) == (1, topics)


def _raw(cursor: str) -> bytes:
    return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))


def _forged(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def test_a_made_up_examined_count_is_a_bad_cursor(console: Console) -> None:
    """Before: a cursor ``e:POSITION:999999999`` was taken and its count answered as
    ``scan.examined`` (rows the search never examined). Cursors now carry an HMAC under
    the process's key: a real one goes on (its count the real one), a forged one or a
    real one altered is refused."""
    register_devices(console, [b'{"n":1}', b'{"n":2}', b'{"n":3}'])
    first = console.api("GET", "/endpoints?profile=%22n%22&scan_rows=1&limit=1")
    assert first.status == 200, first.body
    cursor = first.json["next_cursor"]
    assert cursor is not None and first.json["scan"]["examined"] == 1
    second = console.api("GET", f"/endpoints?profile=%22n%22&scan_rows=1&limit=1&cursor={cursor}")
    assert second.status == 200 and second.json["scan"]["examined"] == 2, second.body

    position = _raw(cursor)[16:].decode("ascii").split(":")[1]  # (after the 16-byte MAC)
    forged = [
        _forged(f"e:{position}:999999999"),  # the form cursors had before
        base64.urlsafe_b64encode(_raw(cursor)[:-1] + b"9").decode().rstrip("="),  # altered
        base64.urlsafe_b64encode(bytes(16) + f"e:{position}:5".encode()).decode(),
    ]
    for text in forged:
        answer = console.api("GET", f"/endpoints?profile=%22n%22&scan_rows=1&cursor={text}")
        assert (answer.status, answer.code) == (400, "bad_cursor"), (text, answer.body)
        _check(_spec(console), "GET", "/api/v1/endpoints", answer)
    audit_cursor = console.api("GET", "/audit?limit=1").json["next_cursor"]
    assert console.api("GET", f"/audit?limit=1&cursor={audit_cursor}").status == 200
    answer = console.api("GET", f"/endpoints?cursor={audit_cursor}")  # another list's
    assert (answer.status, answer.code) == (400, "bad_cursor"), answer.body


def test_a_cursor_goes_on_with_its_own_search_only(console: Console) -> None:
    """Before: a cursor, and the count it carries, was taken by a search with other filters:
    ``scan.examined`` 20 for a search that examined nothing (the console attack of
    2026-12-03, round 4). Its MAC now covers the search's filters (not the page size)."""
    register_devices(console, [b'{"m":1}', b'{"m":2}', b'{"m":3}'])
    first = console.api("GET", "/endpoints?profile=%22m%22&scan_rows=1&limit=1")
    cursor = first.json["next_cursor"]
    assert first.status == 200 and cursor is not None, first.body
    same = console.api("GET", f"/endpoints?profile=%22m%22&scan_rows=2&limit=5&cursor={cursor}")
    assert same.status == 200, same.body
    for other in ("profile=%22m%22&application=nope", "profile=%22n%22", "status=active",
                  "profile=%22m%22&since_ms=1"):  # fmt: skip
        answer = console.api("GET", f"/endpoints?{other}&scan_rows=1&cursor={cursor}")
        assert (answer.status, answer.code) == (400, "bad_cursor"), (other, answer.body)
    audit = console.api("GET", f"/audit?subject={ENDPOINT}&limit=1")
    audit_cursor = console.api("GET", "/audit?limit=1").json["next_cursor"]
    answer = console.api("GET", f"/audit?subject={ENDPOINT}&limit=1&cursor={audit_cursor}")
    assert audit.status == 200 and (answer.status, answer.code) == (400, "bad_cursor")


def test_a_new_body_past_the_last_version_is_refused(
    served: tuple[Console, tuple[str, ...]],
) -> None:
    """Found while fixing the version rule: at 2^32-1, a new configuration without a
    version was bumped to 2^32, which no registration answer can carry (every device of
    the application would have failed). Refused by the API and the CLI; a version given
    with the body is taken."""
    from tests.servers.servers_harness import control

    console, store_args = served
    last = 2**32 - 1
    created = console.api("POST", "/apps", body={"name": "last", "config_version": last})
    assert created.status == 201, created.body
    token = created.json["token"]
    answer = console.api("PATCH", f"/apps/{token}", body={"config": '{"a":2}'})
    assert (answer.status, answer.code) == (400, "invalid_parameter"), answer.body
    assert answer.json["error"]["field"] == "config_version"
    result = control(console.main.data, *store_args, "app", "update", token,
                     "--body", '{"a":2}', check=False)  # fmt: skip
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result
    assert "Traceback" not in result.stderr
    assert console.api("GET", f"/apps/{token}").json["config_version"] == last
    answer = console.api("PATCH", f"/apps/{token}", body={"config": "{}", "config_version": 1})
    assert answer.status == 200 and answer.json["config_version"] == 1, answer.body
    answer = console.api("PATCH", f"/apps/{token}", body={"name": "renamed"})  # no bump
    assert answer.status == 200 and answer.json["config_version"] == 1, answer.body
