"""The blocking transport: runs a :class:`RegistrationPlan` over blocking sockets."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from client._policy import TRANSPORT_ERRORS, Exchange, Outcome, RegistrationPlan, Sleep
from kaa_wire._connection import NEED_DATA, Registered, Resolved

__all__ = ["exchange", "run"]

_READ_SIZE = 65536


def run(
    plan: RegistrationPlan,
    *,
    timeout_s: float,
    sleep: Callable[[float], None],
    carry: Callable[[Exchange, float], Resolved | Registered] | None = None,
) -> Outcome:
    """Drive ``plan`` to its outcome: one TCP connection per exchange, ``sleep`` to wait.

    ``carry`` replaces :func:`exchange` (the policy tests carry exchanges in memory).
    """
    carry = carry or exchange
    steps = plan.steps()
    try:
        action = next(steps)
        while True:
            if isinstance(action, Sleep):
                sleep(action.seconds)
                action = steps.send(None)
                continue
            try:
                event = carry(action, timeout_s)
            except TRANSPORT_ERRORS as exc:
                action = steps.throw(exc)
            else:
                action = steps.send(event)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


def exchange(action: Exchange, timeout_s: float) -> Resolved | Registered:
    """Connect, send the request, read until the answer is whole; ``timeout_s`` in all."""
    deadline = time.monotonic() + timeout_s
    with socket.create_connection((action.host, action.port), timeout=timeout_s) as sock:
        sock.sendall(action.request)
        action.sent = len(action.request)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no answer within {timeout_s:g} s")
            sock.settimeout(remaining)
            event = action.receive(sock.recv(_READ_SIZE))
            if event is not NEED_DATA:
                return event  # type: ignore[return-value]
