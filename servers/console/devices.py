"""Device cookies: a browser that logged in under a name is trusted for that name.

The failed-login limits (lockout.py) hold a name after ``FREE_PER_NAME`` failures from
anywhere, so a guesser sending a few wrong passwords a minute for ``bob`` kept ``bob`` out
too (the console attack). OWASP's answer ("Slow Down Online Guessing Attacks with Device
Cookies") is adopted here: a successful login gives the browser a cookie, signed with a key
of this data directory, that names the login name, a random device id and when it was
issued. A login that presents a valid one for the name it tries is not held by the name's
lockout nor by its address's (a reverse proxy makes every client one address), only by the
failures of that device; everyone else is held as before.

* The cookie is ``<name>.<device id>.<issued, Unix seconds>.<HMAC-SHA256>``, base64url
  without padding, parsed strictly (one spelling only); the MAC covers a label, the name,
  the device id and the time, so a cookie is good for one name only and cannot be
  altered. It lasts ``LIFETIME_S``; a login renews it. The name is in it so that a login
  with a valid one can be told apart before its form is read: it takes its name's share
  of the request budget and the login slot kept for trusted devices (auth.py), so a
  flood of anonymous logins cannot keep it waiting.
* It is HttpOnly, SameSite=Strict, Secure off loopback, and sent only to ``/login``.
* The key (32 random bytes, ``DataDir.console_key``, 0600, written atomically) outlives a
  restart of the admin process, so the trust does; deleting the file ends every device's.
  Each node has its own, so a browser is trusted by the nodes it logged in to.
* A stolen cookie gives no more than the device's own few tries: the password is still
  checked, and its failures lock that device.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
import time
from typing import NamedTuple

from kaa_files import atomic_write
from servers.datadir import DataDir

__all__ = ["DEVICE_COOKIE", "DeviceCookies", "Trusted"]

DEVICE_COOKIE = "kaa_device"
#: How long a device stays trusted after its last login.
LIFETIME_S = 90 * 24 * 3600
_LABEL = b"kaa-wire console device v1\x00"
_KEY_BYTES = 32
_ID_BYTES = 16
#: Longer is not one of ours (a name is at most 64 characters: 256 bytes of UTF-8).
MAX_COOKIE = 512


class Trusted(NamedTuple):
    """What a valid device cookie says: this browser logged in as ``name``."""

    name: str
    device: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class DeviceCookies:
    def __init__(self, key: bytes) -> None:
        if len(key) != _KEY_BYTES:
            raise ValueError(f"a device cookie key is {_KEY_BYTES} bytes")
        self._key = key

    @classmethod
    def of(cls, datadir: DataDir) -> DeviceCookies:
        """The data directory's key, made on first use (and made again when the file is
        not a key: that only ends the devices' trust)."""
        path = datadir.console_key
        with contextlib.suppress(FileNotFoundError):
            key = path.read_bytes()
            if len(key) == _KEY_BYTES:
                return cls(key)
        atomic_write(path, secrets.token_bytes(_KEY_BYTES), mode=0o600)
        return cls(path.read_bytes())

    def _mac(self, name: bytes, device: bytes, issued: int) -> bytes:
        message = _LABEL + name + b"\x00" + device + issued.to_bytes(8, "big")
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def issue(self, name: str, device: str | None = None) -> str:
        """A cookie for ``name``: the same device id again when the browser had one."""
        raw_name = name.encode("utf-8", "surrogatepass")
        raw = _unb64(device) if device else os.urandom(_ID_BYTES)
        issued = int(time.time())
        mac = self._mac(raw_name, raw, issued)
        return f"{_b64(raw_name)}.{_b64(raw)}.{issued}.{_b64(mac)}"

    def trusted(self, cookie: str | None) -> Trusted | None:
        """The name and device id of a valid, unexpired ``cookie``; else None.

        Parsed strictly: each part must be exactly the encoding this module writes, or
        base64's leniency (characters outside the alphabet dropped, unused bits, padding)
        made one signed cookie many device ids, each with its own free failures (the
        console attack of 2026-12-03, round 3)."""
        if not cookie or len(cookie) > MAX_COOKIE:
            return None
        parts = cookie.split(".")
        # (ASCII digits only: "²" is a digit to str.isdigit and not to int, which raised
        # from the request budget's check: a 500 that bypassed the budget, round 4)
        if len(parts) != 4 or not 0 < len(parts[2]) <= 12 or parts[2].strip("0123456789"):
            return None
        try:
            raw_name, raw, mac = _unb64(parts[0]), _unb64(parts[1]), _unb64(parts[3])
            name = raw_name.decode("utf-8", "surrogatepass")
            issued = int(parts[2])
        except (ValueError, TypeError):
            return None
        canonical = f"{_b64(raw_name)}.{_b64(raw)}.{issued}.{_b64(mac)}"
        if canonical != cookie or len(raw) != _ID_BYTES:
            return None
        if not 0 <= time.time() - issued <= LIFETIME_S:
            return None
        if not hmac.compare_digest(mac, self._mac(raw_name, raw, issued)):
            return None
        return Trusted(name, parts[1])

    def device(self, cookie: str | None, name: str) -> str | None:
        """The device id of a valid, unexpired ``cookie`` issued for ``name``; else None."""
        found = self.trusted(cookie)
        return found.device if found is not None and found.name == name else None
