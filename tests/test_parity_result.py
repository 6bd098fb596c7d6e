"""encode_registration_result: kaa_wire_ext._ext against construct (kaa_wire._codec), byte for
byte.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from kaa_wire import _codec, _constants
from kaa_wire._messages import RegistrationResult, Topic
from tests.parity import SETTINGS

u32 = st.integers(0, 2**32 - 1)
registration_results = st.builds(
    RegistrationResult,
    status=st.sampled_from(list(_constants.RegistrationStatus)),
    endpoint_id=st.one_of(st.binary(min_size=20, max_size=20),
                          st.binary(min_size=20, max_size=20).map(bytearray)),
    server_time_ms=st.integers(0, 2**64 - 1),
    config_version=u32,
    config=st.one_of(st.binary(max_size=600), st.binary(max_size=40).map(bytearray)),
    topics=st.lists(
        st.builds(Topic, topic_id=u32,
                  name=st.text(max_size=85).filter(lambda t: len(t.encode()) <= 255)),
        max_size=5,
    ).map(tuple),
    reconnect_after_s=u32,
    retry_base_ms=u32,
)


@SETTINGS
@given(result=registration_results)
def test_results_encode_like_construct(ext: Any, result: RegistrationResult) -> None:
    expected = _codec.encode_registration_result(result)
    assert ext.encode_registration_result(result) == expected
    assert _codec.decode_registration_result(expected) == result


def test_result_extremes_encode_like_construct(ext: Any) -> None:
    longest = "\u00e9" * 127 + "x"  # 255 bytes of UTF-8
    for result in (
        RegistrationResult(1, bytes(20), 0, 0, b""),
        RegistrationResult(3, b"\xff" * 20, 2**64 - 1, 2**32 - 1, bytes(70000),
                           tuple(Topic(2**32 - 1, longest) for _ in range(300)),
                           2**32 - 1, 2**32 - 1),
    ):
        assert ext.encode_registration_result(result) == _codec.encode_registration_result(result)
