"""``--workers N``: worker processes share the ports (SO_REUSEPORT) under one supervisor.

On the embedded SQLite store (the workers share the database file): both workers answer,
a killed worker is replaced while the other keeps serving, the group's one admin process
shows both and is replaced when killed, SIGTERM stops the group cleanly, and a
supervisor killed outright takes its workers and its admin process with it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from cluster_harness import admin_of, metric_total, workers_of
from servers_harness import (
    REPO,
    START_TIMEOUT_S,
    Endpoint,
    ServerProcess,
    control,
    process_exited,
    resolve,
    start_main,
    wait_until,
)

from kaa_wire import RegistrationStatus, _crypto

PROFILE = b'{"model": "w-1"}'


def _gone(pid: int) -> bool:
    """Reaped by its parent: every thread ended, every socket closed. (A zombie leader is
    not enough: its other threads may still hold the listening sockets.)"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_workers_share_the_ports_and_are_supervised(
    tmp_path: Path, endpoint_keys: list[_crypto.PrivateKey]
) -> None:
    data = tmp_path / "data"
    main = start_main(data, "--workers", "2")
    try:
        workers = workers_of(main.process.proc.pid)  # listeners.json: both are ready
        assert len(workers) == 2
        [admin] = admin_of(main.process.proc.pid)

        lines = main.process.output().splitlines()
        metrics = [line.split()[-1] for line in lines if line.startswith("metrics")]
        assert metrics == [main.admin_url + "/metrics"]  # the group's one admin port

        # The kernel spreads connections over both workers' listening sockets; the admin
        # port's /metrics is the group's one view (the figures a second old).
        for _ in range(40):
            assert resolve(main.sdk).nodes
        wait_until(
            lambda: metric_total(metrics[0], "kaa_resolutions_total") == 40,
            "the admin port to show the group's 40 resolutions",
        )
        per_worker = _worker_connections(metrics[0])
        assert sorted(per_worker) == ["0", "1"] and min(per_worker.values()) > 0, per_worker
        assert metric_total(metrics[0], "process_open_fds") > 0

        # Both workers write the one database file.
        device = Endpoint(main.sdk, endpoint_keys[0])
        assert device.register(PROFILE).status == RegistrationStatus.NEW

        # A worker that dies is replaced; the other one serves meanwhile.
        # (Connections the kernel queued on it before it died are reset: wait for that.)
        os.kill(workers[0], signal.SIGKILL)
        wait_until(lambda: _gone(workers[0]), "the killed worker to be reaped")
        assert device.register(PROFILE).status == RegistrationStatus.EXISTING
        wait_until(lambda: "worker restarted" in main.process.logs(), "a replacement")
        replaced = workers_of(main.process.proc.pid)
        assert len(replaced) == 2 and workers[1] in replaced and workers[0] not in replaced
        assert "worker exited, restarting" in main.process.logs()
        assert device.register(PROFILE).status == RegistrationStatus.EXISTING

        # The admin process killed: replaced, and the workers serve meanwhile.
        os.kill(admin, signal.SIGKILL)
        assert device.register(PROFILE).status == RegistrationStatus.EXISTING
        wait_until(lambda: "admin process restarted" in main.process.logs(), "a new admin")
        assert admin not in admin_of(main.process.proc.pid)
        wait_until(lambda: _healthz(main.admin_url) == 200, "the new admin process ready")
        assert workers_of(main.process.proc.pid) == replaced
    finally:
        code = main.process.stop()
    assert code == 0, main.process.logs()
    assert all(_gone(pid) for pid in replaced)
    assert not admin_of(main.process.proc.pid)
    assert not (data / "listeners.json").exists()


def _healthz(url: str) -> int:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def _worker_connections(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=10) as answer:
        text = answer.read().decode()
    found = re.findall(r'kaa_worker_connections_total\{worker="(\d+)"\} (\S+)', text)
    return {worker: float(value) for worker, value in found}


def test_a_killed_supervisor_takes_its_workers_along(tmp_path: Path) -> None:
    data = tmp_path / "data"
    control(data, "init")
    process = ServerProcess(
        "servers.bootstrap",
        ["--data", str(data), "--port", "0", "--workers", "2"],
        tmp_path / "logs",
        "bootstrap",
    )
    process.wait_for_line("bootstrap ")
    workers = workers_of(process.proc.pid)
    assert len(workers) == 2
    process.kill()  # SIGKILL: no chance to forward anything
    wait_until(lambda: all(process_exited(pid) for pid in workers), "the workers to exit")


def test_a_killed_supervisor_takes_its_admin_process_along(tmp_path: Path) -> None:
    data = tmp_path / "data"
    control(data, "init")
    process = ServerProcess(
        "servers.operations",
        ["--data", str(data), "--port", "0", "--workers", "2", "--admin-port", "0"],
        tmp_path / "logs",
        "operations",
    )
    process.wait_for_line("metrics ")
    [admin] = admin_of(process.proc.pid)
    assert len(workers_of(process.proc.pid)) == 2
    process.kill()  # SIGKILL: its life pipe closes with it
    wait_until(lambda: process_exited(admin), "the admin process to exit")


def test_workers_that_cannot_start_fail_the_start(tmp_path: Path) -> None:
    """An uninitialized data directory: every worker fails, so does the group (exit 1)."""
    result = subprocess.run(
        [
            *(sys.executable, "-m", "servers.operations", "--data", str(tmp_path / "none")),
            *("--port", "0", "--workers", "2"),
        ],
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
        cwd=REPO,
    )
    assert result.returncode == 1
    assert "servers.control init" in result.stderr


def test_the_supervisor_sleeps_once_its_workers_are_ready(tmp_path: Path) -> None:
    """Each worker closes its ready pipe once it listens; a pipe at end of file stays
    readable, and selecting it again made the supervisor spin (a core's worth of CPU
    taken from its own workers). Sampled: a sleeping process is in state S between its
    0.1 s wake-ups, a spinning one is always R (running or runnable)."""
    main = start_main(tmp_path / "data", "--workers", "2")
    try:
        supervisor = main.process.proc.pid
        assert len(workers_of(supervisor)) == 2  # listeners.json: both are ready
        states = []
        for _ in range(40):
            stat = Path(f"/proc/{supervisor}/stat").read_text()
            states.append(stat[stat.rindex(")") + 2])
            time.sleep(0.025)
        assert states.count("R") <= 10, "".join(states)
    finally:
        code = main.process.stop()
    assert code == 0, main.process.logs()
