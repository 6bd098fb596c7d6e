"""The endpoint search's bounded scan and JSON field match over real HTTP, on SQLite and
PostgreSQL: a page examines at most ``scan_rows`` rows, a search goes on by its cursor,
non-JSON profiles never match (and never fail), and bad input is a 400 with a stable
code. The answers are validated against the OpenAPI document."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest

from benchmarks.throwaway_db import fresh_database
from tests.console.console_harness import Console, register_devices, start_console
from tests.console.test_console_api import _check, _spec

PROFILES = [
    b'{"model":"m7","serial":1,"fw":{"major":2,"beta":true}}',  # 0
    b'{"model":"m8","serial":2,"fw":{"major":"2"}}',  # 1
    b"\xff\x00 model=m7, not JSON",  # 2
    b'{"model":"m7","serial":3.0,"note":null}',  # 3
    b'{"model":"rare-one","serial":4}',  # 4
    b'{"model":"m9","serial":5}',  # 5
    b'["model","m7"]',  # 6
    b'{"model":"m7","serial":"6"}',  # 7
]


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def searched(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Console, list[str]]]:
    """A console on either backend with the devices of PROFILES registered (in order)."""
    data = tmp_path_factory.mktemp("search") / "data"
    if request.param == "sqlite":
        for console in start_console(data):
            yield console, register_devices(console, PROFILES)
        return
    with fresh_database(request.getfixturevalue("postgres_dsn"), "kaa_test_") as dsn:
        for console in start_console(data, ("--store", dsn)):
            yield console, register_devices(console, PROFILES)


def _walk(console: Console, query: str) -> list[dict[str, Any]]:
    """Every page of a search, following next_cursor; each validated against the document."""
    spec = _spec(console)
    pages: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        path = "/endpoints?" + query + (f"&cursor={cursor}" if cursor else "")
        answer = console.api("GET", path)
        assert answer.status == 200, answer.body
        _check(spec, "GET", "/api/v1/endpoints", answer)
        pages.append(answer.json)
        cursor = answer.json["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 50, pages


def _items(pages: list[dict[str, Any]]) -> list[list[str]]:
    return [[e["endpoint_id"] for e in page["items"]] for page in pages]


def test_a_rare_profile_substring_is_found_page_by_page(
    searched: tuple[Console, list[str]],
) -> None:
    console, ids = searched
    pages = _walk(console, "profile=rare-one&scan_rows=3")
    # Newest first, three rows a page: 7 6 5 | 4 3 2 | 1 0.
    assert _items(pages) == [[], [ids[4]], []]
    assert [p["scan"] for p in pages] == [
        {"examined": 3, "window": 3},
        {"examined": 6, "window": 3},
        {"examined": 8, "window": 3},
    ]
    # The default window takes them all at once.
    (page,) = _walk(console, "profile=rare-one")
    assert _items([page]) == [[ids[4]]] and page["scan"]["examined"] == len(ids)
    # Indexed filters alone examine no window.
    assert _walk(console, "limit=3")[0]["scan"] is None


def test_a_page_that_fills_early_continues_where_it_stopped(
    searched: tuple[Console, list[str]],
) -> None:
    console, ids = searched
    pages = _walk(console, "profile=m7&scan_rows=4&limit=2")
    # m7 is in rows 7 6 3 2 0 (6 an array, 2 raw bytes). Windows of 4, newest first: 7 6
    # fill the first page (2 rows examined); 5 4 3 2 the second; 1 0 the last.
    assert _items(pages) == [[ids[7], ids[6]], [ids[3], ids[2]], [ids[0]]]
    assert [p["scan"]["examined"] for p in pages] == [2, 6, 8]


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("model", '"m7"', [7, 3, 0]),  # not 2 (not JSON), not 6 (an array)
        ("serial", "3", [3]),  # 3.0 is 3
        ("serial", "6", []),  # "6" is a string
        ("serial", '"6"', [7]),
        ("fw.major", "2", [0]),
        ("fw.major", '"2"', [1]),
        ("fw.beta", "true", [0]),
        ("note", "null", [3]),  # a JSON null, not a missing field
        ("no.such", '"m7"', []),
    ],
)
def test_a_json_field_match(
    searched: tuple[Console, list[str]], field: str, value: str, expected: list[int]
) -> None:
    console, ids = searched
    query = "profile_field=" + field + "&profile_value=" + _quote(value)
    (page,) = _walk(console, query)
    assert _items([page]) == [[ids[n] for n in expected]]
    assert page["scan"] == {"examined": len(ids), "window": 5000}


def test_a_json_field_match_is_bounded_and_combines_with_the_others(
    searched: tuple[Console, list[str]],
) -> None:
    console, ids = searched
    pages = _walk(console, "profile_field=model&profile_value=%22m7%22&scan_rows=5")
    assert _items(pages) == [[ids[7], ids[3]], [ids[0]]]
    both = _walk(console, "profile_field=model&profile_value=%22m7%22&profile=serial%22%3A3")
    assert _items(both) == [[ids[3]]]


def _quote(text: str) -> str:
    import urllib.parse

    return urllib.parse.quote(text, safe="")


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("query", "code", "field"),
    [
        ("profile_field=model", "invalid_parameter", "profile_value"),
        ("profile_value=%22m7%22", "invalid_parameter", "profile_field"),
        ("profile_field=a..b&profile_value=1", "invalid_parameter", "profile_field"),
        ("profile_field=.a&profile_value=1", "invalid_parameter", "profile_field"),
        ("profile_field=%24.a&profile_value=1", "invalid_parameter", "profile_field"),
        ("profile_field=a%20b&profile_value=1", "invalid_parameter", "profile_field"),
        ("profile_field=a%22b&profile_value=1", "invalid_parameter", "profile_field"),
        ("profile_field=" + ".".join("k" * 9) + "&profile_value=1", "invalid_parameter",
         "profile_field"),
        ("profile_field=" + "k" * 65 + "&profile_value=1", "invalid_parameter",
         "profile_field"),
        ("profile_field=&profile_value=1", "invalid_parameter", "profile_field"),
        ("profile_field=model&profile_value=m7", "invalid_parameter", "profile_value"),
        ("profile_field=model&profile_value=", "invalid_parameter", "profile_value"),
        ("profile_field=model&profile_value=%5B1%5D", "invalid_parameter", "profile_value"),
        ("profile_field=model&profile_value=%7B%7D", "invalid_parameter", "profile_value"),
        ("profile_field=model&profile_value=NaN", "invalid_parameter", "profile_value"),
        ("profile_field=model&profile_value=1e999", "invalid_parameter", "profile_value"),
        ("profile_field=model&profile_value=9223372036854775808", "invalid_parameter",
         "profile_value"),
        ("profile_field=model&profile_value=%22%5Cud800%22", "invalid_parameter",
         "profile_value"),
        ("profile_field=model&profile_value=%22%5Cu0000%22", "invalid_parameter",
         "profile_value"),
        ("profile_field=model&profile_value=%22" + "x" * 250 + "%22", "invalid_parameter",
         "profile_value"),
        ("profile=" + "x" * 201, "invalid_parameter", "profile"),
        ("profile=a&scan_rows=0", "invalid_parameter", "scan_rows"),
        ("profile=a&scan_rows=20001", "invalid_parameter", "scan_rows"),
        ("profile=a&scan_rows=many", "invalid_parameter", "scan_rows"),
        ("profile=a&cursor=" + _cursor("e:5:3:1"), "bad_cursor", None),
        ("profile=a&cursor=" + _cursor("e:5:x"), "bad_cursor", None),
        ("profile=a&cursor=" + _cursor("e:5:"), "bad_cursor", None),
        ("profile=a&cursor=" + _cursor("e:5:" + "9" * 19), "bad_cursor", None),
        ("profile=a&cursor=" + _cursor("a:5:3"), "bad_cursor", None),
    ],
)
def test_bad_search_input_is_a_400_with_a_stable_code(
    searched: tuple[Console, list[str]], query: str, code: str, field: str | None
) -> None:
    console, _ = searched
    answer = console.api("GET", "/endpoints?" + query)
    assert (answer.status, answer.code) == (400, code), answer.body
    assert answer.json["error"].get("field") == field
    _check(_spec(console), "GET", "/api/v1/endpoints", answer)


def test_the_audit_log_refuses_a_scan_cursor(searched: tuple[Console, list[str]]) -> None:
    console, _ = searched
    answer = console.api("GET", "/audit?cursor=" + _cursor("a:5:3"))
    assert (answer.status, answer.code) == (400, "bad_cursor")


def test_the_document_names_every_search_parameter(searched: tuple[Console, list[str]]) -> None:
    """Each documented parameter with a bound is checked by the API: a value out of it
    is refused naming that parameter."""
    console, _ = searched
    op = _spec(console)["paths"]["/api/v1/endpoints"]["get"]
    names = {p["name"] for p in op["parameters"]}
    assert names == {
        "id_prefix", "application", "status", "since_ms", "profile", "profile_field",
        "profile_value", "scan_rows", "cursor", "limit",
    }  # fmt: skip
    outside = {
        "id_prefix": "xyz", "since_ms": "-1", "profile": "x" * 201, "scan_rows": "20001",
        "limit": "501", "status": "gone",
    }  # fmt: skip
    for name, value in outside.items():
        answer = console.api("GET", f"/endpoints?{name}={value}")
        assert answer.json["error"].get("field") == name, (name, answer.body)
