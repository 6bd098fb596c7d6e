"""How much work a registry store takes on, and how its writer batches: one set for both
backends, whose defaults are also the defaults of the settings that override them
(``max_pending_writes`` and ``group_commit_ms``, servers/config.py)."""

from __future__ import annotations

import dataclasses

__all__ = ["StoreLimits", "DEFAULT_LIMITS"]


@dataclasses.dataclass(frozen=True, slots=True)
class StoreLimits:
    #: Registrations queued or committing; one more raises StoreBusy (control writes are
    #: never refused).
    max_pending_writes: int = 4096
    #: How long the writer gathers a batch behind its first registration.
    group_commit_ms: float = 2.0
    #: The most registrations one commit holds.
    max_batch: int = 512
    #: Reads queued or running; one more raises StoreBusy.
    max_pending_reads: int = 1024

    def __post_init__(self) -> None:
        checks = (
            (self.max_pending_writes >= 1, "max_pending_writes must be >= 1"),
            (self.group_commit_ms >= 0, "group_commit_ms must be >= 0"),
            (self.max_batch >= 1, "max_batch must be >= 1"),
            (self.max_pending_reads >= 1, "max_pending_reads must be >= 1"),
        )
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @property
    def window_s(self) -> float:
        """``group_commit_ms`` in seconds."""
        return self.group_commit_ms / 1000


#: The defaults, for signatures and settings.
DEFAULT_LIMITS = StoreLimits()
