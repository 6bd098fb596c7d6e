"""Which backend the ``store`` setting names, and the store it makes.

The setting is empty (or ``sqlite``) for the data directory's SQLite file, or a PostgreSQL
DSN. A backend's module is imported only when it is chosen: asyncpg only with a DSN.
"""

from __future__ import annotations

import urllib.parse
from typing import TYPE_CHECKING

from servers.store.base import RegistryStore, StoreError

if TYPE_CHECKING:  # both import the store: only their types are needed here
    from servers.config import Settings
    from servers.datadir import DataDir

__all__ = ["is_postgres_dsn", "is_store_setting", "store_for"]

_POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_dsn(location: str) -> bool:
    return location.startswith(_POSTGRES_SCHEMES)


def is_store_setting(location: str) -> bool:
    """Whether ``location`` is a value the ``store`` setting takes: empty, ``sqlite``, or a
    PostgreSQL DSN whose port (if any) is a TCP port."""
    if location in ("", "sqlite"):
        return True
    if not is_postgres_dsn(location):
        return False
    try:
        port = urllib.parse.urlsplit(location).port  # raises for a port past 65535
    except ValueError:
        return False
    return port is None or port >= 1


def store_for(settings: Settings, datadir: DataDir, *, read_only: bool = False) -> RegistryStore:
    """The registry store ``settings`` name, not yet open (``async with`` opens it): the
    PostgreSQL database of a DSN, else ``datadir``'s SQLite file. ``read_only``: the caller
    only reads; a SQLite file is then opened read-only (it may be a read-only copy)."""
    if is_postgres_dsn(settings.store):
        try:
            from servers.store.postgres import PostgresStore
        except ModuleNotFoundError as exc:
            if exc.name != "asyncpg":
                raise
            # A device install has no asyncpg: say what to install, not a traceback.
            raise StoreError(
                "a PostgreSQL store needs the postgres extra: pip install 'kaa-wire[postgres]'"
            ) from None
        return PostgresStore(settings.store, limits=settings.store_limits)
    from servers.store.sqlite import SqliteStore

    return SqliteStore(datadir.database, limits=settings.store_limits, read_only=read_only)
