"""The loopback port budget of a storm: check it before, watch it during.

Every storm connection takes a local port from ``/proc/sys/net/ipv4/ip_local_port_range``
(on 127.0.0.1 the generator and every other engineer's tests draw from the same range).
A port stays taken while its socket is open and, on the side that closes first, for 60 s
of TIME_WAIT after. An earlier storm exhausted the range and broke other tests, so:

* before the storm, :func:`plan_budget` counts the local ports of the range in use
  (``/proc/net/tcp`` and ``tcp6``, any state), keeps a reserve for everyone else, and
  sizes the generator's cap on open sockets so that the storm can take at most half of
  what is free beyond the reserve (two ports per open socket: its own, and a TIME_WAIT
  should its exchange time out); it refuses (:class:`StormRefused`, one line) when that
  cap would be too small to be a storm;
* during the storm, :func:`ports_in_use` is read every few seconds and the storm stops
  when the free ports fall under the reserve.

The generator closes passively (it reads the server's end of stream before closing), so
its sockets leave no TIME_WAIT on a port of the range; only an exchange that times out
closes first. The server's own TIME_WAIT entries are on its listening port, one port.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

__all__ = [
    "PortBudget",
    "StormRefused",
    "budget_for",
    "plan_budget",
    "port_range",
    "ports_in_use",
]

RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
TCP_TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))
#: Below this many open sockets at once the generator would set the storm's pace itself.
MIN_OPEN = 256
#: Left to everyone else at all times: this share of the range, or MIN_RESERVE ports.
RESERVE_SHARE = 0.25
MIN_RESERVE = 4096


class StormRefused(RuntimeError):
    """The port range cannot hold the storm next to what already uses it."""


@dataclasses.dataclass(frozen=True)
class PortBudget:
    low: int
    high: int
    in_use_before: int
    #: the generator's cap on its sockets open at once, all processes together
    max_open: int
    #: the storm stops when fewer ports than this are free
    reserve: int
    warning: str | None

    @property
    def size(self) -> int:
        return self.high - self.low + 1

    def to_dict(self) -> dict[str, object]:
        return {**dataclasses.asdict(self), "size": self.size}


def port_range() -> tuple[int, int]:
    low, high = RANGE_FILE.read_text().split()
    return int(low), int(high)


def ports_in_use(low: int, high: int) -> int:
    """Distinct local ports in ``low..high`` held by a TCP socket in any state."""
    ports: set[int] = set()
    for table in TCP_TABLES:
        try:
            lines = table.read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            local = line.split(None, 2)[1]
            port = int(local.rpartition(":")[2], 16)
            if low <= port <= high:
                ports.add(port)
    return len(ports)


def plan_budget(wanted_open: int) -> PortBudget:
    """:func:`budget_for` this machine's port range as it is used now."""
    low, high = port_range()
    return budget_for(low, high, ports_in_use(low, high), wanted_open)


def budget_for(low: int, high: int, used: int, wanted_open: int) -> PortBudget:
    """The cap on open sockets the range allows (``wanted_open`` or less, with a warning).

    The storm may take half of the ports free beyond the reserve: each open socket one, and
    as many again for the TIME_WAIT of exchanges that time out. Raises
    :class:`StormRefused` when the cap would fall under MIN_OPEN.
    """
    size = high - low + 1
    reserve = max(MIN_RESERVE, int(RESERVE_SHARE * size))
    allowed = (size - used - reserve) // 4
    if allowed < MIN_OPEN:
        raise StormRefused(
            f"storm refused: the local port range {low}-{high} has {size - used:,} free "
            f"ports ({used:,} in use), too few for {MIN_OPEN} open sockets plus a reserve "
            f"of {reserve:,} for everyone else (net.ipv4.ip_local_port_range)"
        )
    warning = None
    max_open = wanted_open
    if allowed < wanted_open:
        max_open = allowed
        warning = (
            f"storm scaled down: at most {allowed:,} open sockets instead of "
            f"{wanted_open:,} (port range {low}-{high}, {used:,} ports in use)"
        )
    return PortBudget(low, high, used, max_open, reserve, warning)
