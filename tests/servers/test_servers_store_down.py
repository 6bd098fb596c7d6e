"""The PostgreSQL server goes away under a running python -m servers, then comes back.

A cluster of the test's own (scripts/postgres-throwaway), so stopping it harms no other
test. While it is down: /healthz (readiness) says 503 with the reason while /livez stays
200; the Bootstrap's node refresh backs off and logs its failure once (then at most one line
per 30 s), not every few milliseconds; every log line stays JSON. When it is back: ready
again, the recovery logged, and a device registers.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers_harness import REPO, MainServer, start_main, wait_until

from tests.hardening.tools import probe

pytestmark = [pytest.mark.postgres, pytest.mark.adversity, pytest.mark.slow]

SCRIPT = REPO / "scripts" / "postgres-throwaway"


def _cluster(action: str, directory: Path) -> str:
    done = subprocess.run(
        [str(SCRIPT), action, str(directory)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
def cluster() -> Iterator[tuple[Path, str]]:
    # Under /tmp itself: the server runs as the postgres user, which cannot enter pytest's
    # private temporary directories.
    directory = Path(tempfile.mkdtemp(prefix="kaa-pg-down.", dir="/tmp"))
    dsn = _cluster("start", directory)
    yield directory, dsn
    _cluster("stop", directory)
    shutil.rmtree(directory, ignore_errors=True)


def _get(server: MainServer, path: str) -> tuple[int, str]:
    url = f"http://127.0.0.1:{server.listeners['admin_port']}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()


def test_a_store_that_goes_away_is_told_by_health_and_logged_once(
    tmp_path: Path, cluster: tuple[Path, str]
) -> None:
    directory, dsn = cluster
    server = start_main(
        tmp_path / "data", "--store", dsn, "--log-json", "--refresh-s", "0.2", "--lease-s", "3"
    )
    try:
        probe(server.sdk)
        assert _get(server, "/healthz") == (200, "ok\n")
        _cluster("stop", directory)
        wait_until(lambda: _get(server, "/healthz")[0] == 503, "/healthz to say not ready")
        _, body = _get(server, "/healthz")
        assert body.startswith("not ready: ")
        assert _get(server, "/livez") == (200, "alive\n")
        time.sleep(4)  # long enough for a few hundred refreshes without the backoff
        assert _get(server, "/healthz")[0] == 503
        _cluster("resume", directory)
        wait_until(lambda: _get(server, "/healthz")[0] == 200, "/healthz to say ready again")
        probe(server.sdk)
    finally:
        # Known issue (docs/operations.md, "A store that goes away"): the shutdown after an
        # outage sometimes hangs (about 1 run in 3). Until it is found, this test checks
        # health and logs, and ends the process itself when SIGTERM does not.
        server.process.proc.send_signal(signal.SIGTERM)
        try:
            server.process.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.process.kill()
    lines = server.process.logs().splitlines()
    events = [json.loads(line) for line in lines if line.strip()]  # every line is JSON
    failed = [e for e in events if e["event"] == "node refresh failed"]
    assert 1 <= len(failed) <= 2, failed
    assert any(e["event"] == "node refresh recovered" for e in events)
