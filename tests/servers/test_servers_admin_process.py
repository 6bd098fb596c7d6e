"""The admin port's own process (servers/admin_supervisor.py, servers/admin_process.py)
against a real ``python -m servers``: killed, it is restarted while the services keep
serving; the services killed, it exits; the services silent (stopped, not dead), its
``/healthz`` and ``/livez`` say so."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from servers_harness import IO_TIMEOUT_S, Endpoint, process_exited, start_main, wait_until

from kaa_wire import RegistrationStatus, _crypto
from servers.metrics import ABANDONED_S, STALE_AFTER_S, WorkerGroup, remove_stale_groups

PROFILE = b'{"model": "a-1"}'


def _admin_process(pid: int) -> int | None:
    """The admin process of the services' process ``pid``, or None (while it restarts)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    found = [
        int(child)
        for child in children
        if b"servers.admin_process" in _cmdline(int(child))
    ]
    assert len(found) <= 1, found
    return found[0] if found else None


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=IO_TIMEOUT_S) as answer:
            return int(answer.status), answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_a_killed_admin_process_is_restarted_while_the_services_serve(
    tmp_path: Path, rsa_keys: list[_crypto.PrivateKey]
) -> None:
    main = start_main(tmp_path / "data")
    services = main.process.proc.pid
    try:
        assert _get(main.admin_url + "/healthz") == (200, "ok\n")
        first = _admin_process(services)
        assert first is not None and first != services
        device = Endpoint(main.sdk, rsa_keys[0])
        assert device.register(PROFILE).status == RegistrationStatus.NEW

        os.kill(first, signal.SIGKILL)
        # The services serve meanwhile, whatever the admin process is doing.
        assert device.register(PROFILE).status == RegistrationStatus.EXISTING
        wait_until(lambda: "admin process restarted" in main.process.logs(), "a restart")
        logs = main.process.logs()
        assert "admin process exited, restarting" in logs and "code=-9" in logs
        second = _admin_process(services)
        assert second not in (None, first)
        # The same port (bound by the services), the same figures.
        assert _get(main.admin_url + "/healthz") == (200, "ok\n")
        wait_until(  # (published every second)
            lambda: 'kaa_registrations_total{status="EXISTING"} 1\n'
            in _get(main.admin_url + "/metrics")[1],
            "the new admin process to show the registration made while it restarted",
        )
        assert device.register(PROFILE).status == RegistrationStatus.EXISTING
    finally:
        code = main.process.stop()
    assert code == 0, main.process.logs()
    assert second is not None and process_exited(second)


def test_a_hung_admin_process_is_killed_and_restarted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, a stopped (SIGSTOP) or blocked admin process held the port forever: only
    an exit was noticed. Now its loop's heartbeat falls silent, and after WATCHDOG_S
    (lowered here) the supervisor kills it and starts another on the same port."""
    watchdog_s = 6.0
    monkeypatch.setenv("KAA_WIRE_ADMIN_WATCHDOG_S", str(watchdog_s))
    main = start_main(tmp_path / "data")
    services = main.process.proc.pid
    first = second = None
    try:
        assert _get(main.admin_url + "/healthz") == (200, "ok\n")
        first = _admin_process(services)
        assert first is not None
        time.sleep(watchdog_s + 1.5)  # a live loop beats: never taken for hung
        assert "hung" not in main.process.logs() and _admin_process(services) == first
        os.kill(first, signal.SIGSTOP)
        stopped = time.monotonic()
        wait_until(lambda: "admin process restarted" in main.process.logs(), "a restart",
                   timeout=watchdog_s + 30)  # fmt: skip
        assert time.monotonic() - stopped >= watchdog_s - 1.5  # (a beat may be in flight)
        logs = main.process.logs()
        assert "admin process hung, killing" in logs, logs
        assert "admin process exited, restarting" in logs and "code=-9" in logs
        assert process_exited(first)
        second = _admin_process(services)
        assert second not in (None, first)
        assert _get(main.admin_url + "/healthz") == (200, "ok\n")
    finally:
        if first is not None and not process_exited(first):
            os.kill(first, signal.SIGCONT)
        code = main.process.stop()
    assert code == 0, main.process.logs()
    assert second is not None and process_exited(second)


def _publications_of(pid: int) -> list[Path]:
    """The figures files the services' process ``pid`` published (servers/metrics.py)."""
    found = []
    for path in Path("/dev/shm").glob("kaa-metrics-*/worker-*.json"):
        try:
            if json.loads(path.read_text())["pid"] == pid:
                found.append(path)
        except (OSError, ValueError, KeyError):
            continue
    return found


def test_killed_services_take_the_admin_process_along(tmp_path: Path) -> None:
    """SIGKILL: the services can neither stop the admin process nor remove their figures'
    directory; it exits on its own (its life pipe closes) and removes the directory."""
    main = start_main(tmp_path / "data")
    services = main.process.proc.pid
    admin = _admin_process(services)
    assert admin is not None
    published = _publications_of(services)
    assert published or not os.access("/dev/shm", os.W_OK)  # (elsewhere: the temp dir)
    main.process.kill()
    wait_until(lambda: process_exited(admin), "the admin process to exit")
    assert main.process.logs().count("the services are gone: admin process stops") == 1
    for path in published:
        assert not path.parent.exists(), path


def test_healthz_turns_503_when_the_services_stop_publishing(tmp_path: Path) -> None:
    """The services' process stopped (SIGSTOP: alive, but its loop does nothing), the
    admin process answers on: not ready and not alive once their last publication is
    STALE_AFTER_S old; ready again once they run again."""
    main = start_main(tmp_path / "data")
    services = main.process.proc.pid
    try:
        assert _get(main.admin_url + "/healthz") == (200, "ok\n")
        assert _get(main.admin_url + "/livez") == (200, "alive\n")
        os.kill(services, signal.SIGSTOP)
        try:
            stopped = time.monotonic()
            wait_until(
                lambda: _get(main.admin_url + "/healthz")[0] == 503,
                "/healthz to say not ready",
                timeout=STALE_AFTER_S + 10,
            )
            assert time.monotonic() - stopped >= STALE_AFTER_S - 1.5  # (a second's publish)
            status, text = _get(main.admin_url + "/healthz")
            assert status == 503 and "published nothing" in text, text
            status, text = _get(main.admin_url + "/livez")
            assert status == 503 and "published nothing" in text, text
            status, metrics = _get(main.admin_url + "/metrics")
            assert status == 200 and "kaa_admin_connections_open" in metrics
        finally:
            os.kill(services, signal.SIGCONT)
        wait_until(lambda: _get(main.admin_url + "/healthz") == (200, "ok\n"), "ready again")
        assert _get(main.admin_url + "/livez") == (200, "alive\n")
    finally:
        assert main.process.stop() == 0, main.process.logs()


def test_a_start_removes_the_figures_directory_of_services_killed_with_their_admin(
    tmp_path: Path,
) -> None:
    """Services and their admin process both killed (SIGKILL: neither can remove the
    figures' directory, memory on tmpfs until the next boot) leave it behind; the next
    start removes it, its owner (named in it) being dead."""
    main = start_main(tmp_path / "data")
    services = main.process.proc.pid
    admin = _admin_process(services)
    try:
        assert admin is not None
        wait_until(lambda: _publications_of(services), "a publication")
        (directory,) = {path.parent for path in _publications_of(services)}
        assert directory.name.startswith(f"kaa-metrics-{services}-")  # its owner, by name
        os.kill(admin, signal.SIGKILL)
    finally:
        main.process.kill()  # (before the restart of the admin process, 0.5 s later)
    wait_until(lambda: process_exited(admin), "the admin process to exit")
    assert directory.exists()  # leaked
    again = start_main(tmp_path / "data", name="again")
    try:
        assert not directory.exists()
    finally:
        assert again.process.stop() == 0, again.process.logs()


def test_only_the_directories_of_dead_owners_are_removed(tmp_path: Path) -> None:
    """Real pids: one of a process that has exited, one alive (this one); directories
    named after them, and of the older form (``kaa-metrics-<random>``) told by the pids
    of their publications, or not told at all."""
    base = Path("/dev/shm") if os.access("/dev/shm", os.W_OK) else Path(tempfile.gettempdir())
    done = subprocess.Popen(["true"])
    done.wait()
    dead, alive = done.pid, os.getpid()

    def group(name: str, publisher: int | None = None) -> Path:
        path = Path(tempfile.mkdtemp(prefix=name, dir=base))
        if publisher is not None:
            (path / "worker-0.json").write_text(json.dumps({"pid": publisher, "at": 0}))
        return path

    dead_named = group(f"kaa-metrics-{dead}-", publisher=alive)  # (the name decides)
    alive_named = group(f"kaa-metrics-{alive}-")
    dead_old = group("kaa-metrics-", publisher=dead)
    alive_old = group("kaa-metrics-", publisher=alive)
    untold_old = group("kaa-metrics-")
    # empty past ABANDONED_S: nobody's (the round-4 attack found 17 such, never removed)
    abandoned_old = group("kaa-metrics-")
    long_ago = time.time() - ABANDONED_S - 60
    os.utime(abandoned_old, (long_ago, long_ago))
    made = WorkerGroup.create()
    try:
        assert not dead_named.exists() and not dead_old.exists() and not abandoned_old.exists()
        assert alive_named.exists() and alive_old.exists() and untold_old.exists()
        assert made.directory.name.startswith(f"kaa-metrics-{alive}-")
        assert remove_stale_groups(base) == []  # (its own is alive too)
    finally:
        for path in (alive_named, alive_old, untold_old, made.directory):
            WorkerGroup(path).remove()
