"""The servers under test: ``python -m servers`` on a fresh temporary data directory.

One process runs the Bootstrap and the Operations service on one event loop (the embedded
default), pinned with ``taskset`` to the server cores. Resolutions and registrations are
loaded one after the other, never together, so the process's CPU use over a window is
that of the one service under load. ``KAA_WIRE_PUREPYTHON=1`` in its environment selects
the pure-Python hot paths; which implementation actually runs is read back from the
process's memory map (is ``kaa_wire_ext/_ext*.so`` loaded?).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.environment import child_environment
from benchmarks.loadgen import cpu

__all__ = ["ServerUnderTest", "loaded_implementation"]

REPO = Path(__file__).resolve().parents[2]


def loaded_implementation(pid: int) -> str:
    """ "ext" when the process has kaa_wire_ext's compiled module mapped, else "py"."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return "ext" if "kaa_wire_ext/_ext" in maps else "py"


class ServerUnderTest:
    def __init__(
        self,
        implementation: str,
        *,
        cpus: list[int] | None,
        extra_args: list[str] | None = None,
        workdir: Path | None = None,
    ) -> None:
        if implementation not in ("ext", "py"):
            raise ValueError("implementation is ext or py")
        self.implementation = implementation
        self.cpus = cpus
        self.extra_args = extra_args or []
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None
        self.listeners: dict[str, Any] = {}
        self.started_s = 0.0

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def data(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "data"

    @property
    def sdk_json(self) -> Path:
        return self.data / "sdk.json"

    def start(self, timeout: float = 60.0) -> ServerUnderTest:
        if self.workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="kaa-bench-")
            self.workdir = Path(self._tmp.name)
        env = child_environment(REPO, pure_python=self.implementation == "py")
        command = [
            sys.executable, "-m", "servers", "--data", str(self.data),
            "--host", "127.0.0.1", "--bootstrap-port", "0", "--operations-port", "0",
            "--admin-port", "0", *self.extra_args,
        ]  # fmt: skip
        command = cpu.pinned(command, self.cpus)
        began = time.monotonic()
        with (
            open(self.workdir / "server.out", "wb") as out,
            open(self.workdir / "server.err", "wb") as err,
        ):
            self.process = subprocess.Popen(
                command, stdout=out, stderr=err, env=env, cwd=self.workdir
            )
        listeners = self.data / "listeners.json"
        while not (listeners.exists() and self.sdk_json.exists()):
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited early:\n{self.logs()}")
            if time.monotonic() - began > timeout:
                self.stop()
                raise RuntimeError(f"the server did not start in {timeout} s:\n{self.logs()}")
            time.sleep(0.02)
        self.listeners = json.loads(listeners.read_text())
        self.started_s = time.monotonic() - began
        loaded = loaded_implementation(self.pid)
        if loaded != self.implementation:
            self.stop()
            raise RuntimeError(f"asked for the {self.implementation} server, it runs {loaded}")
        return self

    def logs(self) -> str:
        assert self.workdir is not None
        path = self.workdir / "server.err"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> int | None:
        code = None
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
            try:
                code = self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                code = self.process.wait()
            self.process = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        return code

    def __enter__(self) -> ServerUnderTest:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
