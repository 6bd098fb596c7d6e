"""Which ``Host`` names the console and API answer to (against DNS rebinding).

A page of another site whose name the attacker makes resolve to 127.0.0.1 becomes, for
the browser, a page of the same origin as whatever listens there: it could read the
login page and post to it. It cannot choose the ``Host`` header, though: the browser
sends the attacker's name. So the console answers only to the admin port's own
addresses (``admin_host``, and on loopback ``localhost``, ``127.0.0.1`` and ``[::1]``,
each with the port it listens on; on a wildcard ``admin_host``, any IP address, which no
rebinding can produce) and to the names an operator lists in ``admin_allowed_hosts``
(``HOST`` for any port, or ``HOST:PORT``), e.g. a reverse proxy's. The probes are not
checked: a scraper may use any name (docs/console.md).
"""

from __future__ import annotations

import ipaddress
import urllib.parse

__all__ = ["AllowedHosts", "parse_allowed_hosts", "split_host"]

_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_WILDCARDS = frozenset({"0.0.0.0", "::", "[::]", "*", ""})


def split_host(text: str) -> tuple[str, int | None]:
    """``name``, ``name:port``, ``[v6]`` or ``[v6]:port`` -> (lowercase name, port or None).
    ValueError for anything else."""
    if not text or not text.isprintable() or any(c in text for c in " /?#@\\"):
        raise ValueError(f"{text!r} is not HOST or HOST:PORT")
    parts = urllib.parse.urlsplit("//" + text)
    name, port = parts.hostname, parts.port  # (.port raises ValueError for a bad port)
    if not name:
        raise ValueError(f"{text!r} is not HOST or HOST:PORT")
    return name, port


def parse_allowed_hosts(text: str) -> frozenset[tuple[str, int | None]]:
    """The ``admin_allowed_hosts`` setting: comma-separated ``HOST`` or ``HOST:PORT``."""
    return frozenset(split_host(item.strip()) for item in text.split(",") if item.strip())


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class AllowedHosts:
    def __init__(self, admin_host: str, allowed: str) -> None:
        host = admin_host.strip("[]").lower()
        self._any_ip = admin_host in _WILDCARDS
        own = {host}
        if host in _LOOPBACK_NAMES or (_is_ip(host) and ipaddress.ip_address(host).is_loopback):
            own |= _LOOPBACK_NAMES
        self._own = frozenset(own)
        self._listed = parse_allowed_hosts(allowed)

    def allows(self, header: str | None, local_port: int | None) -> bool:
        """Whether a request with this ``Host`` header, on this local port, may be answered."""
        if header is None:
            return False  # (HTTP/1.1 requires one; every browser sends one)
        try:
            name, port = split_host(header)
        except ValueError:
            return False
        if (name, port) in self._listed or (name, None) in self._listed:
            return True
        own_port = port == local_port or (port is None and local_port == 80)
        return own_port and (name in self._own or (self._any_ip and _is_ip(name)))
