"""A node id's live lease belongs to the process holding it (issue 13).

Two real ``servers.operations`` processes on SQLite and on PostgreSQL: the second one
started with the first one's ``--node-id`` is refused with one line and exit 1, logs why,
and leaves the lease (host, port, priority) alone; the first one's workers share its lease;
stopping the first one deletes its own lease, after which the second one starts.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from servers_harness import (
    START_TIMEOUT_S,
    ServerProcess,
    _env,
    control,
    control_json,
    start_operations,
)

pytestmark = pytest.mark.slow


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_args(request: pytest.FixtureRequest) -> list[str]:
    if request.param == "sqlite":
        return []
    return ["--store", request.getfixturevalue("postgres_database")]


def _nodes(data: Path, store_args: list[str]) -> list[dict[str, object]]:
    nodes: list[dict[str, object]] = control_json(data, *store_args, "nodes", "list")
    return nodes


def test_a_second_process_cannot_take_a_live_node_id(tmp_path: Path, store_args: list[str]) -> None:
    data = tmp_path / "data"
    control(data, *store_args, "init")
    shared = ("--node-id", "ops-a", *store_args)
    first, port = start_operations(data, *shared, "--priority", "5", "--workers", "2", name="a")
    try:
        [node] = _nodes(data, store_args)
        assert (node["node_id"], node["port"], node["priority"]) == ("ops-a", port, 5)
        second = subprocess.run(
            [sys.executable, "-m", "servers.operations", "--data", str(data), "--host",
             "127.0.0.1", "--port", "0", *shared, "--priority", "9"],
            capture_output=True, text=True, env=_env(), timeout=START_TIMEOUT_S,
        )  # fmt: skip
        assert second.returncode == 1, second.stderr
        error_lines = [line for line in second.stderr.splitlines() if line.startswith("error:")]
        assert len(error_lines) == 1, second.stderr
        assert f"node id 'ops-a' is held by another live Operations service (127.0.0.1:{port}" in (
            error_lines[0]
        )
        assert "lease held by another process" in second.stderr
        assert "lease released" not in second.stderr  # it held nothing
        assert "Traceback" not in second.stderr
        # The lease is the first one's still: nothing was taken, nothing deleted.
        [node] = _nodes(data, store_args)
        assert (node["port"], node["priority"], node["live"]) == (port, 5, True)
        assert "lease held" not in first.logs()  # both workers renew the one lease
    finally:
        assert first.stop() == 0
    assert _nodes(data, store_args) == []  # its own lease, deleted at its stop
    again, again_port = start_operations(data, *shared, "--priority", "9", name="again")
    try:
        [node] = _nodes(data, store_args)
        assert (node["port"], node["priority"]) == (again_port, 9)
    finally:
        assert again.stop() == 0


def test_workers_restart_without_losing_their_lease(tmp_path: Path) -> None:
    """A worker the supervisor restarts renews the same lease (the token is the group's)."""
    data = tmp_path / "data"
    control(data, "init")
    group = ServerProcess(
        "servers.operations",
        ["--data", str(data), "--host", "127.0.0.1", "--port", "0", "--node-id", "w",
         "--workers", "2", "--lease-s", "1.5"],
        tmp_path / "logs", "group",
    )  # fmt: skip
    try:
        group.wait_for_line("operations ")
        pids = re.search(r"workers ready .*pids=\"?([0-9,]+)", group.logs())
        assert pids is not None, group.logs()
        os.kill(int(pids.group(1).split(",")[0]), signal.SIGKILL)
        time.sleep(3)  # the restarted worker starts while the lease is live
        assert "worker restarted" in group.logs()
        assert "lease held" not in group.logs()
        [node] = _nodes(data, [])
        assert node["live"] is True
    finally:
        assert group.stop() == 0
