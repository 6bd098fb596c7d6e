"""Frame header decode + encode: construct interpreted, construct compiled (the pure path's
schema), the pure Framer and the extension Framer (one 64-byte-body frame per call)."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks import micro

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
        assert (result.version, result.msg_type, result.length) == (1, 3, len(micro.FRAME_BODY))
    else:
        assert result.body == micro.FRAME_BODY
