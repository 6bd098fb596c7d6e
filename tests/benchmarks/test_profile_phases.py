"""The profiler's phase rules (benchmarks/loadgen/profile.py) on stacks as py-spy writes them."""

from __future__ import annotations

import pytest

from benchmarks.loadgen.profile import classify

LOOP = [
    "Runner.run (asyncio/runners.py:118)",
    "uv__io_poll (linux.c:1546)",
]
STACKS = {
    "open": [
        *LOOP,
        "ExchangeProtocol._poll (servers/net.py:116)",
        "OperationsServerConnection.next_event (kaa_wire/_connection.py:430)",
        "RegistrationOpener__agreement_with (kaa_wire_ext/opener.pyx:214)",
        "0x7fad3d82f925 (libcrypto.so.3)",
    ],
    "respond": [
        *LOOP,
        "OperationsService._answer (servers/operations/service.py:200)",
        "OperationsServerConnection.send_result (kaa_wire/_connection.py:450)",
        "OperationsServerConnection._sealed (kaa_wire/_connection.py:470)",
        "seal_response (kaa_wire_ext/opener.pyx:284)",
    ],
    "verify": [
        *LOOP,
        "OperationsService._store_and_answer (servers/operations/service.py:150)",
        "OperationsServerConnection.verify (kaa_wire/_connection.py:440)",
        "RSA_verify (libcrypto.so.3)",
    ],
    "decode": [
        *LOOP,
        "OperationsServerConnection.next_event (kaa_wire/_connection.py:430)",
        "parse_registration_payload (kaa_wire_ext/registration_payload.pyx:40)",
    ],
    "store": [
        *LOOP,
        "OperationsService._store_and_answer (servers/operations/service.py:160)",
        "SqliteStore.register_endpoint (servers/store/sqlite.py:600)",
    ],
}


@pytest.mark.parametrize("phase", STACKS)
def test_each_phase_takes_its_stacks(phase: str) -> None:
    assert classify(STACKS[phase]) == phase
