"""Failed logins per client address and per name, and the short lockouts they earn.

With one Argon2 slot (auth.py ``LOGIN_SLOTS``), a single client sending wrong passwords
one after another held the slot and no admin could log in (the console review). Here a
client address that failed ``FREE_PER_ADDRESS`` times, or a name that failed
``FREE_PER_NAME`` times (from anywhere), is refused at once for a while, before any
Argon2 work: 1 s, then twice as long at each further failure, ``MAX_LOCK_S`` at most.
Failures are forgotten ``FORGET_S`` after the last one, and a success forgets its
name's (not its address's: an insider would log in between guesses at other names).

A name's lockout would let anyone lock an admin out by guessing at their name, so a
browser that logged in under that name before shows it with a device cookie (devices.py):
such a login is held by neither the name's lockout nor its address's, only by the
failures of that device (``FREE_PER_DEVICE``), which count against nothing else. The
cookie outlives a restart. What remains is a person on a browser that never logged in
under the name, while a guesser keeps the name held: docs/console.md says so.

Memory is bounded: at most ``MAX_ENTRIES`` addresses and names are remembered (by their
first ``MAX_KEY`` characters: a credential's name is at most 64), the least recently
failed going first (an attacker can push out counts, which only gives back free
tries the other limits still bound).
"""

from __future__ import annotations

import dataclasses
import time
from collections import OrderedDict

__all__ = ["FailedLogins"]


@dataclasses.dataclass(slots=True)
class _Record:
    failures: int
    last: float
    locked_until: float


class _Counts:
    def __init__(self, free: int, limit: int) -> None:
        self.free = free
        self.limit = limit
        self._records: OrderedDict[str, _Record] = OrderedDict()

    def locked_for(self, key: str, now: float) -> float:
        record = self._records.get(key)
        return 0.0 if record is None else max(0.0, record.locked_until - now)

    def failed(self, key: str, now: float) -> None:
        record = self._records.get(key)
        if record is None or now - record.last > FailedLogins.FORGET_S:
            record = self._records[key] = _Record(0, now, now)
        record.failures += 1
        record.last = now
        beyond = record.failures - self.free
        if beyond >= 0:
            lock = min(FailedLogins.MAX_LOCK_S, FailedLogins.FIRST_LOCK_S * 2.0 ** min(beyond, 16))
            record.locked_until = now + lock
        self._records.move_to_end(key)
        while len(self._records) > self.limit:
            self._records.popitem(last=False)

    def forget(self, key: str) -> None:
        self._records.pop(key, None)

    def __len__(self) -> int:
        return len(self._records)


class FailedLogins:
    FREE_PER_ADDRESS = 5
    FREE_PER_NAME = 10
    FREE_PER_DEVICE = 5
    FIRST_LOCK_S = 1.0
    MAX_LOCK_S = 60.0
    FORGET_S = 15 * 60.0
    MAX_ENTRIES = 4096
    MAX_KEY = 128

    def __init__(self) -> None:
        self.addresses = _Counts(self.FREE_PER_ADDRESS, self.MAX_ENTRIES)
        self.names = _Counts(self.FREE_PER_NAME, self.MAX_ENTRIES)
        self.devices = _Counts(self.FREE_PER_DEVICE, self.MAX_ENTRIES)

    def locked_for(self, address: str, name: str, device: str | None = None) -> float:
        """Seconds until a login of ``name`` from ``address`` may be tried (0: now); a
        ``device`` is the id of a valid device cookie for ``name``."""
        now = time.monotonic()
        if device is not None:
            return self.devices.locked_for(device[: self.MAX_KEY], now)
        address, name = address[: self.MAX_KEY], name[: self.MAX_KEY]
        return max(self.addresses.locked_for(address, now), self.names.locked_for(name, now))

    def failed(self, address: str, name: str, device: str | None = None) -> None:
        now = time.monotonic()
        if device is not None:
            self.devices.failed(device[: self.MAX_KEY], now)
            return
        self.addresses.failed(address[: self.MAX_KEY], now)
        self.names.failed(name[: self.MAX_KEY], now)

    def succeeded(self, address: str, name: str, device: str | None = None) -> None:
        """A trusted device's success forgets its own failures only: the name's count is
        a guesser's, and a user logging in must not give the guesser fresh tries. Nor
        does any success forget its address's failures: an insider logging in as
        themselves between guesses at other names reset them (round 3)."""
        if device is not None:
            self.devices.forget(device[: self.MAX_KEY])
            return
        self.names.forget(name[: self.MAX_KEY])
