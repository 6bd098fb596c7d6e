"""The console in a real browser (headless Chromium), against a real ``python -m servers``
and real devices (``python -m client``): log in, watch the dashboard move, find a device and
revoke it, make an SDK token and register with the downloaded sdk.json, read-only changes
nothing, and a forged form from another origin is refused.

``KAA_SCREENSHOTS_DIR=docs/images python -m pytest tests/console -m browser`` refreshes
the screenshots README.md shows.
"""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.console.browser import by_id, chromium, screenshot, wait
from tests.console.console_harness import ADMIN_PASSWORD, READER_PASSWORD, Console
from tests.servers.servers_harness import _env

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def driver(downloads: Path) -> Iterator[WebDriver]:
    browser = chromium(downloads)
    try:
        yield browser
    finally:
        browser.quit()


def device(sdk: Path, state: Path, profile: str | None = None) -> dict[str, Any]:
    """``python -m client register``: a real device; its JSON answer."""
    args = [sys.executable, "-m", "client", "register", "--sdk", str(sdk), "--state", str(state),
            "--deadline", "20"]  # fmt: skip
    if profile is not None:
        args += ["--profile", profile]
    result = subprocess.run(args, capture_output=True, text=True, env=_env(), timeout=60)
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def login(driver: WebDriver, console: Console, name: str, password: str) -> None:
    driver.delete_all_cookies()
    driver.get(console.url + "/login")
    by_id(driver, "name").send_keys(name)
    by_id(driver, "password").send_keys(password)
    by_id(driver, "login").click()
    wait(driver, "the login's answer", lambda d: _any(d, "login-error", "whoami", "error-code"))


def _any(driver: WebDriver, *element_ids: str) -> bool:
    return any(driver.find_elements(By.ID, i) for i in element_ids)


def test_login_refuses_a_wrong_password_then_lets_the_right_one_in(
    driver: WebDriver, console: Console, shots: Path
) -> None:
    driver.get(console.url + "/")
    assert driver.current_url.endswith("/login")  # nothing without a login
    screenshot(driver, shots, "console-login")
    login(driver, console, "alice", "not the password")
    assert "Wrong name or password" in by_id(driver, "login-error").text
    login(driver, console, "alice", ADMIN_PASSWORD)
    wait(driver, "the dashboard", lambda d: d.find_elements(By.ID, "whoami"))
    assert by_id(driver, "whoami").text.startswith("alice")
    cookie = driver.get_cookie("kaa_session")
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"


def test_the_dashboard_moves_while_a_real_device_registers(
    driver: WebDriver, console: Console, shots: Path, tmp_path: Path
) -> None:
    login(driver, console, "alice", ADMIN_PASSWORD)
    driver.get(console.url + "/")
    before = int(by_id(driver, "registrations-total").text)
    for i in range(3):
        doc = device(console.main.data / "sdk.json", tmp_path / f"dev{i}", '{"model":"dash"}')
        assert doc["status"] == "new", doc
    wait(driver, "the registration count to move",
         lambda d: int(by_id(d, "registrations-total").text) >= before + 3)  # fmt: skip
    wait(driver, "the node table", lambda d: d.find_elements(By.CSS_SELECTOR, "#nodes tr"))
    wait(driver, "the chart", lambda d: d.find_elements(By.CSS_SELECTOR, "#chart path.reg"))
    assert "NEW" in by_id(driver, "registrations").text
    screenshot(driver, shots, "console-dashboard")
    driver.set_window_size(390, 844)  # a phone: the same page, one column
    try:
        screenshot(driver, shots, "console-dashboard-phone")
        width = driver.execute_script("return document.documentElement.scrollWidth")
        assert width <= 390, "the dashboard scrolls sideways on a phone"
    finally:
        driver.set_window_size(1280, 900)


def test_find_a_device_revoke_it_and_its_next_registration_is_refused(
    driver: WebDriver, console: Console, shots: Path, tmp_path: Path
) -> None:
    sdk, state = console.main.data / "sdk.json", tmp_path / "victim"
    endpoint_id = device(sdk, state, '{"model":"lost","site":"dock 4"}')["endpoint_id"]
    login(driver, console, "alice", ADMIN_PASSWORD)
    driver.get(console.url + "/endpoints")
    by_id(driver, "id_prefix").send_keys(endpoint_id[:10])
    by_id(driver, "search").click()

    def found(d: WebDriver) -> list[Any] | bool:
        # The unfiltered list is on screen until the search's page replaces it: wait for the
        # rows of the search itself, not the first rows seen.
        rows = d.find_elements(By.CSS_SELECTOR, "#endpoint-list tbody a")
        return rows if [r.text for r in rows] == [endpoint_id] else False

    rows = wait(driver, "the search result", found)
    screenshot(driver, shots, "console-endpoints")
    rows[0].click()  # type: ignore[index]
    assert "dock 4" in by_id(driver, "profile").text
    assert by_id(driver, "endpoint-status").text == "active"
    by_id(driver, "revoke").click()
    by_id(driver, "reason").send_keys("reported stolen")
    by_id(driver, "confirm").click()
    wait(driver, "the revoked status", lambda d: by_id(d, "endpoint-status").text == "revoked")
    assert "reported stolen" in driver.find_element(By.CSS_SELECTOR, "table.audit").text
    assert "console:alice" in driver.find_element(By.CSS_SELECTOR, "table.audit").text
    screenshot(driver, shots, "console-endpoint")
    refused = device(sdk, state)
    assert (refused["status"], refused["registered"]) == ("revoked", False), refused


def test_a_new_sdk_token_downloads_an_sdk_json_a_real_device_registers_with(
    driver: WebDriver, console: Console, shots: Path, downloads: Path, tmp_path: Path
) -> None:
    login(driver, console, "alice", ADMIN_PASSWORD)
    driver.get(console.url + "/apps")
    by_id(driver, "app-name").send_keys("thermostats")
    driver.find_element(By.ID, "create-app").click()
    token = by_id(driver, "app-token").text
    by_id(driver, "create-sdk-token").click()
    secret = by_id(driver, "sdk-token").text
    assert len(secret) >= 20
    by_id(driver, "download-json").click()
    sdk_json = downloads / "sdk.json"
    wait(driver, "the download", lambda _: sdk_json.exists() and sdk_json.stat().st_size > 0)
    time.sleep(0.2)  # (Chromium renames the finished download into place)
    config = json.loads(sdk_json.read_text())
    assert (config["application_token"], config["sdk_token"]) == (token, secret)
    doc = device(sdk_json, tmp_path / "thermostat")
    assert (doc["status"], doc["registered"]) == ("new", True), doc
    driver.get(console.url + f"/apps/{token}")  # shown once: not again
    assert secret not in driver.page_source
    driver.get(console.url + "/apps")
    screenshot(driver, shots, "console-apps")


def test_read_only_sees_everything_and_changes_nothing(
    driver: WebDriver, console: Console, shots: Path, tmp_path: Path
) -> None:
    endpoint_id = device(console.main.data / "sdk.json", tmp_path / "ro", "{}")["endpoint_id"]
    login(driver, console, "rita", READER_PASSWORD)
    for page in ("/", "/endpoints", f"/endpoints/{endpoint_id}", "/apps", "/audit"):
        driver.get(console.url + page)
        assert by_id(driver, "whoami").text.startswith("rita"), page
    driver.get(console.url + f"/endpoints/{endpoint_id}")
    assert not driver.find_elements(By.ID, "revoke")  # no button to press...
    driver.get(console.url + f"/endpoints/{endpoint_id}/revoke")
    by_id(driver, "confirm").click()  # ...and the form, reached by hand, is refused
    assert by_id(driver, "error-code").text == "forbidden"
    driver.get(console.url + "/apps")
    assert not driver.find_elements(By.ID, "create-app")
    state = console.api("GET", f"/endpoints/{endpoint_id}").json["status"]
    assert state == "active"


class _Attacker(http.server.BaseHTTPRequestHandler):
    """Another origin's page: a form that posts to the console by itself."""

    target = ""

    def do_GET(self) -> None:
        page = (
            f'<form id="f" method="post" action="{self.target}">'
            '<input name="reason" value="forged"></form>'
            "<script>document.getElementById('f').submit()</script>"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, *args: Any) -> None:
        pass


def test_a_forged_form_from_another_origin_is_refused(
    driver: WebDriver, console: Console, tmp_path: Path
) -> None:
    endpoint_id = device(console.main.data / "sdk.json", tmp_path / "csrf", "{}")["endpoint_id"]
    login(driver, console, "alice", ADMIN_PASSWORD)
    wait(driver, "the dashboard", lambda d: d.find_elements(By.ID, "whoami"))
    target = f"{console.url}/endpoints/{endpoint_id}/revoke"
    handler = type("Attacker", (_Attacker,), {"target": target})
    attacker = http.server.HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=attacker.serve_forever, daemon=True).start()
    try:
        # Another port is another origin but the same site: the SameSite cookie goes along,
        # so the Origin check and the missing CSRF token are what refuse it.
        driver.get(f"http://127.0.0.1:{attacker.server_address[1]}/")
        wait(driver, "the forged post's answer",
             lambda d: d.find_elements(By.ID, "error-code"))  # fmt: skip
        assert by_id(driver, "error-code").text == "csrf_refused"
    finally:
        attacker.shutdown()
    assert console.api("GET", f"/endpoints/{endpoint_id}").json["status"] == "active"


def test_a_bounded_search_goes_on_page_by_page_without_javascript(
    driver: WebDriver, console: Console, shots: Path, tmp_path: Path
) -> None:
    """A JSON field search examines a window of rows a page (two here): the first page has
    no match, "Search further" finds the device, and the search then says it is complete."""
    sdk = console.main.data / "sdk.json"
    wanted = device(sdk, tmp_path / "rare", '{"model":"m1","site":"shelf 9"}')["endpoint_id"]
    for i in range(3):  # newer devices, examined first
        device(sdk, tmp_path / f"common{i}", '{"model":"m1","site":"hall"}')
    login(driver, console, "alice", ADMIN_PASSWORD)
    driver.get(console.url + "/endpoints?scan_rows=2")
    by_id(driver, "profile_field").send_keys("site")
    by_id(driver, "profile_value").send_keys('"shelf 9"')
    by_id(driver, "search").click()

    def status(text: str) -> Any:
        return lambda d: text in by_id(d, "scan-status").text

    wait(driver, "the first window", status("Searched 2 endpoints so far"))
    assert "No match among these yet" in by_id(driver, "endpoint-list").text
    by_id(driver, "next-page").click()
    wait(driver, "the second window", status("Searched 4 endpoints so far"))
    rows = driver.find_elements(By.CSS_SELECTOR, "#endpoint-list tbody a")
    assert [r.text for r in rows] == [wanted]
    screenshot(driver, shots, "console-endpoints-bounded")
    pages = 2
    while driver.find_elements(By.ID, "next-page"):
        before = by_id(driver, "scan-status").text
        by_id(driver, "next-page").click()
        wait(driver, "the next window", lambda d, seen=before: by_id(d, "scan-status").text != seen)
        pages += 1
        assert pages < 100
    assert "the search is complete" in by_id(driver, "scan-status").text
    final = driver.find_elements(By.CSS_SELECTOR, "#endpoint-list tbody a")
    assert wanted not in [r.text for r in final]  # found once, on its own page
