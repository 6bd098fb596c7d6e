"""Device cookies (servers/console/devices.py): what a cookie proves, and its key's file."""

from __future__ import annotations

import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from servers.console import devices
from servers.console.devices import DeviceCookies
from servers.datadir import DataDir


@pytest.fixture
def cookies(tmp_path: Path) -> DeviceCookies:
    return DeviceCookies.of(DataDir(tmp_path))


def test_a_cookie_names_one_device_for_one_name(cookies: DeviceCookies) -> None:
    cookie = cookies.issue("rita")
    device = cookies.device(cookie, "rita")
    assert device is not None and device == cookie.split(".")[0]
    assert cookies.device(cookie, "alice") is None
    assert cookies.device(cookie, "rita ") is None
    # a login renews it for the same device
    again = cookies.issue("rita", device)
    assert again.split(".")[0] == device and cookies.device(again, "rita") == device
    assert cookies.issue("rita").split(".")[0] != device


@pytest.mark.parametrize(
    "alter",
    [
        lambda c: c[:-1] + ("A" if c[-1] != "A" else "B"),  # the MAC
        lambda c: ("B" if c[0] != "B" else "C") + c[1:],  # the device id
        lambda c: c.replace(c.split(".")[1], str(int(c.split(".")[1]) + 1)),  # the time
        lambda c: c + ".x",
        lambda c: c.split(".", 1)[1],
        lambda c: "",
        lambda c: "a.b.c",
        lambda c: "!!!!.1.!!!!",
        lambda c: "x" * 10_000,
        lambda c: c.replace(".", ".-", 1),
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
