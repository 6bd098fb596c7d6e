"""Helpers for the cluster tests: metrics of one process, child processes."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from servers_harness import IO_TIMEOUT_S


def metric_total(url: str, name: str) -> float:
    """The sum of every sample of metric ``name`` (all label sets) at a /metrics URL."""
    with urllib.request.urlopen(url, timeout=IO_TIMEOUT_S) as answer:
        text = answer.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def children_of(pid: int) -> list[int]:
    """The live child processes of ``pid`` (Linux /proc)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def is_admin_process(pid: int) -> bool:
    """Whether ``pid`` runs ``python -m servers.admin_process`` (servers/admin_supervisor.py)."""
    try:
        return b"servers.admin_process" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def workers_of(pid: int) -> list[int]:
    """The worker processes of the supervisor ``pid``: its children but the admin process."""
    return [child for child in children_of(pid) if not is_admin_process(child)]


def admin_of(pid: int) -> list[int]:
    """The admin process of ``pid`` (a list: none while it restarts)."""
    return [child for child in children_of(pid) if is_admin_process(child)]
