"""The environment of a service process that a test or a benchmark starts.

Not part of the installed servers: only tests/ and benchmarks/, which run from a checkout,
start service processes of their own.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["child_environment"]


def child_environment(
    repo: Path | None = None, *, pure_python: bool | None = None
) -> dict[str, str]:
    """The environment for a service process that a test or a benchmark starts.

    This process's environment without its ``KAA_*`` service settings, which would override
    the child's own flags, but with the implementation choice (``KAA_WIRE_*``) kept, so a
    pure-Python test run starts pure-Python servers. ``pure_python`` forces the choice
    either way; ``repo`` goes first on PYTHONPATH.
    """
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("KAA_") or k.startswith("KAA_WIRE_")
    }
    if pure_python is not None:
        env.pop("KAA_WIRE_PUREPYTHON", None)
        if pure_python:
            env["KAA_WIRE_PUREPYTHON"] = "1"
    if repo is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(repo), env.get("PYTHONPATH")]))
    return env
