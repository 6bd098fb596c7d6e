"""The admin port's process, seen from the services that own it: bind, start, restart, stop.

The services' process (or, with ``--workers``, their supervisor) binds and listens on the
admin port itself, so a port in use fails the start as before and the printed URLs and
``listeners.json`` name it, then hands the listening socket to one child process,
``python -m servers.admin_process`` (a fresh interpreter: nothing is forked from a
process that runs an event loop). Connections wait in the socket's backlog while the
child starts or restarts. This side:

* restarts a child that exits, after 0.5 s, doubling up to 30 s while it keeps failing
  (back to 0.5 s once one ran 30 s), with a log line each time;
* kills (SIGKILL) and so restarts a child that hangs: the child's event loop writes a
  byte to a heartbeat pipe every :data:`HEARTBEAT_S`, and a child silent for
  :data:`WATCHDOG_S` (its loop blocked, or the process stopped) is taken for dead;
* stops it (SIGTERM, then SIGKILL after 5 s) when the services stop;
* holds the write end of a pipe whose read end the child watches: when this process dies
  (even by SIGKILL) the pipe reads end of file and the child exits, so it never outlives
  the services.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from servers import logs
from servers.config import Settings
from servers.metrics import WorkerGroup

__all__ = ["AdminLaunch", "AdminProcess", "bind_admin"]

#: The first wait before a restart; doubled after each failure, up to _MAX_BACKOFF_S.
_FIRST_BACKOFF_S = 0.5
_MAX_BACKOFF_S = 30.0
#: A child that ran this long was healthy: its next restart waits _FIRST_BACKOFF_S again.
_HEALTHY_RUN_S = 30.0
#: How long a stopping child may take before it is killed.
_STOP_TIMEOUT_S = 5.0
#: How often the child's event loop writes to its heartbeat pipe.
HEARTBEAT_S = 1.0
#: A child whose loop has not written for this long is killed and restarted: long past
#: any pause of a healthy loop (a slow store answer is awaited, not blocking), short
#: enough that the port is back within a minute. ``KAA_WIRE_ADMIN_WATCHDOG_S`` overrides
#: it (the tests lower it; it is no setting).
WATCHDOG_S = 15.0
with contextlib.suppress(ValueError):  # (a test's knob: a bad value leaves the default)
    WATCHDOG_S = max(1.0, float(os.environ.get("KAA_WIRE_ADMIN_WATCHDOG_S") or WATCHDOG_S))
#: Until its first beat a child is starting (imports, on a loaded machine, take seconds):
#: it may be silent this long.
START_GRACE_S = 60.0
#: The directory holding the ``servers`` package: first on the child's PYTHONPATH, so that
#: it runs the same code as its parent whatever the current directory.
_ROOT = str(Path(__file__).resolve().parents[1])


@dataclasses.dataclass(frozen=True, slots=True)
class AdminLaunch:
    """What the admin process needs, pickled to its stdin by its parent (trusted: the
    same user's process that started it)."""

    settings: Settings
    #: The listening admin socket, inherited.
    listen_fd: int
    #: The read end of the parent's pipe: end of file when the parent is gone.
    life_fd: int
    #: The write end of this child's heartbeat pipe (a byte every HEARTBEAT_S).
    heartbeat_fd: int
    #: Where the services publish their figures (servers/metrics.py, WorkerGroup).
    metrics_dir: str
    #: How many services processes publish there (``workers``).
    slots: int


def bind_admin(host: str, port: int) -> socket.socket:
    """A socket listening on (host, port) for the admin process; port 0 picks one."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        why = f"cannot bind the admin port {host}:{port}: {exc.strerror}"
        raise OSError(exc.errno, why) from None
    except BaseException:
        sock.close()
        raise
    return sock


class AdminProcess:
    """One supervised ``python -m servers.admin_process`` serving ``sock``.

    Not thread-safe; call :meth:`poll` often (every 0.1-0.2 s) from the owner's loop.
    """

    def __init__(
        self, settings: Settings, sock: socket.socket, group: WorkerGroup, slots: int
    ) -> None:
        self._settings = settings
        self._sock = sock
        self._group = group
        self._slots = slots
        self._life_read, self._life_write = os.pipe()
        self._proc: subprocess.Popen[bytes] | None = None
        self._started_at = 0.0
        self._restart_at: float | None = None
        self._backoff = _FIRST_BACKOFF_S
        #: The read end of the running child's heartbeat pipe, and when it last beat.
        self._beat_read = -1
        self._last_beat = 0.0
        self._beaten = False
        self.starts = 0
        #: Children killed because they hung (silent for WATCHDOG_S).
        self.hung = 0
        self._log = logs.get("admin")

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def start(self) -> None:
        self._close_beat()
        # A pipe per child: a byte still in flight from the last one says nothing of this.
        self._beat_read, beat_write = os.pipe()
        os.set_blocking(self._beat_read, False)
        launch = AdminLaunch(
            settings=self._settings,
            listen_fd=self._sock.fileno(),
            life_fd=self._life_read,
            heartbeat_fd=beat_write,
            metrics_dir=str(self._group.directory),
            slots=self._slots,
        )
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (_ROOT, env.get("PYTHONPATH"))))
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "servers.admin_process"],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,  # stdout is the services' (URLs for people, tests)
                pass_fds=(launch.listen_fd, launch.life_fd, beat_write),
                env=env,
            )
        finally:
            os.close(beat_write)  # the child's alone: its end of file is the child's exit
        assert proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):  # it died at once: poll() sees it
            proc.stdin.write(pickle.dumps(launch))
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()
        self._proc = proc
        self._started_at = self._last_beat = time.monotonic()
        self._beaten = False
        self._restart_at = None
        self.starts += 1
        event = "admin process started" if self.starts == 1 else "admin process restarted"
        logs.event(self._log, logging.INFO, event, pid=proc.pid)

    def poll(self) -> None:
        """Notice an exited child and restart it when its backoff is over."""
        now = time.monotonic()
        if self._proc is not None:
            code = self._proc.poll()
            if code is None:
                self._watch(now)
                return
            if now - self._started_at >= _HEALTHY_RUN_S:
                self._backoff = _FIRST_BACKOFF_S
            logs.event(
                self._log, logging.WARNING, "admin process exited, restarting",
                pid=self._proc.pid, code=code, restart_in_s=self._backoff,
            )  # fmt: skip
            self._proc = None
            self._restart_at = now + self._backoff
            self._backoff = min(_MAX_BACKOFF_S, 2 * self._backoff)
        if self._restart_at is not None and now >= self._restart_at:
            self.start()

    def _watch(self, now: float) -> None:
        """Kill the running child if its loop has not beaten for WATCHDOG_S; the next
        poll sees it exit and restarts it by the usual backoff."""
        with contextlib.suppress(BlockingIOError, OSError):
            if os.read(self._beat_read, 4096):
                self._last_beat, self._beaten = now, True
        silent = now - self._last_beat
        if silent < (WATCHDOG_S if self._beaten else max(WATCHDOG_S, START_GRACE_S)):
            return
        if self._proc is None:
            return
        self.hung += 1
        logs.event(
            self._log, logging.WARNING, "admin process hung, killing",
            pid=self._proc.pid, silent_s=round(silent, 1), hung=self.hung,
        )  # fmt: skip
        with contextlib.suppress(ProcessLookupError):
            self._proc.kill()
        self._proc.wait()

    def _close_beat(self) -> None:
        if self._beat_read >= 0:
            os.close(self._beat_read)
        self._beat_read = -1

    def stop(self) -> None:
        """Stop the child (SIGTERM, SIGKILL after a while) and close the socket."""
        proc, self._proc = self._proc, None
        self._restart_at = None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                logs.event(self._log, logging.WARNING, "admin process killed", pid=proc.pid)
                proc.kill()
                proc.wait()
        self.close_in_child()

    def close_in_child(self) -> None:
        """Close this side's descriptors (in a process forked from the owner, a worker:
        its copy of the pipe's write end would keep the child alive past the owner)."""
        for fd in (self._life_read, self._life_write):
            if fd >= 0:
                os.close(fd)
        self._life_read = self._life_write = -1  # (a closed number may be reused)
        self._close_beat()
        self._sock.close()
