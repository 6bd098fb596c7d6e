"""The asyncio transport: runs a :class:`RegistrationPlan` over asyncio streams."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from client._policy import TRANSPORT_ERRORS, Exchange, Outcome, RegistrationPlan, Sleep
from kaa_wire._connection import NEED_DATA, Registered, Resolved

__all__ = ["exchange", "run"]

_READ_SIZE = 65536


async def run(
    plan: RegistrationPlan, *, timeout_s: float, sleep: Callable[[float], Awaitable[object]]
) -> Outcome:
    """Drive ``plan`` to its outcome: one TCP connection per exchange, ``sleep`` to wait."""
    steps = plan.steps()
    try:
        action = next(steps)
        while True:
            if isinstance(action, Sleep):
                await sleep(action.seconds)
                action = steps.send(None)
                continue
            try:
                event = await exchange(action, timeout_s)
            except TRANSPORT_ERRORS as exc:
                action = steps.throw(exc)
            else:
                action = steps.send(event)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


async def exchange(action: Exchange, timeout_s: float) -> Resolved | Registered:
    """Connect, send the request, read until the answer is whole; ``timeout_s`` in all."""
    async with asyncio.timeout(timeout_s):
        reader, writer = await asyncio.open_connection(action.host, action.port)
        try:
            writer.write(action.request)
            await writer.drain()
            action.sent = len(action.request)
            while True:
                event = action.receive(await reader.read(_READ_SIZE))
                if event is not NEED_DATA:
                    return event  # type: ignore[return-value]
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
