"""Attacks and broken networks over real sockets, against a real ``python -m servers``.

Each attack is bounded (every hostile connection ends with a typed ERROR frame or a close),
the server keeps serving everyone else (a real registration of a new endpoint during and
after each attack), and its resident memory stays bounded (growth under MEMORY_BOUND).
Single bad inputs are in tests/servers/test_servers_adversity.py; here they come in
thousands, through a mangling proxy, or all at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import resource
import selectors
import socket
import struct
from collections.abc import Iterator

import pytest

from kaa_wire import (
    ErrorCode,
    MalformedFrame,
    MessageType,
    RegistrationStatus,
    ResolveClient,
    _codec,
)
from kaa_wire._constants import PROTOCOL_VERSION
from kaa_wire.sdk_config import BootstrapServer, SdkConfig
from servers.limits import FD_RESERVE
from tests.hardening.faultproxy import FaultProxy, Mode
from tests.hardening.tools import (
    FRAMING_CODES,
    MEMORY_BOUND,
    fresh_endpoint,
    plain_error_code,
    probe,
    raise_fd_limit,
    request_frame,
    rss_bytes,
    soft_fd_limit,
    split_frames,
)
from tests.servers.servers_harness import (
    IO_TIMEOUT_S,
    MainServer,
    exchange,
    read_to_eof,
    send_registration,
    start_main,
    top_nodes,
    wait_until,
)

pytestmark = pytest.mark.adversity

PROFILE = b'{"model":"t1000","fw":"1.0.0","room":"hall"}'


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MainServer]:
    """One server for the proxy and flood attacks, with the default limits."""
    main = start_main(tmp_path_factory.mktemp("hardening-adversity") / "data")
    yield main
    assert main.process.stop() == 0, main.process.logs()


def _pid(server: MainServer) -> int:
    return server.process.proc.pid


def _via(sdk: SdkConfig, port: int) -> SdkConfig:
    """``sdk`` with its one Bootstrap reached through ``port`` (a proxy)."""
    real = sdk.bootstrap_servers[0]
    return dataclasses.replace(
        sdk, bootstrap_servers=(BootstrapServer("127.0.0.1", port, real.public_key_pem),)
    )


# -- a proxy that splits, delays and cuts ----------------------------------------------------


@pytest.mark.parametrize("mode", ["split", "delay"])
def test_split_or_delayed_frames_still_register(server: MainServer, mode: Mode) -> None:
    """Both exchanges, byte by byte (or each chunk held back), both ways: the framer
    reassembles them and the registration succeeds within the read timeout."""
    bootstrap = ("127.0.0.1", server.listeners["bootstrap_port"])
    operations = ("127.0.0.1", server.listeners["operations_port"])
    rss_before = rss_bytes(_pid(server))
    with FaultProxy(bootstrap, mode) as b_proxy, FaultProxy(operations, mode) as o_proxy:
        endpoint = fresh_endpoint(_via(server.sdk, b_proxy.port))
        node = dataclasses.replace(top_nodes(endpoint.resolve())[0], port=o_proxy.port)
        first = endpoint.register(PROFILE, node=node)
        again = endpoint.register(PROFILE, node=node, reconnect=True)
        carried = [*b_proxy.carried, *o_proxy.carried]
    assert first.status == RegistrationStatus.NEW
    assert again.status == RegistrationStatus.EXISTING
    assert len(carried) == 3  # one resolution, two registrations
    if mode == "split":  # really one byte per send, both ways
        for record in carried:
            assert record.sends_up == len(record.upstream) > 6
            assert record.sends_down == len(record.answer) > 6
    probe(server.sdk)
    assert rss_bytes(_pid(server)) - rss_before < MEMORY_BOUND


@pytest.mark.parametrize("service", ["bootstrap", "operations"])
def test_a_frame_cut_in_the_middle_gets_a_typed_error(server: MainServer, service: str) -> None:
    """The proxy forwards half a request, then EOF: the server answers MALFORMED_FRAME
    and closes; the client sees that typed error; the server serves the next one."""
    endpoint = fresh_endpoint(server.sdk)
    node = top_nodes(endpoint.resolve())[0]
    request = request_frame(server.sdk, service, endpoint, node, PROFILE)
    cuts = sorted({1, 3, 5, 6, 7, len(request) // 2, len(request) - 1})
    port = server.listeners[f"{service}_port"]
    rss_before = rss_bytes(_pid(server))
    for cut in cuts:
        with FaultProxy(("127.0.0.1", port), "cut", cut_at=cut) as proxy:
            answer = exchange("127.0.0.1", proxy.port, request)
            (record,) = proxy.carried
        assert bytes(record.upstream) == request[:cut]
        assert bytes(record.answer) == answer  # what the server said reached the client
        (frame,) = split_frames(answer)
        assert plain_error_code(frame) == ErrorCode.MALFORMED_FRAME
    probe(server.sdk)
    assert rss_bytes(_pid(server)) - rss_before < MEMORY_BOUND


def test_an_answer_cut_in_the_middle_is_refused_by_the_client(server: MainServer) -> None:
    """The registration reaches the server whole, the answer comes back cut: the client
    raises MalformedFrame; the server had stored it, so the next attempt is EXISTING."""
    operations = ("127.0.0.1", server.listeners["operations_port"])
    endpoint = fresh_endpoint(server.sdk)
    node = top_nodes(endpoint.resolve())[0]
    with FaultProxy(operations, "cut_answer", cut_at=30) as proxy:
        client = endpoint.client(dataclasses.replace(node, port=proxy.port), PROFILE)
        with pytest.raises(MalformedFrame):
            send_registration(client)
        (record,) = proxy.carried
        wait_until(lambda: record.done, "the proxy to finish the connection")
    (whole,) = split_frames(bytes(record.answer))
    assert whole[1] == MessageType.REGISTER_RESPONSE  # the server did answer, in full
    assert endpoint.register(PROFILE, node=node).status == RegistrationStatus.EXISTING


# -- slow-loris ------------------------------------------------------------------------------

LORIS_PER_SERVICE = 60
LORIS_READ_TIMEOUT_S = 3
LORIS_BYTE_EVERY_S = 0.4


async def _loris(port: int, request: bytes) -> bytes:
    """Trickle ``request`` one byte at a time; everything the server sends until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    received = bytearray()

    async def trickle() -> None:
        for i in range(len(request)):
            writer.write(request[i : i + 1])
            await writer.drain()
            await asyncio.sleep(LORIS_BYTE_EVERY_S)

    sender = asyncio.create_task(trickle())
    try:
        while chunk := await reader.read(65536):
            received += chunk
    except ConnectionError:
        pass
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        writer.close()
    return bytes(received)


def test_slow_loris_connections_time_out_and_others_are_served(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Many connections trickle one byte every LORIS_BYTE_EVERY_S: each is closed at the
    read timeout with a TIMEOUT frame, while a real registration goes through beside them."""
    data = tmp_path_factory.mktemp("loris") / "data"
    main = start_main(data, "--read-timeout-s", str(LORIS_READ_TIMEOUT_S))
    try:
        endpoint = fresh_endpoint(main.sdk)
        resolve_request = ResolveClient(
            main.sdk.application_token,
            main.sdk.bootstrap_servers[0].public_key(),
            nonce=bytes(range(16)),
        ).send_request()
        register_request = endpoint.client(top_nodes(endpoint.resolve())[0], PROFILE).send_request()
        ports = (main.listeners["bootstrap_port"], main.listeners["operations_port"])
        rss_before = rss_bytes(main.process.proc.pid)

        async def attack() -> list[bytes]:
            lorises = [
                asyncio.create_task(_loris(port, request))
                for port, request in zip(ports, (resolve_request, register_request), strict=True)
                for _ in range(LORIS_PER_SERVICE)
            ]
            await asyncio.to_thread(probe, main.sdk)  # served while they trickle
            return await asyncio.gather(*lorises)

        answers = asyncio.run(attack())
        assert len(answers) == 2 * LORIS_PER_SERVICE
        for answer in answers:
            (frame,) = split_frames(answer)
            assert plain_error_code(frame) == ErrorCode.TIMEOUT
        probe(main.sdk)
        assert rss_bytes(main.process.proc.pid) - rss_before < MEMORY_BOUND
    finally:
        assert main.process.stop() == 0, main.process.logs()


# -- oversized lengths and garbage, by the thousand ------------------------------------------

FLOOD_SEED = 7
FLOOD_CONNECTIONS = 1200


def _garbage(rng: random.Random, valid: dict[str, bytes]) -> tuple[str, bytes, bool]:
    """One hostile input: (kind, bytes, whether the peer half-closes after sending)."""
    kind = rng.choice(["random", "oversized", "oversized-streamed", "mutated", "header-only"])
    if kind == "random":
        data = rng.randbytes(rng.randint(1, 300))
    elif kind == "oversized":
        length = rng.randint(65536 - 6 + 1, 0xFFFFFF)
        msg_type = rng.choice(list(MessageType))
        data = struct.pack(">BBB", PROTOCOL_VERSION, msg_type, 0) + length.to_bytes(3, "big")
        data += rng.randbytes(rng.randint(0, 2000))
    elif kind == "oversized-streamed":
        # A header claiming 16 MiB, then a whole MiB of body: refused from the header,
        # the body is never buffered.
        data = bytes([PROTOCOL_VERSION, MessageType.REGISTER_REQUEST, 0])
        data += (0xFFFFFF).to_bytes(3, "big")
        data += bytes(1 << 20)
    elif kind == "mutated":
        name = rng.choice(sorted(valid))
        mutated = bytearray(valid[name])
        for _ in range(rng.randint(1, 4)):
            mutated[rng.randrange(len(mutated))] ^= rng.randint(1, 255)
        data = bytes(mutated[: rng.randint(1, len(mutated))] if rng.random() < 0.3 else mutated)
        kind = f"mutated-{name}"
    else:
        data = bytes([PROTOCOL_VERSION, rng.choice([1, 3]), 0])
        data += rng.randint(1, 60000).to_bytes(3, "big")
    return kind, data, kind != "oversized-streamed"


def _send_hostile(port: int, data: bytes, half_close: bool) -> bytes:
    """Send ``data``; whatever comes back before the close (a reset counts as a close)."""
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT_S) as sock:
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused from the header while we were still sending
        return read_to_eof(sock)


def test_a_flood_of_oversized_lengths_and_garbage(server: MainServer) -> None:
    """FLOOD_CONNECTIONS hostile connections (random bytes, oversized length prefixes with
    and without a body, valid frames with bits flipped or cut): each gets one typed ERROR
    frame (or a reset, when refused while still sending), never anything else."""
    endpoint = fresh_endpoint(server.sdk)
    node = top_nodes(endpoint.resolve())[0]
    valid = {
        "resolve": ResolveClient(
            server.sdk.application_token,
            server.sdk.bootstrap_servers[0].public_key(),
            nonce=bytes(range(1, 17)),
        ).send_request(),
        "register": endpoint.client(node, PROFILE).send_request(),
    }
    ports = [server.listeners["bootstrap_port"], server.listeners["operations_port"]]
    rng = random.Random(FLOOD_SEED)
    rss_before = rss_bytes(_pid(server))
    outcomes: dict[str, int] = {}
    for i in range(FLOOD_CONNECTIONS):
        kind, data, half_close = _garbage(rng, valid)
        port = rng.choice(ports)
        answer = _send_hostile(port, data, half_close)
        if not answer:
            assert kind == "oversized-streamed", f"{kind} got no answer: {data[:16].hex()}"
            outcome = "reset"
        else:
            (frame,) = split_frames(answer)
            if frame[1] == MessageType.RESOLVE_RESPONSE:
                # A flip in the nonce or the transports still makes a valid request.
                assert kind.startswith("mutated-resolve") and port == ports[0]
                outcome = "resolved"
            else:
                code = plain_error_code(frame)
                assert code in FRAMING_CODES or code == ErrorCode.UNKNOWN_APPLICATION, kind
                if kind.startswith("oversized"):
                    assert code == ErrorCode.FRAME_TOO_LARGE
                outcome = code.name
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        if i % 300 == 299:
            probe(server.sdk)  # served during the flood
    probe(server.sdk)
    assert rss_bytes(_pid(server)) - rss_before < MEMORY_BOUND
    # Seeded: the mix is the same every run; each family of refusal was met.
    for name in ("UNSUPPORTED_VERSION", "FRAME_TOO_LARGE", "MALFORMED_FRAME", "BAD_SEAL"):
        assert outcomes.get(name, 0) > 0, outcomes
    print(f"flood outcomes: {sorted(outcomes.items())}")


# -- thousands of idle connections ---------------------------------------------------------

IDLE_CONNECTIONS = 2000
IDLE_LIMIT = 1024  # the default --max-connections


def _answered(socks: list[socket.socket]) -> dict[socket.socket, bytes]:
    """The sockets among ``socks`` that the server answered and closed, with the answer."""
    done: dict[socket.socket, bytes] = {}
    pending = {s: bytearray() for s in socks}
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
        while True:
            events = selector.select(timeout=1.0)
            if not events:
                break  # a second with nothing new: the others are being held
            for key, _ in events:
                sock = key.fileobj  # type: ignore[assignment]
                try:
                    chunk = sock.recv(65536)
                except ConnectionResetError:
                    chunk = b""
                if chunk:
                    pending[sock] += chunk
                else:
                    selector.unregister(sock)
                    done[sock] = bytes(pending[sock])
    return done


def test_thousands_of_idle_connections_are_bounded(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """IDLE_CONNECTIONS connections that send nothing, to the Operations service with its
    default --max-connections: the first IDLE_LIMIT are held (until the read timeout, long
    here), every other one gets OVERLOADED at once. Resolution goes on meanwhile; a
    registration is told OVERLOADED with a retry hint; once the idle ones go, it succeeds.

    The server starts with the common default soft limit of 1024 open files, which it must
    raise itself: otherwise the held connections exhaust its descriptors and the Bootstrap
    and admin port of the same process accept nothing."""
    if raise_fd_limit(IDLE_CONNECTIONS + 2 * IDLE_LIMIT + 512) < IDLE_CONNECTIONS + 512:
        pytest.skip("the hard open-file limit is too low for this many connections")
    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] < 2 * IDLE_LIMIT + FD_RESERVE:
        pytest.skip("the hard open-file limit is below what the server needs")
    data = tmp_path_factory.mktemp("idle") / "data"
    with soft_fd_limit(1024):
        main = start_main(data, "--read-timeout-s", "300", "--retry-after-ms", "750")
    port = main.listeners["operations_port"]
    try:
        rss_before = rss_bytes(main.process.proc.pid)
        endpoint = fresh_endpoint(main.sdk)
        node = top_nodes(endpoint.resolve())[0]
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(IDLE_CONNECTIONS)]
        try:
            wait_until(
                lambda: (
                    f'kaa_connections_open{{service="operations"}} {IDLE_LIMIT}' in main.metrics()
                ),
                "the limit to fill",
            )
            refused = _answered(idle)
            assert len(refused) == IDLE_CONNECTIONS - IDLE_LIMIT
            for answer in refused.values():
                (frame,) = split_frames(answer)
                assert plain_error_code(frame) == ErrorCode.OVERLOADED
                assert _codec.decode_error(frame[6:]).retry_after_ms == 750
            # During: the Bootstrap (its own limit) serves; the Operations service refuses.
            assert endpoint.resolve().nodes
            answer = exchange("127.0.0.1", port, endpoint.client(node, PROFILE).send_request())
            assert plain_error_code(answer) == ErrorCode.OVERLOADED
            during = rss_bytes(main.process.proc.pid)
        finally:
            for sock in idle:
                sock.close()
        wait_until(
            lambda: 'kaa_connections_open{service="operations"} 0' in main.metrics(),
            "the idle connections to be released",
        )
        assert endpoint.register(PROFILE, node=node).status == RegistrationStatus.NEW
        probe(main.sdk)
        after = rss_bytes(main.process.proc.pid)
        assert max(during, after) - rss_before < MEMORY_BOUND
        print(
            f"idle: rss {rss_before >> 20} MiB before, {during >> 20} during, {after >> 20} after"
        )
    finally:
        assert main.process.stop() == 0, main.process.logs()
