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

__all__ = ["configure", "event", "get"]

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
    """Send every ``servers.*`` log line to ``stream`` (stderr), one event per line."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_Formatter(json_lines))
    root = logging.getLogger("servers")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def get(name: str) -> logging.Logger:
    return logging.getLogger(f"servers.{name}")


def event(logger: logging.Logger, level: int, what: str, /, **fields: Any) -> None:
    """Log event ``what`` with ``fields`` (cheap when the level is off)."""
    if logger.isEnabledFor(level):
        logger.log(level, what, extra={"fields": fields})
