"""A flood of refused connections does not flood the log (issue 13).

Real ``python -m servers``: 400 connections sending garbage are each refused with
MALFORMED_FRAME (or UNSUPPORTED_VERSION); the log holds one ``refused`` line per code (the
first; then at most one per 30 s), while ``kaa_errors_total`` counts every one.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from servers_harness import exchange, start_main, wait_until

pytestmark = pytest.mark.slow

FLOOD = 400


def test_refusals_are_counted_but_logged_once_per_code(tmp_path: Path) -> None:
    server = start_main(tmp_path / "data", "--log-json")
    try:
        bootstrap = server.sdk.bootstrap_servers[0]
        for _ in range(FLOOD):
            exchange(bootstrap.host, bootstrap.port, b"\xff" * 16)

        def refused_total() -> int:
            found = re.findall(r'kaa_errors_total\{service="bootstrap",code="[A-Z_]+"\} (\d+)',
                               server.metrics())  # fmt: skip
            return sum(int(n) for n in found)

        wait_until(lambda: refused_total() >= FLOOD, "every refusal counted")
        events = [json.loads(line) for line in server.process.logs().splitlines()]
        refused = [e for e in events if e["event"] == "refused"]
        assert 1 <= len(refused) <= 2, refused  # the first of each code
        assert len({e["code"] for e in refused}) == len(refused)
        assert all(e["peer"].startswith("127.0.0.1:") for e in refused)
    finally:
        assert server.process.stop() == 0
