"""``--workers N``: N processes serve the same ports, supervised by the process started.

Theory of operation. The parent resolves every port the group serves (a requested 0
becomes a free port) and keeps it reserved for its whole life: a socket bound with
SO_REUSEPORT that never listens, so nothing else takes the port while workers come and
go. It then forks the workers, before it runs any thread or event loop. Each worker runs
the ordinary services (``runtime.serve``) on its own uvloop loop, with its own store
connections, and binds the same ports with SO_REUSEPORT; the kernel spreads new
connections over the workers' listening sockets. A worker reports its bound ports through
a pipe once it listens. The parent:

* waits until every worker is ready; a worker that exits before that fails the start
  (the others are stopped, exit code 1);
* restarts a worker that dies later (at most one start per second per worker slot);
* on SIGTERM or SIGINT forwards SIGTERM to every worker and waits for them (each one
  drains like a single process does), then exits 0 if they all exited 0.

Workers also get SIGTERM from the kernel if the parent dies without that (Linux
PR_SET_PDEATHSIG), so a killed supervisor leaves no orphan serving its ports.

The admin port, when on, is the group's one: this parent binds it and serves it from one
admin process (servers/admin_supervisor.py), which it restarts if it dies and stops last.
Its ``/metrics`` is the whole group's, merged, and its ``/healthz`` says ready while every
worker does (servers/metrics.py, :class:`~servers.metrics.WorkerGroup`: the workers
publish their figures and readiness every second). An Operations node is one node row
whatever its worker count (node id ``host:port``, one lease holder token for the group);
each worker renews it and reports its own rate times N as the load. With SQLite every
worker opens the same database file: reads scale, but there is one writer at a time
(docs/operations.md, "Workers").
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import json
import logging
import os
import select
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from types import FrameType

from servers import logs, metrics
from servers.admin_supervisor import AdminProcess, bind_admin
from servers.config import Settings
from servers.runtime import Listeners, run, serve

__all__ = ["serve_workers", "reserve_port"]

#: prctl(2) option: the signal a process gets when its parent dies.
_PR_SET_PDEATHSIG = 1
_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
#: Shortest time between two starts of one worker slot.
_RESTART_INTERVAL_S = 1.0

ReadyHook = Callable[[Listeners, list[Listeners]], None]


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port) with SO_REUSEPORT, not listening; port 0 picks one.

    The port is first bound without SO_REUSEPORT, so that a port another process serves
    (even another worker group of the same user) is refused rather than shared.
    """
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(address)
        address = probe.getsockname()
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


@dataclasses.dataclass(slots=True)
class _Worker:
    slot: int
    pid: int
    ready_fd: int
    started_at: float
    buffer: bytes = b""
    listeners: Listeners | None = None
    #: The worker closed its end of the ready pipe (it wrote its line, or it died). An
    #: fd at end of file stays readable: selecting it again would spin this loop.
    closed: bool = False


class _Group:
    def __init__(
        self,
        settings: Settings,
        *,
        bootstrap: bool,
        operations: bool,
        reserved: list[socket.socket],
        on_ready: ReadyHook | None,
        metrics_group: metrics.WorkerGroup,
        admin: AdminProcess | None,
    ) -> None:
        self.settings = settings
        self.metrics_group = metrics_group
        self.admin = admin
        self.bootstrap = bootstrap
        self.operations = operations
        self.reserved = reserved
        self.on_ready = on_ready
        self.log = logs.get("main")
        self.workers: dict[int, _Worker] = {}
        self.restart_at: dict[int, float] = {}
        self.last_start: dict[int, float] = {}
        self.listeners: list[Listeners | None] = [None] * settings.workers
        self.stopping = False
        self.failed = False
        self.all_ready = False
        self.parent_pid = os.getpid()

    # -- workers ------------------------------------------------------------------------

    def worker_settings(self, slot: int) -> Settings:
        # The admin port is the group's, served by this parent's admin process.
        return dataclasses.replace(self.settings, admin_port=-1)

    def start(self, slot: int) -> None:
        settings = self.worker_settings(slot)
        read_fd, write_fd = os.pipe()
        # Signals wait until the worker's event loop handles them (it unblocks them once it
        # listens): a SIGTERM sent while a worker starts stops it cleanly, after its start.
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                os.close(read_fd)
                for other in self.workers.values():
                    os.close(other.ready_fd)
                for sock in self.reserved:
                    sock.close()
                if self.admin is not None:
                    self.admin.close_in_child()
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.default_int_handler)
                metrics.join_group(self.metrics_group.for_worker(slot))
                if _stop_with_parent(self.parent_pid):
                    code = _worker_main(settings, self.bootstrap, self.operations, write_fd)
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
        os.close(write_fd)
        now = time.monotonic()
        self.workers[slot] = _Worker(slot, pid, read_fd, now)
        self.last_start[slot] = now

    def signal_all(self, signum: int) -> None:
        for worker in self.workers.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signum)

    def stop(self, *_: object) -> None:
        if not self.stopping:
            logs.event(self.log, logging.INFO, "stopping workers", workers=len(self.workers))
        self.stopping = True
        self.restart_at.clear()
        self.signal_all(signal.SIGTERM)

    # -- the supervision loop ---------------------------------------------------------------

    def _read_ready(self, worker: _Worker) -> None:
        try:
            chunk = os.read(worker.ready_fd, 4096)
        except OSError:
            chunk = b""
        if not chunk:
            worker.closed = True
        worker.buffer += chunk
        if worker.listeners is None and b"\n" in worker.buffer:
            doc = json.loads(worker.buffer.split(b"\n", 1)[0])
            worker.listeners = Listeners(**doc)
            self.listeners[worker.slot] = worker.listeners
            if self.all_ready:
                logs.event(
                    self.log, logging.INFO, "worker restarted", worker=worker.slot, pid=worker.pid
                )

    def _reap(self) -> None:
        while self.workers:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = next((w for w in self.workers.values() if w.pid == pid), None)
            if worker is None:
                continue
            del self.workers[worker.slot]
            os.close(worker.ready_fd)
            code = os.waitstatus_to_exitcode(status)
            if self.stopping:
                if code != 0:
                    self.failed = True
                continue
            if worker.listeners is None and not self.all_ready:
                logs.event(
                    self.log, logging.ERROR, "worker failed to start", worker=worker.slot, code=code
                )
                self.failed = True
                self.stop()
                continue
            logs.event(
                self.log, logging.WARNING, "worker exited, restarting", worker=worker.slot,
                pid=pid, code=code,
            )  # fmt: skip
            due = self.last_start[worker.slot] + _RESTART_INTERVAL_S
            self.restart_at[worker.slot] = max(due, time.monotonic())

    def with_admin(self, listeners: Listeners) -> Listeners:
        """A worker's listeners and the group's admin port."""
        if self.admin is None:
            return listeners
        return dataclasses.replace(
            listeners, admin_port=self.admin.port, admin_host=self.settings.admin_host
        )

    def watched_fds(self) -> list[int]:
        """The ready pipes still open: one at end of file would make select return at once."""
        return [w.ready_fd for w in self.workers.values() if not w.closed]

    def loop(self) -> int:
        for slot in range(self.settings.workers):
            self.start(slot)
        if self.admin is not None:
            self.admin.start()
        while self.workers or self.restart_at:
            fds = self.watched_fds()
            with contextlib.suppress(InterruptedError):
                readable, _, _ = select.select(fds, [], [], 0.1)
                for worker in list(self.workers.values()):
                    if worker.ready_fd in readable:
                        self._read_ready(worker)
            self._reap()
            if self.admin is not None and not self.stopping:
                self.admin.poll()
            now = time.monotonic()
            for slot, due in list(self.restart_at.items()):
                if due <= now and not self.stopping:
                    del self.restart_at[slot]
                    self.start(slot)
            if not self.all_ready and not self.stopping and all(self.listeners):
                self.all_ready = True
                ready = [self.with_admin(x) for x in self.listeners if x is not None]
                logs.event(
                    self.log, logging.INFO, "workers ready", workers=len(ready),
                    pids=",".join(str(w.pid) for w in self.workers.values()),
                )  # fmt: skip
                if self.on_ready is not None:
                    try:
                        self.on_ready(ready[0], ready)
                    except Exception:
                        self.log.exception("startup hook failed")
                        self.failed = True
                        self.stop()
        return 1 if self.failed else 0


def _stop_with_parent(parent_pid: int) -> bool:
    """Have the kernel send this worker SIGTERM when the supervisor dies (even by SIGKILL),
    so that no orphan keeps serving (Linux; elsewhere nothing happens). False when the
    supervisor is already gone."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    return os.getppid() == parent_pid


def _worker_main(settings: Settings, bootstrap: bool, operations: bool, ready_fd: int) -> int:
    async def on_ready(_: object, listeners: Listeners) -> None:
        os.write(ready_fd, json.dumps(dataclasses.asdict(listeners)).encode() + b"\n")
        os.close(ready_fd)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)  # the loop handles them

    return run(serve(settings, bootstrap=bootstrap, operations=operations, on_ready=on_ready))


def serve_workers(
    settings: Settings,
    *,
    bootstrap: bool,
    operations: bool,
    on_ready: ReadyHook | None = None,
) -> int:
    """Run ``settings.workers`` worker processes of the chosen services until SIGTERM or
    SIGINT; ``on_ready(shared, per_worker)`` runs in this process once all listen.

    Call before this process starts any thread or event loop (it forks). Returns the exit
    code: 0 after a clean stop, 1 when the group could not start or a worker failed.
    """
    reserved: list[socket.socket] = []
    try:
        if bootstrap:
            reserved.append(reserve_port(settings.host, settings.bootstrap_port))
            settings = dataclasses.replace(settings, bootstrap_port=reserved[-1].getsockname()[1])
        if operations:
            reserved.append(reserve_port(settings.host, settings.operations_port))
            settings = dataclasses.replace(settings, operations_port=reserved[-1].getsockname()[1])
    except OSError as exc:
        for sock in reserved:
            sock.close()
        print(f"error: cannot bind {settings.host}: {exc}", file=sys.stderr)
        return 1
    metrics_group = metrics.WorkerGroup.create()
    admin = None
    if settings.admin_port >= 0:
        try:
            sock = bind_admin(settings.admin_host, settings.admin_port)
        except OSError as exc:
            for sock in reserved:
                sock.close()
            metrics_group.remove()
            print(f"error: {exc}", file=sys.stderr)
            return 1
        admin = AdminProcess(settings, sock, metrics_group, slots=settings.workers)
    group = _Group(
        settings, bootstrap=bootstrap, operations=operations, reserved=reserved,
        on_ready=on_ready, metrics_group=metrics_group, admin=admin,
    )  # fmt: skip
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        group.stop()

    for signum in previous:
        signal.signal(signum, on_signal)
    try:
        return group.loop()
    finally:
        if admin is not None:  # last: it never outlives the workers
            admin.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for sock in reserved:
            sock.close()
        metrics_group.remove()
