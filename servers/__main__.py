"""``python -m servers``: the whole system on one machine, ready to use.

With no arguments: initialize ./kaa-data if missing, create (or reuse) a default
application and SDK token, run one Bootstrap and one Operations service in this process on
one uvloop event loop, write DIR/sdk.json and DIR/sdk.h once the listeners are bound, and
run until Ctrl-C or SIGTERM. ``--workers N`` runs N such processes on the same ports
(servers/workers.py).
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Sequence

from servers import config as cfg
from servers import logs
from servers.datadir import DataDir, DataDirError
from servers.embedded import Defaults, ensure_defaults, export_for_listeners
from servers.runtime import Listeners, cannot_start, print_line, run, secure_datadir, serve
from servers.store.base import RegistryStore
from servers.store.factory import store_for


def main(argv: Sequence[str] | None = None) -> int:
    parser = cfg.OneLineParser(
        prog="python -m servers",
        description="Run a Bootstrap and an Operations service with a default application; "
        "write the SDK configuration to DIR/sdk.json and DIR/sdk.h.",
    )
    cfg.add_arguments(parser, cfg.OPTIONS)
    args = parser.parse_args(argv)
    try:
        settings = cfg.load_settings(args)
    except cfg.ConfigError as exc:
        parser.error(str(exc))
    logs.configure(settings.log_json, settings.log_level)
    datadir = DataDir(settings.data)
    try:
        secure_datadir(datadir)  # before a key is written into it
        datadir.lock_for_main()  # held until this process exits
        if datadir.create_keys():
            print_line(f"initialized {datadir.root}")
    except (DataDirError, OSError) as exc:
        return cannot_start(exc)
    defaults: list[Defaults] = []
    wrote_listeners: list[bool] = []

    async def prepare(store: RegistryStore) -> None:
        defaults.append(await ensure_defaults(store, datadir))

    async def on_ready(store: RegistryStore, listeners: Listeners) -> None:
        await export_for_listeners(store, datadir, settings, defaults[0], listeners)
        wrote_listeners.append(True)
        host = settings.host
        print_line(f"bootstrap  {host}:{listeners.bootstrap_port}")
        print_line(f"operations {host}:{listeners.operations_port}")
        if listeners.admin_port is not None:
            print_line(f"metrics    {listeners.admin_url('/metrics')}")
            print_line(f"console    {listeners.admin_url()}")
        print_line(f"sdk config {datadir.sdk_json}")
        print_line(f"c header   {datadir.sdk_header}")

    try:
        if settings.workers > 1:
            return _main_workers(settings, datadir, prepare, on_ready)
        return run(
            serve(settings, bootstrap=True, operations=True, prepare=prepare, on_ready=on_ready)
        )
    finally:
        if wrote_listeners:  # never another instance's (one that failed to bind writes none)
            datadir.listeners.unlink(missing_ok=True)


def _main_workers(
    settings: cfg.Settings,
    datadir: DataDir,
    prepare: Callable[[RegistryStore], Awaitable[None]],
    on_ready: Callable[[RegistryStore, Listeners], Awaitable[None]],
) -> int:
    """``--workers N``: the default application once, here; N workers serve; the SDK
    export is written here once they all listen."""
    from servers.workers import serve_workers

    async def with_store(step: Callable[[RegistryStore], Awaitable[None]]) -> None:
        async with store_for(settings, datadir) as store:
            await step(store)

    code = run(with_store(prepare))  # before the fork: no thread or loop survives it
    if code:
        return code

    def workers_ready(shared: Listeners, each: list[Listeners]) -> None:
        async def export(store: RegistryStore) -> None:
            await on_ready(store, shared)  # (the group's one admin port with the rest)

        if run(with_store(export)):  # writes listeners.json last: the group is ready
            raise RuntimeError("cannot write the SDK export")

    return serve_workers(settings, bootstrap=True, operations=True, on_ready=workers_ready)


if __name__ == "__main__":
    sys.exit(main())
