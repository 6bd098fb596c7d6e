"""Fixtures for the client tests (tests/client/ only): both APIs, keys, SDK files, the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import kaa_files
from client import Device, Outcome
from kaa_wire import ResolveClient, Resolved, _crypto
from kaa_wire._constants import NONCE_SIZE
from kaa_wire.sdk_config import BootstrapServer, SdkConfig
from tests.servers.servers_harness import ServerProcess, control, wait_until

ROOT = Path(__file__).resolve().parents[2]

Register = Callable[[Device, bytes], Outcome]


@pytest.fixture(params=["blocking", "asyncio"])
def api(request: pytest.FixtureRequest) -> str:
    """Each client API in turn."""
    return str(request.param)


@pytest.fixture
def register(api: str) -> Register:
    """``register(device, profile)`` through the API under test."""
    if api == "blocking":
        return lambda device, profile: device.register(profile)
    return lambda device, profile: asyncio.run(device.register_async(profile))


@pytest.fixture
def closed_port() -> int:
    """A loopback port with nothing listening (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def seed_dir(tmp_path: Path) -> Callable[[str], Path]:
    """``seed_dir(name)``: a state directory holding a fresh key pair and nothing else.

    Tests that are not about first boot start from one, so the client's own first-boot
    path is exercised where it matters and each test still is a new endpoint.
    """

    def make(name: str = "device") -> Path:
        directory = tmp_path / name
        directory.mkdir(mode=0o700)
        key = _crypto.generate_rsa_key(2048)
        kaa_files.save_private_key(directory / "key.private", key)
        kaa_files.save_public_key(directory / "key.public", key)
        return directory

    return make


def write_sdk(path: Path, config: SdkConfig) -> Path:
    path.write_text(config.to_json())
    return path


def sdk_with_bootstraps(
    base: SdkConfig | None, servers: list[tuple[Any, ...]], **fields: Any
) -> SdkConfig:
    """An SDK configuration like ``base`` with another Bootstrap list: (host, port, pem),
    or (host, port, pem, key generation)."""
    bootstraps = tuple(BootstrapServer(*server) for server in servers)
    if base is None:
        return SdkConfig("app-token", "sdk-token", bootstraps, **fields)
    document = json.loads(base.to_json())
    document.update(fields)
    document["bootstrap_servers"] = [
        {
            "host": b.host,
            "port": b.port,
            "public_key_pem": b.public_key_pem,
            "key_generation": b.key_generation,
        }
        for b in bootstraps
    ]
    return SdkConfig.from_json(json.dumps(document))


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -m client ARGS`` in a child process, with this checkout on the path."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "client", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def cli_json(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The one JSON object the CLI printed (fails with its stderr when there is none)."""
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, f"stdout={result.stdout!r} stderr={result.stderr!r}"
    doc: dict[str, Any] = json.loads(lines[0])
    return doc


# -- real servers (python -m servers, from servers/) ---------------------------------------


class Servers:
    """``python -m servers`` (one Bootstrap + one Operations node on SQLite) in ``data``."""

    def __init__(self, data: Path, *extra: str) -> None:
        data.mkdir(parents=True, exist_ok=True)
        self.data = data
        self.sdk_path = data / "sdk.json"
        self.sdk_path.unlink(missing_ok=True)
        self.main = ServerProcess(
            "servers",
            ["--data", str(data), "--host", "127.0.0.1", "--bootstrap-port", "0",
             "--operations-port", "0", "--admin-port", "0", *extra],
            data.parent,
            data.name,
        )  # fmt: skip
        self.extra: list[ServerProcess] = []

        def exported() -> bool:
            self.main.check_alive()
            return self.sdk_path.exists()

        wait_until(exported, "python -m servers to write sdk.json")
        self.sdk = SdkConfig.from_json(self.sdk_path.read_text())

    def start_operations(self, *args: str) -> tuple[ServerProcess, int]:
        """An extra ``python -m servers.operations`` node on the same data: (process, port)."""
        name = f"{self.data.name}-ops{len(self.extra) + 1}"
        node = ServerProcess(
            "servers.operations",
            ["--data", str(self.data), "--host", "127.0.0.1", "--port", "0", *args],
            self.data.parent,
            name,
        )
        self.extra.append(node)

        port = int(node.wait_for_line("operations ").rsplit(":", 1)[1])
        return node, port

    def control(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``python -m servers.control --data DIR --json ARGS``; fails the test if it fails."""
        return control(self.data, *args)

    def resolve_ports(self) -> set[int]:
        """The Operations ports the Bootstrap lists now (the kaa_wire core, signature checked)."""
        server = self.sdk.bootstrap_servers[0]
        conn = ResolveClient(
            self.sdk.application_token, server.public_key(), nonce=os.urandom(NONCE_SIZE)
        )
        with socket.create_connection((server.host, server.port), timeout=10) as sock:
            sock.sendall(conn.send_request())
            while True:
                conn.receive_data(sock.recv(65536))
                event = conn.next_event(time.monotonic())
                if isinstance(event, Resolved):
                    return {node.port for node in event.nodes}

    def stop(self) -> None:
        for process in (*self.extra, self.main):
            process.stop()


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """One real server set for a test module (each test registers its own endpoints)."""
    running = Servers(tmp_path_factory.mktemp("servers") / "data")
    yield running
    running.stop()
