"""Helpers for the server tests: store backends, server processes, and a sans-IO client
over real sockets (the kaa_wire classes; the client library is not used here)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable

from servers.store import RegistryStore


@dataclasses.dataclass
class StoreBackend:
    """One store backend under test: ``make()`` a fresh store on the test's data."""

    name: str
    make: Callable[[], RegistryStore]

    def run(self, body: Callable[[RegistryStore], Awaitable[None]]) -> None:
        async def main() -> None:
            async with self.make() as store:
                await body(store)

        asyncio.run(main())
