"""The connection floor: what one connection costs a uvloop server that does no work.

A registration is one TCP connection: accept, read one request frame, write one answer,
close. That part costs the server CPU (system calls, the kernel's loopback TCP, uvloop and
one asyncio protocol object) whatever the protocol does. This server does only that: it
frames the request with kaa_wire's ``Framer`` and answers every whole frame with
``ANSWER_SIZE`` bytes (the size of a REGISTER_RESPONSE), then closes. Loaded with the same
generator and the same requests as the real server, its CPU per connection is the
*connection floor*: with the crypto floor it bounds what a server of this shape (one
Python process, one connection per registration) could reach on one core.

``python -m benchmarks.loadgen.floor_server --port-file F`` serves on 127.0.0.1 until
SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import uvloop

from benchmarks.environment import child_environment
from benchmarks.loadgen import cpu
from kaa_wire import Framer, KaaWireError

__all__ = ["ANSWER_SIZE", "FloorServer"]

#: Bytes of the sealed REGISTER_RESPONSE the benchmark's registrations get.
ANSWER_SIZE = 71
_ANSWER = bytes(ANSWER_SIZE)
_REPO = Path(__file__).resolve().parents[2]


class _Answer(asyncio.Protocol):
    __slots__ = ("_framer", "_transport")

    def __init__(self) -> None:
        self._framer = Framer()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        self._framer.receive_data(data)
        try:
            frame = self._framer.next_frame()
        except KaaWireError:
            frame = None
            self._transport.abort()
        if frame is not None:
            self._transport.write(_ANSWER)
            self._transport.close()


async def _serve(port_file: Path) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Answer, "127.0.0.1", 0, backlog=4096)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    port = server.sockets[0].getsockname()[1]
    port_file.write_text(str(port))
    await stop.wait()
    server.close()


class FloorServer:
    """Runs the floor server as its own process (pinned like the server under test)."""

    def __init__(self, workdir: Path, cpus: list[int] | None) -> None:
        self._port_file = workdir / "floor-server.port"
        self._cpus = cpus
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    def __enter__(self) -> FloorServer:
        command = [sys.executable, "-m", "benchmarks.loadgen.floor_server"]
        command += ["--port-file", str(self._port_file)]
        self.process = subprocess.Popen(
            cpu.pinned(command, self._cpus), env=child_environment(_REPO)
        )
        deadline = time.monotonic() + 30
        while not self._port_file.exists() or not self._port_file.read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError("the floor server did not start")
            time.sleep(0.02)
        self.port = int(self._port_file.read_text())
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
            self.process = None


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loadgen.floor_server")
    parser.add_argument("--port-file", type=Path, required=True)
    args = parser.parse_args()
    uvloop.run(_serve(args.port_file))


if __name__ == "__main__":
    main()
