"""Control actions on the registry, shared by the Control CLI and ``python -m servers``.

Each mutation writes its audit entry in the same transaction. Tokens come from
``secrets``; SDK tokens are stored by SHA-256 only, so the plaintext is shown once.
"""

from __future__ import annotations

import getpass
import hashlib
import secrets

from kaa_wire import Topic
from servers.clock import wall_ms
from servers.store.base import (
    Application,
    AuditEntry,
    Balancing,
    NotFound,
    RegistryStore,
    SdkToken,
)

__all__ = ["actor", "new_token", "sdk_token_hash", "create_application", "create_sdk_token"]


def actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"control:{user}"


def new_token() -> str:
    """22 URL-safe characters from 128 random bits, never starting with "-".

    A leading "-" would read as an option on every command line that takes the token.
    """
    while True:
        token = secrets.token_urlsafe(16)
        if not token.startswith("-"):
            return token


def sdk_token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("ascii")).digest()


async def create_application(
    store: RegistryStore,
    *,
    name: str,
    config: bytes,
    config_version: int = 1,
    topics: tuple[Topic, ...] = (),
    balancing: Balancing = Balancing.STATIC,
    cached_signature: bool = False,
    who: str | None = None,
) -> Application:
    now = wall_ms()
    app = Application(
        token=new_token(),
        name=name,
        config=config,
        config_version=config_version,
        topics=topics,
        balancing=balancing,
        cached_signature=cached_signature,
        created_ms=now,
    )
    detail = f"name={name} balancing={balancing} cached_signature={cached_signature}"
    await store.create_application(app, AuditEntry(now, who or actor(), "app.create", name, detail))
    return app


async def existing_application(store: RegistryStore, token: str) -> Application:
    """The application with ``token``; NotFound when there is none."""
    app = await store.get_application(token)
    if app is None:
        raise NotFound("no such application")
    return app


async def create_sdk_token(store: RegistryStore, application: str, who: str | None = None) -> str:
    """A new SDK token for ``application`` (raises NotFound); the plaintext, shown once."""
    app = await existing_application(store, application)
    token = new_token()
    now = wall_ms()
    record = SdkToken(sdk_token_hash(token), application, now)
    audit = AuditEntry(now, who or actor(), "sdk.create", app.name, "")
    await store.add_sdk_token(record, audit)
    return token
