"""Structured logs: one line per event, as ``key=value`` text or as one JSON object.

Call :func:`event` with an event name and fields. Never pass a token, key or profile as a
field: endpoint ids, application names, addresses, codes and counts are fine.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import IO, Any

__all__ = ["Trouble", "configure", "event", "get"]

_RESERVED = ("ts", "level", "logger", "event")


def _timestamp(created: float) -> str:
    seconds = int(created)
    millis = int((created - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def _text_value(value: Any) -> str:
    text = str(value)
    if not text or any(c in text for c in ' "=\n\t'):
        return json.dumps(text)
    return text


class _Formatter(logging.Formatter):
    def __init__(self, json_lines: bool) -> None:
        super().__init__()
        self._json = json_lines

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = dict(getattr(record, "fields", {}))
        if record.exc_info:
            fields["error"] = self.formatException(record.exc_info)
        head = {
            "ts": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        if self._json:
            for key in _RESERVED:
                fields.pop(key, None)
            return json.dumps({**head, **fields}, default=str, separators=(",", ":"))
        parts = [head["ts"], f"{head['level']:<7}", head["logger"], head["event"]]
        parts.extend(f"{key}={_text_value(value)}" for key, value in fields.items())
        return " ".join(parts)


def configure(json_lines: bool = False, level: str = "info", stream: IO[str] | None = None) -> None:
    """Send every ``servers.*`` log line to ``stream`` (stderr), one event per line; and the
    warnings and errors of the libraries underneath (asyncio, asyncpg) through the same
    formatter, so a ``--log-json`` stream stays JSON whatever logs into it."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_Formatter(json_lines))
    ours = logging.getLogger("servers")
    ours.handlers[:] = [handler]
    ours.setLevel(level.upper())
    ours.propagate = False
    everything = logging.getLogger()
    everything.handlers[:] = [handler]
    everything.setLevel(logging.WARNING)


class Trouble:
    """The failures of one background job (a refresh, a renewal), or one kind of refusal: how
    long to wait before the next try, a log that says the first failure, then at most one
    line per ``log_every_s`` (with the count, and how many went unlogged since the last
    line: ``suppressed``), and the recovery; and whether the job is healthy.

    ``event`` names the failure's log line (default: ``"<what> failed"``), ``level`` its
    level: a flood of refused connections logs one line per ``log_every_s`` this way, not
    one per connection.
    """

    def __init__(
        self,
        log: logging.Logger,
        what: str,
        *,
        base_s: float,
        max_s: float = 30.0,
        log_every_s: float = 30.0,
        event: str | None = None,
        level: int = logging.WARNING,
    ) -> None:
        self._log = log
        self._what = what
        self._event = event or f"{what} failed"
        self._level = level
        self._base_s = base_s
        self._max_s = max(max_s, base_s)
        self._log_every_s = log_every_s
        self.failures = 0
        self._suppressed = 0
        self._logged_at = 0.0

    @property
    def healthy(self) -> bool:
        return self.failures == 0

    def log_due(self) -> bool:
        """Whether the next failure gets a log line (to compute costly fields only then)."""
        return self.failures == 0 or time.monotonic() - self._logged_at >= self._log_every_s

    def failed(self, error: BaseException | str, **fields: Any) -> float:
        """Record a failure (``fields``: more to log about it); the delay before the next
        try (doubling, capped)."""
        if self.log_due():
            self._logged_at = time.monotonic()
            self.failures += 1
            reason = error if isinstance(error, str) else str(error) or type(error).__name__
            event(self._log, self._level, self._event, **fields, error=reason,
                  failures=self.failures, suppressed=self._suppressed)  # fmt: skip
            self._suppressed = 0
        else:
            self.failures += 1
            self._suppressed += 1
        return float(min(self._max_s, self._base_s * 2 ** min(self.failures - 1, 16)))

    def succeeded(self) -> None:
        if self.failures:
            event(self._log, logging.INFO, f"{self._what} recovered", failures=self.failures)
        self.failures = 0
        self._suppressed = 0


def get(name: str) -> logging.Logger:
    return logging.getLogger(f"servers.{name}")


def event(logger: logging.Logger, level: int, what: str, /, **fields: Any) -> None:
    """Log event ``what`` with ``fields`` (cheap when the level is off)."""
    if logger.isEnabledFor(level):
        logger.log(level, what, extra={"fields": fields})
