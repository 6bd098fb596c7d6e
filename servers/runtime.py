"""Run services on one uvloop event loop: wire them up, bind, serve, shut down cleanly.

``python -m servers`` runs a Bootstrap and an Operations service here together (one
process, one loop, one store); ``python -m servers.bootstrap`` and
``python -m servers.operations`` run one each. Shutdown (SIGINT or SIGTERM) releases the
node lease first, so Bootstraps stop listing the node, then stops accepting, lets the
exchanges in flight finish (up to the read timeout), and closes the store last.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import uvloop

import kaa_wire
from servers import logs
from servers import metrics as metrics_module
from servers._impl import ExchangeProtocol
from servers.admin_supervisor import AdminProcess, bind_admin
from servers.bootstrap.keys import KeyringWatcher
from servers.bootstrap.presign import Presigner
from servers.bootstrap.service import BootstrapService
from servers.bootstrap.view import RegistryView
from servers.config import Settings
from servers.control import actions
from servers.datadir import PRIVATE_DIR_MODE, DataDir, DataDirError
from servers.keyring import KeyringError
from servers.limits import Gate, WorkerPool, auto_threads, ensure_fd_limit
from servers.metrics import HistogramSnapshot, Metrics, SampledHistogram
from servers.net import ServiceContext
from servers.operations.directory import Directory
from servers.operations.lease import NodeLease
from servers.operations.service import OperationsService
from servers.store.base import RegistryStore, StoreError
from servers.store.factory import store_for
from servers.tasks import cancel_and_wait

__all__ = ["Listeners", "serve", "run", "secure_datadir", "cannot_start"]


@dataclasses.dataclass(frozen=True, slots=True)
class Listeners:
    """Where the running services listen (ports as bound: a requested 0 is resolved)."""

    host: str
    bootstrap_port: int | None = None
    operations_port: int | None = None
    admin_port: int | None = None
    #: The admin port's own bind address (``admin_host``), when it is on.
    admin_host: str | None = None

    def admin_url(self, path: str = "/") -> str:
        """The admin port's URL (an IPv6 address in brackets)."""
        host = self.admin_host or ""
        return f"http://{f'[{host}]' if ':' in host else host}:{self.admin_port}{path}"


Hook = Callable[[RegistryStore, Listeners], Awaitable[None]]


async def _warn_unsendable_states(store: RegistryStore, max_frame_size: int, log: Any) -> None:
    """A warning for each application whose state no registration answer of this node can
    carry (stored under a larger frame limit, or while no server ran to say its own:
    round 5 of the console attack): every device of it is refused until it is changed."""
    for app in await store.list_applications():
        try:
            actions.checked_state(app.config, app.topics, max_frame_size)
        except ValueError as exc:
            logs.event(log, logging.WARNING, "application state too large for max_frame_size",
                       application=app.token, error=str(exc))  # fmt: skip


def _bound_port(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])


class _Services:
    """Everything one process runs, in start order; stopped in reverse."""

    def __init__(self, settings: Settings, datadir: DataDir, store: RegistryStore) -> None:
        self.settings = settings
        self.datadir = datadir
        self.store = store
        self.metrics = Metrics()
        self.metrics.add_stats("kaa_store", "Registry store", store.stats)
        self.metrics.add(
            SampledHistogram(
                "kaa_store_commit_duration_seconds",
                "Registry store: how long each registration batch's commit took",
                lambda: _commit_snapshot(store),
            )
        )
        self.metrics.add_gauge(
            "kaa_ready", "1 while /healthz says ready (the store reachable, the lease held)",
            lambda: float(self.not_ready() is None),
        )  # fmt: skip
        #: Where this process publishes its figures and readiness for the admin process:
        #: under --workers the supervisor's directory, otherwise one of its own while the
        #: admin port is on (servers/metrics.py, WorkerGroup).
        self.group = metrics_module.current_group()
        self._own_group: metrics_module.WorkerGroup | None = None
        if self.group is None and settings.admin_port >= 0:
            self._own_group = metrics_module.WorkerGroup.create()
            self.group = self._own_group.for_worker(0)
        self._publisher: asyncio.Task[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self.servers: list[asyncio.Server] = []
        self.gates: list[Gate] = []
        self.pools: list[WorkerPool] = []
        self.view: RegistryView | None = None
        self.presigner: Presigner | None = None
        self.keys: KeyringWatcher | None = None
        self.lease: NodeLease | None = None
        self.admin: AdminProcess | None = None
        self.bootstrap_port: int | None = None

    def _context(self, service: BootstrapService | OperationsService) -> ServiceContext:
        s = self.settings
        gate = Gate(f"{service.name} connections", s.max_connections)
        self.gates.append(gate)
        return ServiceContext(
            name=service.name,
            new_connection=service.new_connection,
            handle=service.handle,  # type: ignore[arg-type]
            metrics=self.metrics,
            connections=gate,
            read_timeout_s=s.read_timeout_s,
            retry_after_ms=s.retry_after_ms,
            log=logs.get(service.name),
        )

    async def _listen(self, ctx: ServiceContext, port: int) -> int:
        loop = asyncio.get_running_loop()
        backlog = max(128, min(self.settings.max_connections, 4096))
        # With several worker processes (``workers``) each binds the port with SO_REUSEPORT
        # and the kernel spreads new connections over them (servers/workers.py).
        server = await loop.create_server(
            lambda: ExchangeProtocol(ctx),
            self.settings.host,
            port,
            backlog=backlog,
            reuse_port=self.settings.workers > 1,
        )
        self.servers.append(server)
        return _bound_port(server)

    async def start_bootstrap(self) -> int:
        s = self.settings
        log = logs.get("bootstrap")
        self.view = RegistryView(self.store, refresh_s=s.refresh_s, log=log)
        await self.view.start()
        threads = auto_threads() if s.sign_threads < 0 else s.sign_threads
        pool = WorkerPool("sign", threads, s.max_pending_signs, s.retry_after_ms)
        self.pools.append(pool)
        view = self.view
        self.metrics.add_gauge(
            "kaa_nodes_live", "Operations nodes with a live lease, as this Bootstrap sees them",
            lambda: float(len(view.nodes)),
        )  # fmt: skip
        self.keys = KeyringWatcher(self.datadir.key_files, interval_s=s.refresh_s, log=log)
        await self.keys.start()
        self.presigner = Presigner(
            pool, valid_for_s=s.presigned_valid_s, metrics=self.metrics, log=log
        )
        service = BootstrapService(
            view=self.view,
            keys=self.keys,
            pool=pool,
            presigner=self.presigner,
            metrics=self.metrics,
            log=log,
            max_frame_size=s.max_frame_size,
            valid_for_s=s.resolution_valid_s,
            retry_after_ms=s.retry_after_ms,
        )
        self.bootstrap_port = await self._listen(self._context(service), s.bootstrap_port)
        return self.bootstrap_port

    def bootstrap_address(self) -> tuple[str, int]:
        """Where devices find the Bootstrap (for the console's SDK export): this process's,
        as bound, or the configured one."""
        return self.settings.public_host, self.bootstrap_port or self.settings.bootstrap_port

    def key_fields(self, service: str) -> dict[str, object]:
        """The Bootstrap key a Bootstrap signs with, for its ``listening`` line."""
        if service != "bootstrap" or self.keys is None:
            return {}
        keyring = self.keys.current
        # A short fingerprint: the logs hold nothing that looks like key bytes.
        return {"key_generation": keyring.generation, "key": keyring.fingerprint[:16]}

    async def start_operations(self) -> int:
        s = self.settings
        log = logs.get("operations")
        verify_pool = None
        if s.crypto_threads:
            verify_pool = WorkerPool(
                "verify", s.crypto_threads, s.max_pending_crypto, s.retry_after_ms
            )
            self.pools.append(verify_pool)
        service = OperationsService(
            store=self.store,
            directory=Directory(self.store, refresh_s=s.refresh_s),
            static_key=self.datadir.operations_private_key(),
            verify_pool=verify_pool,
            metrics=self.metrics,
            log=log,
            max_frame_size=s.max_frame_size,
            replay_window_s=s.replay_window_s,
            reconnect_after_s=s.reconnect_after_s,
            retry_base_ms=s.retry_base_ms,
            retry_after_ms=s.retry_after_ms,
        )
        await _warn_unsendable_states(self.store, s.max_frame_size, log)
        port = await self._listen(self._context(service), s.operations_port)
        self.lease = NodeLease(
            self.store,
            node_id=s.node_id or f"{s.public_host}:{port}",
            host=s.public_host,
            port=port,
            kex_public_key=service.public_key,
            priority=s.priority,
            weight=s.weight,
            lease_s=s.lease_s,
            load=service.load,
            log=log,
            load_scale=s.workers,
            # Bound exclusively on the advertised address itself (workers: their supervisor
            # reserved the port exclusively first): no other live process serves it.
            owns_address=s.public_host == s.host,
        )
        await self.lease.start()
        lease = self.lease
        self.metrics.add_gauge(
            "kaa_lease_held", "1 while this Operations node's lease is held and renewed",
            lambda: float(lease.trouble.healthy),
        )  # fmt: skip
        return port

    def not_ready(self) -> str | None:
        """Why this process cannot serve now (for /healthz), or None."""
        if self.view is not None and not self.view.trouble.healthy:
            return "the store cannot be read (node view stale)"
        if self.lease is not None and not self.lease.trouble.healthy:
            return "the node lease cannot be renewed (store unreachable)"
        return None

    def publish(self) -> None:
        """Publish this process's figures and readiness for the admin process now, then
        every second."""
        if self.group is None:
            return
        self.group.publish(self.metrics, self.not_ready())
        self._publisher = asyncio.get_running_loop().create_task(self._publish_forever(self.group))

    async def _publish_forever(self, group: metrics_module.WorkerGroup) -> None:
        while True:
            await asyncio.sleep(metrics_module.PUBLISH_INTERVAL_S)
            try:
                group.publish(self.metrics, self.not_ready())
            except OSError as exc:  # the supervisor's directory is gone: it is stopping
                logs.event(logs.get("main"), logging.DEBUG, "metrics not published",
                           error=str(exc))  # fmt: skip

    def start_admin(self) -> int:
        """Bind the admin port here and serve it from a process of its own
        (servers/admin_supervisor.py); returns the bound port."""
        s = self.settings
        assert self._own_group is not None  # (only without --workers: see servers/workers.py)
        sock = bind_admin(s.admin_host, s.admin_port)
        # The console's SDK export names this process's Bootstrap port as bound.
        settings = dataclasses.replace(s, bootstrap_port=self.bootstrap_address()[1])
        self.admin = AdminProcess(settings, sock, self._own_group, slots=1)
        self.admin.start()
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise(self.admin))
        return int(sock.getsockname()[1])

    @staticmethod
    async def _supervise(admin: AdminProcess) -> None:
        while True:
            await asyncio.sleep(0.2)
            admin.poll()

    async def stop(self) -> None:
        await cancel_and_wait(self._supervisor)  # no restart of the admin process now
        if self.lease is not None:
            await self.lease.stop()
        for server in self.servers:
            server.close()
        deadline = time.monotonic() + self.settings.read_timeout_s
        while any(g.active for g in self.gates) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for server in self.servers:
            # uvloop's wait_closed waits for every connection to close: bounded, so that a
            # connection stuck on a store that went away cannot hold the shutdown forever.
            try:
                await asyncio.wait_for(server.wait_closed(), max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                logs.event(logs.get("main"), logging.WARNING, "connections left at shutdown")
        if self.view is not None:
            await self.view.stop()
        if self.keys is not None:
            await self.keys.stop()
        if self.presigner is not None:
            await self.presigner.stop()
        for pool in self.pools:
            pool.shutdown()
        await cancel_and_wait(self._publisher)
        if self.admin is not None:
            self.admin.stop()
        if self._own_group is not None:
            self._own_group.remove()


def _commit_snapshot(store: RegistryStore) -> HistogramSnapshot | None:
    durations = store.commit_durations()
    if durations is None:
        return None
    bounds, counts, total = durations
    return HistogramSnapshot(bounds, tuple(counts), total)


def secure_datadir(datadir: DataDir) -> None:
    """Tighten a data directory open to group or others, with one warning; raises
    :class:`~servers.datadir.UnsafeDataDir` when it cannot be (docs/operations.md)."""
    old = datadir.tighten()
    if old is not None:
        logs.event(
            logs.get("main"),
            logging.WARNING,
            "data directory tightened",
            path=str(datadir.root),
            old_mode=f"{old:04o}",
            new_mode=f"{old & PRIVATE_DIR_MODE:04o}",
        )
    # Keys readable by others are made private, not refused: as for the directory, a
    # refusal would stop a running fleet over a mode a restart can fix itself.
    for path, mode in datadir.tighten_private_files():
        logs.event(
            logs.get("main"),
            logging.WARNING,
            "private file tightened",
            path=str(path),
            old_mode=f"{mode:04o}",
            new_mode=f"{mode & 0o600:04o}",
        )


async def serve(
    settings: Settings,
    *,
    bootstrap: bool,
    operations: bool,
    prepare: Callable[[RegistryStore], Awaitable[None]] | None = None,
    on_ready: Hook | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run the chosen services until ``stop`` is set (by default: SIGINT or SIGTERM)."""
    log = logs.get("main")
    datadir = DataDir(settings.data)
    secure_datadir(datadir)  # (a no-op when the entry point did it already)
    if bootstrap:  # fail before binding anything when a key is missing or does not fit
        datadir.keyring()
    if operations:
        datadir.operations_private_key()
    services_count = int(bootstrap) + int(operations)
    # (The admin port's connections are its own process's: servers/admin_process.py.)
    fd_limit, fd_wanted = ensure_fd_limit(services_count * settings.max_connections)
    if fd_limit < fd_wanted:
        logs.event(
            log,
            logging.WARNING,
            "open file limit too low",
            limit=fd_limit,
            wanted=fd_wanted,
            hint="raise the hard RLIMIT_NOFILE (ulimit -Hn) or lower max_connections",
        )
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with store_for(settings, datadir) as store:
        if prepare is not None:
            await prepare(store)
        services = _Services(settings, datadir, store)
        try:
            # Operations first: its lease is in the node table before a Bootstrap reads it.
            operations_port = await services.start_operations() if operations else None
            admin = settings.admin_port >= 0
            bootstrap_port = await services.start_bootstrap() if bootstrap else None
            services.publish()  # before the admin process reads it
            listeners = Listeners(
                host=settings.host,
                bootstrap_port=bootstrap_port,
                operations_port=operations_port,
                admin_port=services.start_admin() if admin else None,
                admin_host=settings.admin_host if admin else None,
            )
            for name in ("bootstrap", "operations", "admin"):
                port = getattr(listeners, f"{name}_port")
                if port is not None:
                    host = listeners.admin_host if name == "admin" else settings.host
                    logs.event(
                        log,
                        logging.INFO,
                        "listening",
                        service=name,
                        address=f"{host}:{port}",
                        # Which hot path serves: a silent fall-back to pure Python shows here.
                        implementation=kaa_wire.IMPLEMENTATION,
                        **services.key_fields(name),
                    )
            if on_ready is not None:
                await on_ready(store, listeners)
            await stop.wait()
            logs.event(log, logging.INFO, "stopping")
        finally:
            await services.stop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(signum)
    logs.event(log, logging.INFO, "stopped")


def run(main: Coroutine[Any, Any, None]) -> int:
    """Run ``main`` on a uvloop event loop: 0 on a clean exit, 1 when it cannot start."""
    try:
        uvloop.run(main)
    except KeyboardInterrupt:
        return 130
    except (OSError, DataDirError, KeyringError, StoreError) as exc:
        return cannot_start(exc)
    return 0


def cannot_start(error: Exception) -> int:
    """One ``error:`` line on stderr; the exit code of a process that cannot start (1)."""
    print(f"error: {error}", file=sys.stderr)
    return 1


def print_line(text: str) -> None:
    """A line for humans and tests on stdout (logs go to stderr)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
