"""The admin port against a real ``python -m servers``, over real sockets (issue 11,
finding 3): it binds to loopback whatever the services' host, and a flood of it never
costs a service a descriptor or a device its registration.

Before: the admin port bound to the services' host, held every connection 5 s without a
limit, and its descriptors were outside the process's budget; a flood of it filled all
descriptors and resolutions failed.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from kaa_wire import RegistrationStatus
from kaa_wire.sdk_config import SdkConfig
from servers.limits import FD_RESERVE
from tests.hardening.tools import fresh_endpoint, raise_fd_limit, soft_fd_limit
from tests.servers.servers_harness import (
    IO_TIMEOUT_S,
    ServerProcess,
    control,
    resolve,
    start_main,
    top_nodes,
)

LOOPBACK = "127.0.0.1"
#: The admin port's default bounds (servers/config.py), which the flood runs against.
ADMIN_LIMIT = 16
ADMIN_TIMEOUT_S = 2.0
#: Small on purpose: the services' descriptor budget is then 2 x 256 + 256 = 768, and the
#: admin process's 16 + 256 = 272, far below the flood, so admin connections outside the
#: budget would exhaust it.
SERVICE_LIMIT = 256
FLOOD = 2000
#: Every attacker keeps reconnecting for this long; devices register meanwhile.
ATTACK_S = 6.0
TRICKLE_EVERY_S = 0.25
#: How long an attacker waits beyond the admin deadline before it counts no answer.
HALF_OPEN_S = 5.0
#: Descriptors the server may hold during the flood beyond its state before: the admin
#: port's limit, plus room for the devices' own connections and the store's readers.
FD_SLACK = 24


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _fd_limit(pid: int) -> int:
    return int(
        next(
            line.split()[3]
            for line in Path(f"/proc/{pid}/limits").read_text().splitlines()
            if line.startswith("Max open files")
        )
    )


def admin_process(pid: int) -> int:
    """The pid of the admin process of the services' process ``pid`` (its only child)."""
    children = [
        int(entry)
        for entry in os.listdir("/proc")
        if entry.isdigit() and _parent(int(entry)) == pid
    ]
    assert len(children) == 1, children
    return children[0]


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _probe(port: int) -> int:
    """The status of one /healthz, as an operator's browser or scraper would ask."""
    try:
        return _healthz(port)[0]
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def _healthz(port: int, host: str = LOOPBACK) -> tuple[int, bytes]:
    url = f"http://{host}:{port}/healthz"
    with urllib.request.urlopen(url, timeout=IO_TIMEOUT_S) as answer:
        return answer.status, answer.read()


async def _attacker(
    port: int, trickle: bool, until: float, rng: random.Random, outcomes: dict[str, int]
) -> None:
    """Connect to the admin port and stay silent (or trickle a request head one byte at a
    time) until the server closes; again and again until ``until``."""
    loop = asyncio.get_running_loop()
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * 200
    while loop.time() < until:
        try:
            reader, writer = await asyncio.open_connection(LOOPBACK, port)
        except OSError:
            outcomes["connect failed"] = outcomes.get("connect failed", 0) + 1
            await asyncio.sleep(0.2)
            continue

        async def send_slowly(writer: asyncio.StreamWriter = writer) -> None:
            for i in range(len(head)):
                writer.write(head[i : i + 1])
                await writer.drain()
                await asyncio.sleep(TRICKLE_EVERY_S)

        sender = asyncio.create_task(send_slowly()) if trickle else None
        try:
            answer = await asyncio.wait_for(reader.read(), ADMIN_TIMEOUT_S + HALF_OPEN_S)
        except ConnectionError:
            answer = b""
        except TimeoutError:
            # The kernel's, not the server's: with its accept queue full under the flood it
            # answers with SYN cookies and then drops the final ACK, leaving this side
            # "connected" to nothing (the server holds no descriptor for it, checked below).
            answer = b"no answer"
        finally:
            if sender is not None:
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)
            writer.close()
        outcome = answer.split(b"\r\n", 1)[0].decode("latin-1") or "closed"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        await asyncio.sleep(rng.uniform(0.2, 1.0))


def _devices(sdk: SdkConfig, stop: threading.Event, done: list[str], errors: list[str]) -> None:
    """New devices resolve and register, one after another, until ``stop``."""
    while not stop.is_set():
        try:
            endpoint = fresh_endpoint(sdk)
            nodes = top_nodes(endpoint.resolve())
            result = endpoint.register(b'{"during":"admin flood"}', node=nodes[0])
            assert result.status == RegistrationStatus.NEW, result.status
            done.append(endpoint.endpoint_id)
        except Exception as exc:  # collected: the test fails on any
            errors.append(repr(exc))


@pytest.mark.adversity
def test_an_admin_flood_never_makes_a_service_refuse_a_device(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """FLOOD attackers hold the admin port for ATTACK_S, silent or trickling a request
    head, reconnecting at once when closed, while new devices resolve and register one
    after another. Every device succeeds; the server never holds more than the admin
    limit of descriptors for it; an attacker is closed unanswered when a newcomer takes
    its slot (it was handling no request), or answered 408 at the admin deadline
    (trickling does not extend it), or 503 when every slot is busy; an operator's request
    gets through during the flood (before, every one was 503: the console attack's F1);
    /healthz answers after the flood."""
    if raise_fd_limit(FLOOD + 1024) < FLOOD + 256:
        pytest.skip("the hard open-file limit is too low for this many connections")
    data = tmp_path_factory.mktemp("admin-flood") / "data"
    # Started below its budget: the server raises its own soft limit to exactly the budget.
    with soft_fd_limit(512):
        main = start_main(data, "--max-connections", str(SERVICE_LIMIT))
    pid = main.process.proc.pid
    port = main.listeners["admin_port"]
    try:
        # The services' budget has no admin connection: they are the admin process's.
        assert _fd_limit(pid) == 2 * SERVICE_LIMIT + FD_RESERVE
        assert _healthz(port) == (200, b"ok\n")  # the admin process is up
        admin = admin_process(pid)
        assert _fd_limit(admin) >= ADMIN_LIMIT + FD_RESERVE
        done: list[str] = []
        errors: list[str] = []
        for _ in range(2):  # the store's reader connections and caches, before counting
            fresh_endpoint(main.sdk).register(b'{"before":true}')
        fds_before = _open_fds(pid)
        admin_fds_before = _open_fds(admin)

        stop = threading.Event()
        devices = threading.Thread(target=_devices, args=(main.sdk, stop, done, errors))
        outcomes: dict[str, int] = {}
        fd_samples: list[int] = []
        admin_fd_samples: list[int] = []
        probes: list[int] = []

        async def attack() -> None:
            loop = asyncio.get_running_loop()
            until = loop.time() + ATTACK_S
            rng = random.Random(FLOOD)
            attackers = [
                asyncio.create_task(_attacker(port, i % 4 == 0, until, rng, outcomes))
                for i in range(FLOOD)
            ]
            while loop.time() < until:
                fd_samples.append(_open_fds(pid))
                admin_fd_samples.append(_open_fds(admin))
                if len(fd_samples) % 5 == 0:  # an operator's probe, about once a second
                    probes.append(await loop.run_in_executor(None, _probe, port))
                await asyncio.sleep(0.2)
            await asyncio.gather(*attackers)

        devices.start()
        try:
            asyncio.run(attack())
        finally:
            stop.set()
            devices.join()
        print(
            f"admin flood: {sum(outcomes.values())} attacker connections {sorted(outcomes.items())}"
            f"; {len(done)} devices registered meanwhile; services' descriptors {fds_before} "
            f"before, at most {max(fd_samples)} during; the admin process's "
            f"{admin_fds_before} before, at most {max(admin_fd_samples)} during"
        )
        assert not errors, errors[:5]
        assert len(done) >= 3, "too few devices registered during the flood"
        assert max(fd_samples) <= fds_before + FD_SLACK
        assert max(admin_fd_samples) <= admin_fds_before + ADMIN_LIMIT + FD_SLACK
        answered = {k: v for k, v in outcomes.items() if k.startswith("HTTP/1.1")}
        assert set(answered) <= {"HTTP/1.1 503 Service Unavailable", "HTTP/1.1 408 Request Timeout"}
        assert "connect failed" not in outcomes
        assert probes.count(200) >= len(probes) // 2 and probes, probes

        # After: health, and a device, as before.
        assert _healthz(port) == (200, b"ok\n")
        fresh_endpoint(main.sdk).register(b'{"after":true}')
        metrics = main.metrics()
        assert "kaa_admin_connections_open 1\n" in metrics  # this scrape itself
        refused = int(metrics.split("\nkaa_admin_refused_total ", 1)[1].split()[0])
        evicted = int(metrics.split("\nkaa_admin_evicted_total ", 1)[1].split()[0])
        assert refused + evicted >= FLOOD - ADMIN_LIMIT
    finally:
        assert main.process.stop() == 0, main.process.logs()


# -- where it listens ---------------------------------------------------------------------


def _listening(port: int) -> set[str]:
    """The local addresses of the sockets listening on TCP ``port`` (/proc/net/tcp, tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        with open(table) as rows:
            next(rows)
            for row in rows:
                local, state = row.split()[1], row.split()[3]
                address, hex_port = local.split(":")
                if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                    found.add(_address(address))
    return found


def _address(hex_address: str) -> str:
    raw = bytes.fromhex(hex_address)
    if len(raw) == 4:  # one little-endian 32-bit word
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, words)


def _refused(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=IO_TIMEOUT_S).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.mark.security
def test_a_wildcard_host_leaves_the_admin_port_on_loopback(tmp_path: Path) -> None:
    """``--host 0.0.0.0``: the services listen on every address, the admin port on
    127.0.0.1 only (the kernel's listening table, listeners.json, the printed line); on
    another address (127.0.0.2, reached through the wildcard) the Bootstrap answers and the
    admin port refuses the connection."""
    main = start_main(tmp_path / "data", "--host", "0.0.0.0", "--advertise-host", LOOPBACK)
    try:
        admin = main.listeners["admin_port"]
        bootstrap = main.listeners["bootstrap_port"]
        assert _listening(admin) == {LOOPBACK}
        assert _listening(bootstrap) == {"0.0.0.0"}
        assert _listening(main.listeners["operations_port"]) == {"0.0.0.0"}
        assert (main.listeners["host"], main.listeners["admin_host"]) == ("0.0.0.0", LOOPBACK)
        assert f"metrics    http://{LOOPBACK}:{admin}/metrics" in main.process.output()
        assert _healthz(admin) == (200, b"ok\n")
        assert _refused("127.0.0.2", admin)
        assert not _refused("127.0.0.2", bootstrap)
        assert resolve(main.sdk).nodes  # the services serve as before
    finally:
        assert main.process.stop() == 0, main.process.logs()


@pytest.mark.security
@pytest.mark.parametrize("service", ["bootstrap", "operations"])
def test_single_services_bind_the_admin_port_to_admin_host(tmp_path: Path, service: str) -> None:
    """``python -m servers.bootstrap`` and ``servers.operations`` with ``--host 0.0.0.0``
    and an admin port: loopback by default; ``--admin-host`` (here 127.0.0.2) is honoured."""
    data = tmp_path / "data"
    control(data, "init")
    # (A wildcard host needs an advertised one, which servers.bootstrap takes from TOML.)
    toml = tmp_path / "kaa.toml"
    toml.write_text(f'advertise_host = "{LOOPBACK}"\n')
    for admin_host in (None, "127.0.0.2"):
        extra = ["--admin-host", admin_host] if admin_host else []
        process = ServerProcess(
            f"servers.{service}",
            ["--config", str(toml), "--data", str(data), "--host", "0.0.0.0", "--port", "0",
             "--admin-port", "0", *extra],
            tmp_path / "logs",
            f"{service}-{admin_host}",
        )  # fmt: skip
        try:
            line = process.wait_for_line("metrics ")
            expected = admin_host or LOOPBACK
            url = line.split()[1]
            assert url.startswith(f"http://{expected}:"), line
            port = int(url.rsplit(":", 1)[1].split("/")[0])
            assert _listening(port) == {expected}
            assert _healthz(port, expected) == (200, b"ok\n")
            other = "127.0.0.2" if expected == LOOPBACK else LOOPBACK
            assert _refused(other, port)
        finally:
            assert process.stop() == 0, process.logs()
