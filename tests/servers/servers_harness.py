"""Helpers for the server tests: store backends, server processes, and a sans-IO client
over real blocking sockets (the kaa_wire classes; the client library is not used here)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.environment import child_environment
from client import RetryPolicy
from kaa_wire import (
    BootstrapServerConnection,
    KaaWireError,
    OperationsNode,
    RegisterClient,
    RegistrationResult,
    ResolveClient,
    Resolved,
    ResolveRequest,
    _codec,
    _crypto,
)
from kaa_wire._rotation import TrustedKey
from kaa_wire.sdk_config import SdkConfig
from servers.store import RegistryStore

REPO = Path(__file__).resolve().parents[2]
#: Generous upper bounds for waiting on processes; tests never assert durations.
START_TIMEOUT_S = 60.0
IO_TIMEOUT_S = 20.0
#: A device's retries against the test servers: quick, with generous timeouts (a slow
#: machine must not fail a test), and no waiting for the servers' retry-after hints.
FAST_RETRIES = RetryPolicy(
    base_delay_s=0.02,
    max_delay_s=0.2,
    exchange_timeout_s=20,
    deadline_s=120,
    use_server_hints=False,
)


@dataclasses.dataclass
class StoreBackend:
    """One store backend under test: ``make()`` a fresh store on the test's data."""

    name: str
    make: Callable[[], RegistryStore]

    def run(self, body: Callable[[RegistryStore], Awaitable[None]]) -> None:
        async def main() -> None:
            async with self.make() as store:
                await body(store)

        asyncio.run(main())


# -- processes -----------------------------------------------------------------------------


def _env() -> dict[str, str]:
    return {**child_environment(REPO), "PYTHONUNBUFFERED": "1"}


def process_exited(pid: int) -> bool:
    """Gone, or a zombie (its parent, or an orphan's new parent, may never reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] in "ZX"


def wait_until(predicate: Callable[[], Any], what: str, timeout: float = START_TIMEOUT_S) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


class ServerProcess:
    """A ``python -m servers...`` child; stdout and stderr go to files under ``logdir``."""

    def __init__(self, module: str, args: Sequence[str], logdir: Path, name: str) -> None:
        logdir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = logdir / f"{name}.out"
        self.stderr_path = logdir / f"{name}.err"
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", module, *args],
                stdout=out,
                stderr=err,
                env=_env(),
                cwd=logdir,
            )

    def output(self) -> str:
        return self.stdout_path.read_text()

    def logs(self) -> str:
        return self.stderr_path.read_text()

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"server exited early:\n{self.logs()}")

    def wait_for_line(self, prefix: str) -> str:
        def find() -> str | None:
            self.check_alive()
            for line in self.output().splitlines():
                if line.startswith(prefix):
                    return line
            return None

        line: str = wait_until(find, f"a line starting with {prefix!r}")
        return line

    def stop(self) -> int:
        """SIGTERM, then the exit code (killed after a long grace period)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"server ignored SIGTERM:\n{self.logs()}") from None

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


def control(data: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``python -m servers.control --data DATA --json ARGS``."""
    result = subprocess.run(
        [sys.executable, "-m", "servers.control", "--data", str(data), "--json", *args],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=START_TIMEOUT_S,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"control {args} failed ({result.returncode}):\n{result.stderr}")
    return result


def control_json(data: Path, *args: str) -> Any:
    return json.loads(control(data, *args).stdout)


@dataclasses.dataclass
class MainServer:
    """A running ``python -m servers`` and what it exported."""

    process: ServerProcess
    data: Path
    sdk: SdkConfig
    listeners: dict[str, Any]

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.listeners['admin_port']}"

    def metrics(self) -> str:
        with urllib.request.urlopen(self.admin_url + "/metrics", timeout=IO_TIMEOUT_S) as r:
            return str(r.read().decode())

    def metrics_with(self, series: str) -> str:
        """/metrics once it shows ``series`` (the services publish their figures for the
        admin process every second: what just happened shows within one)."""
        return str(
            wait_until(lambda: series in (text := self.metrics()) and text, f"{series} shown")
        )


def start_main(data: Path, *extra: str, name: str = "main") -> MainServer:
    """Start ``python -m servers`` on free ports; wait until DIR/listeners.json appears."""
    for stale in ("listeners.json", "sdk.json"):
        (data / stale).unlink(missing_ok=True)
    process = ServerProcess(
        "servers",
        [
            "--data",
            str(data),
            "--host",
            "127.0.0.1",
            "--bootstrap-port",
            "0",
            "--operations-port",
            "0",
            "--admin-port",
            "0",
            *extra,
        ],
        data.parent / "logs",
        name,
    )

    def ready() -> bool:
        if process.proc.poll() is not None:
            raise AssertionError(f"python -m servers exited early:\n{process.logs()}")
        return (data / "listeners.json").exists()

    wait_until(ready, "python -m servers to bind")
    listeners = json.loads((data / "listeners.json").read_text())
    sdk = SdkConfig.from_json((data / "sdk.json").read_text())
    return MainServer(process, data, sdk, listeners)


def start_operations(data: Path, *extra: str, name: str) -> tuple[ServerProcess, int]:
    """An extra ``python -m servers.operations`` node on the same data; (process, port)."""
    return _start_service("operations", data, extra, name)


def start_bootstrap(data: Path, *extra: str, name: str) -> tuple[ServerProcess, int]:
    """A ``python -m servers.bootstrap`` on ``data``; (process, port)."""
    return _start_service("bootstrap", data, extra, name)


def _start_service(
    service: str, data: Path, extra: tuple[str, ...], name: str
) -> tuple[ServerProcess, int]:
    process = ServerProcess(
        f"servers.{service}",
        ["--data", str(data), "--host", "127.0.0.1", "--port", "0", *extra],
        data.parent / "logs",
        name,
    )
    line = process.wait_for_line(f"{service} ")
    return process, int(line.rsplit(":", 1)[1])


# -- the wire, over real sockets -----------------------------------------------------------


def exchange(host: str, port: int, data: bytes, *, half_close: bool = False) -> bytes:
    """Send ``data`` on a new connection; everything the server sends until it closes."""
    with socket.create_connection((host, port), timeout=IO_TIMEOUT_S) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        return read_to_eof(sock)


def read_to_eof(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def resolve(
    sdk: SdkConfig,
    *,
    nonce: bytes | None = None,
    app_token: str | None = None,
    trusted: TrustedKey | None = None,
) -> Resolved:
    """One resolution against the SDK's first Bootstrap, signature checked by the core,
    trusting ``trusted`` (default: the SDK's key and generation)."""
    server = sdk.bootstrap_servers[0]
    trusted = trusted or server.trusted_key()
    client = ResolveClient(
        app_token or sdk.application_token,
        trusted.public_key,
        nonce=nonce or os.urandom(16),
        key_generation=trusted.generation,
        accept_unbound=sdk.accept_unbound_resolution,
        max_frame_size=sdk.max_frame_size,
    )
    answer = exchange(server.host, server.port, client.send_request())
    client.receive_data(answer)
    client.receive_data(b"")
    event = client.next_event(time.monotonic())
    assert isinstance(event, Resolved)
    return event


class ScriptedBootstrap:
    """A real TCP Bootstrap on a thread whose answers the test writes: a compromised or
    outdated Bootstrap. ``answer(conn, request)`` returns the frame to send, built on the
    sans-IO ``BootstrapServerConnection`` that decoded ``request``. Every decoded request
    is kept in ``requests``."""

    def __init__(
        self, answer: Callable[[BootstrapServerConnection, ResolveRequest], bytes]
    ) -> None:
        self.answer = answer
        self.requests: list[ResolveRequest] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            with sock:
                sock.settimeout(IO_TIMEOUT_S)
                conn = BootstrapServerConnection()
                try:
                    request = None
                    while request is None:
                        data = sock.recv(65536)
                        conn.receive_data(data)
                        event = conn.next_event()
                        request = event if isinstance(event, ResolveRequest) else None
                    self.requests.append(request)
                    sock.sendall(self.answer(conn, request))
                except (KaaWireError, OSError) as exc:
                    with contextlib.suppress(KaaWireError, OSError):
                        if isinstance(exc, KaaWireError):
                            sock.sendall(conn.send_error(exc))

    def close(self) -> None:
        self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() on Linux
        self._listener.close()
        self._thread.join(IO_TIMEOUT_S)


def top_nodes(resolved: Resolved) -> list[OperationsNode]:
    top = max(n.priority for n in resolved.nodes)
    return [n for n in resolved.nodes if n.priority == top]


class Endpoint:
    """A device: one RSA key, and the server clock as its last resolution told it."""

    def __init__(self, sdk: SdkConfig, key: _crypto.PrivateKey) -> None:
        self.sdk = sdk
        self.key = key
        self.endpoint_id = _crypto.endpoint_id(_crypto.public_key_der(key))
        self.resolved: Resolved | None = None
        self._last_ms = 0

    def resolve(self) -> Resolved:
        self.resolved = resolve(self.sdk)
        return self.resolved

    def timestamp_ms(self) -> int:
        """The server's time as this endpoint knows it, strictly increasing."""
        if self.resolved is None:
            self.resolve()
        assert self.resolved is not None
        now = self.resolved.server_time_at(time.monotonic())
        self._last_ms = max(now, self._last_ms + 1)
        return self._last_ms

    def client(
        self,
        node: OperationsNode,
        profile: bytes,
        *,
        reconnect: bool = False,
        timestamp_ms: int | None = None,
        sdk_token: str | None = None,
        ephemeral_key: Any = None,
    ) -> RegisterClient:
        return RegisterClient(
            node,
            sdk_token=sdk_token or self.sdk.sdk_token,
            private_key=self.key,
            profile=profile,
            timestamp_ms=self.timestamp_ms() if timestamp_ms is None else timestamp_ms,
            reconnect=reconnect,
            max_frame_size=self.sdk.max_frame_size,
            ephemeral_key=ephemeral_key,
        )

    def register(
        self, profile: bytes, *, node: OperationsNode | None = None, **options: Any
    ) -> RegistrationResult:
        """Register on ``node`` (default: the first top-priority node of a fresh resolution)."""
        if node is None:
            node = top_nodes(self.resolve())[0]
        client = self.client(node, profile, **options)
        return send_registration(client)


def send_registration(client: RegisterClient, request: bytes | None = None) -> RegistrationResult:
    """Send ``client``'s request (or ``request``, bytes it would send) and open the answer."""
    data = client.send_request() if request is None else request
    answer = exchange(client.node.host, client.node.port, data)
    client.receive_data(answer)
    client.receive_data(b"")
    event = client.next_event()
    return event.result  # type: ignore[union-attr]


def error_frame(data: bytes) -> tuple[int, int]:
    """(message type, error code) of a plain ERROR frame."""
    assert len(data) >= 6, f"expected a frame, got {data!r}"
    body = data[6:]
    return data[1], _codec.decode_error(body).code
