"""The embedded default of ``python -m servers``: a default application and SDK token,
reused across restarts, and the SDK export written once the listeners are bound."""

from __future__ import annotations

import dataclasses
import json
import logging
import os

from kaa_files import atomic_write
from servers import logs
from servers.config import Settings
from servers.control import actions
from servers.control.export import build_sdk_config, write_export
from servers.datadir import DataDir
from servers.runtime import Listeners
from servers.store.base import RegistryStore

__all__ = ["Defaults", "ensure_defaults", "export_for_listeners", "DEFAULT_APP_NAME"]

DEFAULT_APP_NAME = "default"
DEFAULT_CONFIG = b"{}"


@dataclasses.dataclass(frozen=True, slots=True)
class Defaults:
    application_token: str
    sdk_token: str


async def _still_valid(store: RegistryStore, defaults: Defaults) -> bool:
    if await store.get_application(defaults.application_token) is None:
        return False
    found = await store.find_sdk_token(actions.sdk_token_hash(defaults.sdk_token))
    return found is not None and found.application == defaults.application_token


async def ensure_defaults(store: RegistryStore, datadir: DataDir) -> Defaults:
    """The default application and SDK token: those of DIR/defaults.json, else new ones."""
    log = logs.get("main")
    if datadir.defaults.exists():
        try:
            document = json.loads(datadir.defaults.read_text())
            defaults = Defaults(str(document["application_token"]), str(document["sdk_token"]))
        except (ValueError, KeyError, TypeError):
            defaults = None
        if defaults is not None and await _still_valid(store, defaults):
            return defaults
        logs.event(log, logging.WARNING, "defaults unusable, creating new ones")
    app = await actions.create_application(
        store, name=DEFAULT_APP_NAME, config=DEFAULT_CONFIG, who="servers:default"
    )
    token = await actions.create_sdk_token(store, app.token, who="servers:default")
    defaults = Defaults(app.token, token)
    # 0600: the SDK token is shown once by the Control tool; this file keeps it for reuse.
    atomic_write(datadir.defaults, json.dumps(dataclasses.asdict(defaults)).encode(), 0o600)
    logs.event(log, logging.INFO, "default application created", name=DEFAULT_APP_NAME)
    return defaults


async def export_for_listeners(
    store: RegistryStore,
    datadir: DataDir,
    settings: Settings,
    defaults: Defaults,
    listeners: Listeners,
) -> None:
    """Write DIR/sdk.json and DIR/sdk.h with the bound Bootstrap port, and
    DIR/listeners.json with every bound address."""
    app = await store.get_application(defaults.application_token)
    assert app is not None and listeners.bootstrap_port is not None
    keyring = datadir.keyring()
    config = build_sdk_config(
        app,
        defaults.sdk_token,
        [(settings.public_host, listeners.bootstrap_port)],
        keyring.public_key_pem,
        keyring.generation,
        settings.max_frame_size,
    )
    write_export(config, datadir.sdk_json, datadir.sdk_header)
    atomic_write(
        datadir.listeners,
        json.dumps(
            {
                "host": listeners.host,
                "bootstrap_port": listeners.bootstrap_port,
                "operations_port": listeners.operations_port,
                "admin_port": listeners.admin_port,
                "admin_host": listeners.admin_host,
                "max_frame_size": settings.max_frame_size,  # (servers.control checks states)
                "pid": os.getpid(),
            }
        ).encode(),
        0o644,
    )
