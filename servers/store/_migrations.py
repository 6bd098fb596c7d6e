"""Ordered, versioned schema migration steps: what both backends' runners share.

A step runs once; the database records which steps it has (PostgreSQL in a table,
SQLite in ``user_version``). Never edit a released step: add the next one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence

from servers.store.base import StoreError

__all__ = ["Migration", "pending"]


@dataclasses.dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def pending(steps: Sequence[Migration], applied: Collection[int]) -> list[Migration]:
    """The steps of ``steps`` (ordered by version) not in ``applied``, in order.

    Raises StoreError when the database has a step newer than the last of ``steps``: newer
    code migrated it, and this code must not use it.
    """
    latest = steps[-1].version
    newest = max(applied, default=0)
    if newest > latest:
        raise StoreError(f"database schema {newest} is newer than this code ({latest})")
    return [step for step in steps if step.version not in applied]
