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

#: The same phases through the C twins of kaa_wire_ext/server.pyx, frames as py-spy names
#: them (def methods by name, cdef methods as Class__method).
C_LOOP = [*LOOP, "data_received (kaa_wire_ext/server.pyx:339)"]
C_STACKS = {
    "accept": [*LOOP, "connection_made (kaa_wire_ext/server.pyx:330)"],
    "read": [*C_LOOP, "ExchangeProtocol__poll (kaa_wire_ext/server.pyx:369)", "PyDict_GetItem"],
    "decode": [
        *C_LOOP,
        "ExchangeProtocol__poll (kaa_wire_ext/server.pyx:369)",
        "next_event (kaa_wire_ext/server.pyx:125)",
        "Framer_next_frame (kaa_wire_ext/framing.pyx:160)",
    ],
    "open": [
        *C_LOOP,
        "next_event (kaa_wire_ext/server.pyx:143)",
        "RegistrationOpener__agreement_with (kaa_wire_ext/opener.pyx:214)",
    ],
    "verify": [
        *C_LOOP,
        "ExchangeProtocol__settle (kaa_wire_ext/server.pyx:391)",
        "OperationsService.handle (servers/operations/service.py:120)",
        "verify (kaa_wire_ext/server.pyx:149)",
        "RSA_verify (libcrypto.so.3)",
    ],
    "respond": [
        *LOOP,
        "OperationsService._registered (servers/operations/service.py:200)",
        "send_result (kaa_wire_ext/server.pyx:161)",
        "OperationsServerConnection__sealed (kaa_wire_ext/server.pyx:180)",
    ],
    "service": [
        *C_LOOP,
        "ExchangeProtocol__settle (kaa_wire_ext/server.pyx:391)",
        "OperationsService.handle (servers/operations/service.py:118)",
    ],
}


@pytest.mark.parametrize("phase", C_STACKS)
def test_the_c_twins_frames_take_the_same_phases(phase: str) -> None:
    assert classify(C_STACKS[phase]) == phase


@pytest.mark.parametrize("phase", STACKS)
def test_each_phase_takes_its_stacks(phase: str) -> None:
    assert classify(STACKS[phase]) == phase
