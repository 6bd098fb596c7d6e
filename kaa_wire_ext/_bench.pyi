"""Type stub of kaa_wire_ext._bench: the benchmarks' reference loops (built only with
KAA_WIRE_BUILD_BENCH=1; see setup.py)."""

from collections.abc import Callable

def rsa_verify(
    key_der: bytes,
    data: bytes,
    signature: bytes,
    iterations: int,
    fresh_key: bool = False,
    clock: Callable[[], float] | None = None,
) -> tuple[float, int]: ...
def key_build(
    key_der: bytes, method: str, iterations: int, clock: Callable[[], float] | None = None
) -> float: ...
