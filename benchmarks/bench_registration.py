"""Registration processing: parse the opened payload + load the endpoint key + verify the
proof of possession + SHA-1 endpoint id, pure Python against kaa_wire_ext.

"first registration" is an uncached key (a verifier with cache_size=0: every call builds the
RSA-2048 key from its DER, as a new endpoint costs); "reconnect" finds the key in the cache.
The references (openssl speed, raw libcrypto verify) are measured in the same run by the
terminal summary of conftest.py, which prints the ratios.
"""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks import micro

CASES = [
    "first registration (py)",
    "first registration (ext)",
    "reconnect (py)",
    "reconnect (ext)",
]


@pytest.mark.parametrize("case", CASES)
def test_registration(measure: Any, workload: micro.RegistrationWorkload, case: str) -> None:
    cases = micro.registration_cases(workload)
    if case not in cases:
        pytest.skip("kaa_wire_ext is not built")
    assert measure(case, cases[case], "registration") == workload.endpoint_id


def test_raw_libcrypto_loop_verifies(workload: micro.RegistrationWorkload) -> None:
    """The reference loop itself: every verify passes, cached key and fresh key."""
    if micro._bench is None:
        pytest.skip("kaa_wire_ext._bench is not built (build with KAA_WIRE_BUILD_BENCH=1)")
    for fresh in (False, True):
        assert micro.raw_verify_us(workload, fresh, iterations=10) > 0
    for method in micro.KEY_BUILDS:
        assert micro._bench.key_build(workload.key_der, method, 10) > 0
