"""``python -m servers.admin_process``: the admin port in a process of its own.

Started only by servers/admin_supervisor.py, which pickles an
:class:`~servers.admin_supervisor.AdminLaunch` to this process's stdin: the settings, the
listening socket it bound, the read end of its life pipe, and where the services publish
their figures. This process opens its own store (a second writer, like the control CLI),
serves the socket with the same :class:`~servers.admin.AdminServer` and console the
services' loop used to run, and renders ``/metrics``, ``/healthz`` and ``/livez`` from the
services' publications (servers/metrics.py, ``WorkerGroup``). It exits on SIGTERM
(SIGINT is ignored: the parent stops it), and when its life pipe reads end of file (its
parent is gone, even killed: it then removes the figures' directory its parent left).
docs/console.md says why the admin port runs here.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import pickle
import signal
import socket
import sys
from pathlib import Path

import uvloop

from servers import console, logs
from servers.admin import AdminServer
from servers.admin_supervisor import HEARTBEAT_S, AdminLaunch
from servers.datadir import DataDir
from servers.limits import ensure_fd_limit
from servers.metrics import Registry, WorkerGroup, process_figures, stats_families
from servers.store.factory import store_for

__all__ = ["main"]


class _Health:
    """The services' liveness and readiness, from their publications (read once per probe)."""

    def __init__(self, group: WorkerGroup, slots: int) -> None:
        self._group = group
        self._slots = slots

    def not_alive(self) -> str | None:
        return self._group.health(self._slots)[0]

    def not_ready(self) -> str | None:
        return self._group.health(self._slots)[1]


async def serve(launch: AdminLaunch) -> None:
    settings = launch.settings
    log = logs.get("admin")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    # Ctrl-C reaches the whole process group: the services stop, then stop this process.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    gone: list[bool] = []

    def parent_gone() -> None:  # the life pipe is readable only at end of file
        loop.remove_reader(launch.life_fd)
        gone.append(True)
        stop.set()

    loop.add_reader(launch.life_fd, parent_gone)
    _beat(loop, launch.heartbeat_fd)
    ensure_fd_limit(settings.admin_max_connections)
    group = WorkerGroup(Path(launch.metrics_dir))
    health = _Health(group, launch.slots)
    own = Registry()  # this process's figures, after the services' merged ones

    def render() -> str:
        return group.render(own.families(), per_worker=launch.slots > 1)

    datadir = DataDir(settings.data)
    async with store_for(settings, datadir) as store:
        admin = AdminServer(
            render,
            max_connections=settings.admin_max_connections,
            timeout_s=settings.admin_timeout_s,
            requests_per_s=settings.admin_requests_per_s,
            not_ready=health.not_ready,
            not_alive=health.not_alive,
            console=functools.partial(
                console.install,
                store=store,
                settings=settings,
                datadir=datadir,
                render_metrics=render,  # the same one view as /metrics
                # The parent resolved a requested port 0 before it started this process.
                bootstrap=lambda: (settings.public_host, settings.bootstrap_port),
                registry=own,  # kaa_admin_logins_total, after the services' figures
            ),
        )
        for family in (
            *stats_families("kaa_admin", "Admin port", admin.stats),
            *stats_families("kaa_admin_process", "Admin process", process_figures),
        ):
            own.add(family)
        sock = socket.socket(fileno=launch.listen_fd)
        await admin.start(None, None, sock=sock)
        try:
            await stop.wait()
        finally:
            await admin.stop()
            if gone:
                # They could not remove their figures' directory (killed): it is on tmpfs,
                # memory until the next boot, so it goes with the last process using it.
                logs.event(log, logging.WARNING, "the services are gone: admin process stops")
                group.remove()


def _beat(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    """A byte to the supervisor's heartbeat pipe now and every HEARTBEAT_S, from this
    loop: a blocked loop (or a stopped process) falls silent, and is killed and restarted
    (servers/admin_supervisor.py, WATCHDOG_S)."""
    os.set_blocking(fd, False)

    def beat() -> None:
        with contextlib.suppress(BlockingIOError):  # (a full pipe: the parent is behind)
            try:
                os.write(fd, b".")
            except BrokenPipeError:
                return  # the parent is gone: the life pipe stops this process
        loop.call_later(HEARTBEAT_S, beat)

    beat()


def main() -> int:
    launch = pickle.loads(sys.stdin.buffer.read())
    if not isinstance(launch, AdminLaunch):
        print("error: servers.admin_process is started by the services", file=sys.stderr)
        return 2
    settings = launch.settings
    logs.configure(settings.log_json, settings.log_level)
    try:
        uvloop.run(serve(launch))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # (the store is down, ...): logged; the parent restarts it
        logs.event(logs.get("admin"), logging.ERROR, "admin process failed", error=str(exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
