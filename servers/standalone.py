"""One service per process: ``python -m servers.bootstrap`` and ``python -m servers.operations``.

Both need an initialized data directory (``python -m servers.control init``) and share its
keys and database with every other service on the machine; ``--port`` is that service's
port setting (``bootstrap_port`` or ``operations_port``). The admin port is off unless
``--admin-port`` is given. ``--workers N`` runs N processes on that port
(servers/workers.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from servers import config as cfg
from servers import logs
from servers.datadir import DataDir, DataDirError
from servers.runtime import Listeners, cannot_start, print_line, run, secure_datadir, serve
from servers.store.base import RegistryStore

__all__ = ["main"]

_COMMON = (
    "data",
    "store",
    "workers",
    "host",
    "admin_port",
    "admin_host",
    "admin_max_connections",
    "admin_timeout_s",
    "admin_requests_per_s",
    "log_json",
    "log_level",
    "max_frame_size",
    "read_timeout_s",
    "max_connections",
    "retry_after_ms",
    "max_pending_writes",
    "refresh_s",
    # Both: a Bootstrap on a wildcard --host checks it too (servers.config).
    "advertise_host",
)
_KEYS = {
    "bootstrap": (
        "bootstrap_port",
        "sign_threads",
        "max_pending_signs",
        "resolution_valid_s",
        "presigned_valid_s",
    ),
    "operations": (
        "operations_port",
        "priority",
        "weight",
        "node_id",
        "lease_s",
        "crypto_threads",
        "max_pending_crypto",
        "group_commit_ms",
        "replay_window_s",
        "reconnect_after_s",
        "retry_base_ms",
    ),
}
_DESCRIPTIONS = {
    "bootstrap": "Run one Bootstrap service: answer resolutions with the signed list of "
    "live Operations services.",
    "operations": "Run one Operations service: register endpoints, and hold a node lease so "
    "Bootstraps list this node.",
}


def main(service: str, argv: Sequence[str] | None = None) -> int:
    port_key = f"{service}_port"
    defaults = {"admin_port": -1}
    parser = cfg.OneLineParser(
        prog=f"python -m servers.{service}", description=_DESCRIPTIONS[service]
    )
    cfg.add_arguments(
        parser, (*_COMMON, *_KEYS[service]), renames={port_key: "--port"}, defaults=defaults
    )
    args = parser.parse_args(argv)
    try:
        settings = cfg.load_settings(args, defaults=defaults)
    except cfg.ConfigError as exc:
        parser.error(str(exc))
    logs.configure(settings.log_json, settings.log_level)
    try:
        secure_datadir(DataDir(settings.data))  # once, before any worker starts
    except (DataDirError, OSError) as exc:
        return cannot_start(exc)

    async def on_ready(store: RegistryStore, listeners: Listeners) -> None:
        print_line(f"{service} {settings.host}:{getattr(listeners, port_key)}")
        if listeners.admin_port is not None:
            print_line(f"metrics {listeners.admin_url('/metrics')}")

    if settings.workers > 1:
        from servers.workers import serve_workers

        def workers_ready(shared: Listeners, each: list[Listeners]) -> None:
            print_line(f"{service} {settings.host}:{getattr(shared, port_key)}")
            if shared.admin_port is not None:  # the group's one admin port
                print_line(f"metrics {shared.admin_url('/metrics')}")

        return serve_workers(
            settings,
            bootstrap=service == "bootstrap",
            operations=service == "operations",
            on_ready=workers_ready,
        )
    return run(
        serve(
            settings,
            bootstrap=service == "bootstrap",
            operations=service == "operations",
            on_ready=on_ready,
        )
    )
