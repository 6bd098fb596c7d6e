"""The storm's port budget (benchmarks/fleet/ports.py): sized from the real range, refused
when the range is too full, and counting real sockets."""

from __future__ import annotations

import socket

import pytest

from benchmarks.fleet.ports import (
    MIN_OPEN,
    MIN_RESERVE,
    StormRefused,
    budget_for,
    plan_budget,
    port_range,
    ports_in_use,
)


def test_an_empty_range_grants_what_is_wanted() -> None:
    budget = budget_for(10_000, 65_000, 0, 4096)
    assert budget.max_open == 4096 and budget.warning is None
    assert budget.reserve >= MIN_RESERVE


def test_a_busy_range_scales_the_storm_down_with_a_warning() -> None:
    # 28,232 ports (Linux's default range), 10,000 of them in use by others
    budget = budget_for(32_768, 60_999, 10_000, 4096)
    assert MIN_OPEN <= budget.max_open < 4096
    # the storm's share (two ports per open socket) leaves half the free ports and the reserve
    assert 2 * budget.max_open <= (28_232 - 10_000 - budget.reserve) // 2
    assert budget.warning is not None and "scaled down" in budget.warning


def test_a_full_range_refuses_in_one_line() -> None:
    with pytest.raises(StormRefused) as refused:
        budget_for(32_768, 60_999, 26_000, 4096)
    message = str(refused.value)
    assert message.startswith("storm refused:") and "\n" not in message
    assert "32768-60999" in message


def test_ports_in_use_counts_a_real_socket_of_the_range() -> None:
    low, high = port_range()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))  # an ephemeral port: from the range
        listener.listen()
        port = listener.getsockname()[1]
        assert low <= port <= high
        assert ports_in_use(port, port) == 1
        assert ports_in_use(low, high) >= 1


def test_this_machine_has_room_for_a_storm_or_says_why() -> None:
    try:
        budget = plan_budget(4096)
    except StormRefused as refused:
        assert str(refused).startswith("storm refused:")
    else:
        assert MIN_OPEN <= budget.max_open <= 4096
