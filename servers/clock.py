"""The one place the servers read the wall clock (the kaa_wire core never does)."""

from __future__ import annotations

import time

__all__ = ["wall_ms"]


def wall_ms() -> int:
    """Milliseconds since the Unix epoch."""
    return time.time_ns() // 1_000_000
