"""What /metrics holds beyond the request counters (issue 13): node and lease state,
readiness, the store's commit durations, counts per application, build info, uptime and
the process's CPU, memory and descriptors; against a real python -m servers."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from servers_harness import start_main

from tests.hardening.tools import probe

pytestmark = pytest.mark.slow


def _value(text: str, series: str) -> float:
    found = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
    assert found is not None, f"{series} missing from:\n{text}"
    return float(found.group(1))


def test_metrics_tell_node_lease_store_application_and_process_state(tmp_path: Path) -> None:
    server = start_main(tmp_path / "data")
    try:
        probe(server.sdk)  # one resolution and one registration
        text = server.metrics_with('kaa_application_registrations_total{application="default"}')
        assert _value(text, "kaa_nodes_live") == 1
        assert _value(text, "kaa_lease_held") == 1
        assert _value(text, "kaa_ready") == 1
        assert _value(text, "kaa_store_commit_duration_seconds_count") >= 1
        assert _value(text, 'kaa_store_commit_duration_seconds_bucket{le="+Inf"}') >= 1
        assert _value(text, 'kaa_application_registrations_total{application="default"}') == 1
        assert _value(text, 'kaa_application_resolutions_total{application="default"}') >= 1
        assert re.search(r'^kaa_build_info\{version="[^"]+",python="3\.\d+\.\d+",'
                         r'implementation="(ext|py)"\} 1$', text, re.MULTILINE)  # fmt: skip
        assert _value(text, "kaa_uptime_seconds") > 0
        assert _value(text, "process_resident_memory_bytes") > 10_000_000
        assert 0 < _value(text, "process_open_fds") < _value(text, "process_max_fds")
        assert _value(text, "process_cpu_seconds_total") > 0
        # The process started a little before it served (imports, keys, store).
        started = _value(text, "process_start_time_seconds")
        assert 0 <= time.time() - _value(text, "kaa_uptime_seconds") - started < 30
    finally:
        assert server.process.stop() == 0
