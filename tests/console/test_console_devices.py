"""Device cookies (servers/console/devices.py): what a cookie proves, and its key's file."""

from __future__ import annotations

import base64
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from servers.console import devices
from servers.console.devices import DeviceCookies
from servers.datadir import DataDir


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _sibling(last: str) -> str:
    """Another last character of 22 base64 digits that decodes to the same 16 bytes (the
    4 low bits of the last digit are unused)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    index = alphabet.index(last)
    return alphabet[index ^ 1]


@pytest.fixture
def cookies(tmp_path: Path) -> DeviceCookies:
    return DeviceCookies.of(DataDir(tmp_path))


def test_a_cookie_names_one_device_for_one_name(cookies: DeviceCookies) -> None:
    cookie = cookies.issue("rita")
    device = cookies.device(cookie, "rita")
    assert device is not None and device == cookie.split(".")[1]
    assert cookies.trusted(cookie) == ("rita", device)
    assert cookies.device(cookie, "alice") is None
    assert cookies.device(cookie, "rita ") is None
    # a login renews it for the same device
    again = cookies.issue("rita", device)
    assert again.split(".")[1] == device and cookies.device(again, "rita") == device
    assert cookies.issue("rita").split(".")[1] != device


def _spell(cookie: str, part: int, spelling: Callable[[str], str]) -> str:
    parts = cookie.split(".")
    parts[part] = spelling(parts[part])
    return ".".join(parts)


@pytest.mark.parametrize(
    "alter",
    [
        lambda c: c[:-1] + ("A" if c[-1] != "A" else "B"),  # the MAC
        lambda c: _spell(c, 1, lambda p: ("B" if p[0] != "B" else "C") + p[1:]),  # device id
        lambda c: _spell(c, 0, lambda p: _b64(b"alice")),  # the name
        lambda c: _spell(c, 2, lambda p: str(int(p) + 1)),  # the time
        lambda c: c + ".x",
        lambda c: c.split(".", 1)[1],
        lambda c: "",
        lambda c: "a.b.c.d",
        lambda c: "!!!!.!!!!.1.!!!!",
        lambda c: "x" * 10_000,
        lambda c: c.replace(".", ".-", 1),
        # other spellings of the same bytes (base64 is lenient): each was a new device
        # with its own free failures (the console attack of 2026-12-03, round 3)
        lambda c: _spell(c, 1, lambda p: p[:4] + "!!!!" + p[4:]),
        lambda c: _spell(c, 1, lambda p: p + "=="),
        lambda c: _spell(c, 1, lambda p: p[:-1] + _sibling(p[-1])),
        lambda c: _spell(c, 3, lambda p: p + "="),
        lambda c: _spell(c, 2, lambda p: "0" + p),
        # digits to str.isdigit, not to int(): a ValueError out of the request budget's
        # check, a 500 on every page (the console attack of 2026-12-03, round 4)
        lambda c: _spell(c, 2, lambda p: "\u00b2\u00b3"),
        lambda c: _spell(c, 2, lambda p: "\u2460"),
        lambda c: _spell(c, 2, lambda p: "\u0663\u0664"),  # Arabic-Indic: int() takes them
        lambda c: _spell(c, 2, lambda p: "+" + p),
        lambda c: _spell(c, 2, lambda p: " " + p),
        lambda c: _spell(c, 2, lambda p: ""),
    ],
)
def test_an_altered_or_malformed_cookie_is_nobodys(
    cookies: DeviceCookies, alter: Callable[[str], str]
) -> None:
    assert cookies.device(alter(cookies.issue("rita")), "rita") is None


def test_a_cookie_expires_and_another_key_does_not_know_it(
    cookies: DeviceCookies, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cookie = cookies.issue("rita")
    (tmp_path / "other").mkdir()
    other = DeviceCookies.of(DataDir(tmp_path / "other"))
    assert other.device(cookie, "rita") is None
    later = time.time() + devices.LIFETIME_S + 10
    monkeypatch.setattr(devices.time, "time", lambda: later)  # (a clock cannot be moved)
    assert cookies.device(cookie, "rita") is None


def test_the_key_is_private_kept_and_made_again_when_broken(tmp_path: Path) -> None:
    datadir = DataDir(tmp_path)
    cookie = DeviceCookies.of(datadir).issue("rita")
    assert stat.S_IMODE(datadir.console_key.stat().st_mode) == 0o600
    assert DeviceCookies.of(datadir).device(cookie, "rita") is not None  # the same key
    datadir.console_key.write_bytes(b"short")
    fresh = DeviceCookies.of(datadir)
    assert len(datadir.console_key.read_bytes()) == 32
    assert fresh.device(cookie, "rita") is None
