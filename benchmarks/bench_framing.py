"""Frame header decode + encode: construct interpreted, construct compiled (the pure path's
schema), the pure Framer and the extension Framer (one 64-byte-body frame per call)."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks import micro
from kaa_wire._constants import PROTOCOL_VERSION

CASES = [
    "header: construct interpreted",
    "header: construct compiled",
    "frame: pure Framer",
    "frame: extension Framer",
]


@pytest.mark.parametrize("case", CASES)
def test_framing(measure: Any, case: str) -> None:
    cases = micro.framing_cases()
    if case not in cases:
        pytest.skip("kaa_wire_ext is not built")
    result = measure(case, cases[case], "framing")
    if case.startswith("header"):
        expected = (PROTOCOL_VERSION, 3, len(micro.FRAME_BODY))
        assert (result.version, result.msg_type, result.length) == expected
    else:
        assert result.body == micro.FRAME_BODY
