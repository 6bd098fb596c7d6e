"""Fixtures for the client tests (tests/client/ only): both APIs, keys, SDK files, the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from client import Device, Outcome
from kaa_wire import _crypto
from kaa_wire.sdk_config import BootstrapServer, SdkConfig

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
        _crypto.save_private_key(directory / "key.private", key)
        _crypto.save_public_key(directory / "key.public", key)
        return directory

    return make


def write_sdk(path: Path, config: SdkConfig) -> Path:
    path.write_text(config.to_json())
    return path


def sdk_with_bootstraps(
    base: SdkConfig | None, servers: list[tuple[str, int, str]], **fields: Any
) -> SdkConfig:
    """An SDK configuration like ``base`` with another Bootstrap list (host, port, pem)."""
    bootstraps = tuple(BootstrapServer(h, p, pem) for h, p, pem in servers)
    if base is None:
        return SdkConfig("app-token", "sdk-token", bootstraps, **fields)
    document = json.loads(base.to_json())
    document.update(fields)
    document["bootstrap_servers"] = [
        {"host": b.host, "port": b.port, "public_key_pem": b.public_key_pem} for b in bootstraps
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
