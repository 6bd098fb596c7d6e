"""A device built before Bootstrap key rotations, against real servers over real sockets.

The device's SDK configuration is the one ``python -m servers`` exported before the first
rotation, and is never replaced: the device follows rotation 1 and rotation 2 through the
certificates in resolution answers, persists each new key (bootstrap-trust.json), trusts
the retired ones no more (also after its process restarts), and refuses a chain that does
not verify (docs/protocol.md 4.5; the Bootstrap's side: tests/servers/).
"""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from client import Connected, Device, Failed, KeyRotated
from kaa_wire import (
    BadSignature,
    BootstrapServerConnection,
    MessageType,
    ResolveRequest,
    UnsupportedAlgorithm,
    _codec,
    _crypto,
    encode_frame,
)
from kaa_wire._messages import RotationCertificate
from kaa_wire._rotation import TrustedKey, bootstrap_public_key, certify, key_fingerprint
from kaa_wire.sdk_config import SdkConfig
from servers.keyring import Chain
from tests.client.conftest import Servers, cli_json, run_cli, sdk_with_bootstraps, write_sdk
from tests.servers.servers_harness import (
    FAST_RETRIES,
    ScriptedBootstrap,
    exchange,
    resolve,
    start_bootstrap,
    wait_until,
)

pytestmark = pytest.mark.security

PROFILE = b'{"model":"rotor"}'
#: Quick retries, and few: a test that expects a refusal ends fast.
GIVE_UP = dataclasses.replace(FAST_RETRIES, deadline_s=None, max_failures=2)
CLI_RETRIES = ("--base-delay", "0.05", "--max-delay", "0.2")


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    running = Servers(tmp_path / "data", "--refresh-s", "0.2")
    yield running
    running.stop()


@pytest.fixture
def built(servers: Servers, tmp_path: Path) -> Path:
    """The SDK configuration flashed into the device: exported before any rotation."""
    path = tmp_path / "flashed-sdk.json"
    shutil.copy(servers.sdk_path, path)
    assert SdkConfig.from_json(path.read_text()).bootstrap_servers[0].key_generation == 1
    return path


def _chain(data: Path) -> Chain:
    return Chain.from_json((data / "bootstrap-chain.json").read_text()).verified()


def _key_of(data: Path, generation: int) -> TrustedKey:
    chain = _chain(data)
    certificate = next(c for c in chain.certificates if c.generation == generation)
    return TrustedKey(generation, bootstrap_public_key(certificate.public_key))


def _rotate(servers: Servers) -> dict[str, Any]:
    """``servers.control bootstrap rotate``, then wait until the Bootstrap signs with it."""
    rotated: dict[str, Any] = json.loads(servers.control("bootstrap", "rotate").stdout)
    generation = rotated["generation"]

    def signs_with_it() -> bool:
        signer = resolve(servers.sdk).bootstrap_key  # as a generation-1 device
        return signer is not None and signer.generation == generation

    wait_until(signs_with_it, f"the Bootstrap to sign with generation {generation}")
    return rotated


def _register_cli(sdk: Path, state: Path, *extra: str) -> Any:
    return run_cli(
        "register", "--sdk", str(sdk), "--state", str(state), "--profile", PROFILE.decode(),
        *CLI_RETRIES, *extra,
    )  # fmt: skip


def _trust(state: Path) -> list[dict[str, Any]]:
    status = run_cli("status", "--state", str(state))
    assert status.returncode == 0, status.stderr
    trust: list[dict[str, Any]] = cli_json(status)["bootstrap_trust"]
    return trust


def test_a_device_built_before_two_rotations_registers_after_each(
    servers: Servers, built: Path, tmp_path: Path
) -> None:
    state = tmp_path / "device"
    anchor = key_fingerprint(
        SdkConfig.from_json(built.read_text()).bootstrap_servers[0].trusted_key().der
    )
    first = _register_cli(built, state)
    assert first.returncode == 0, first.stderr
    assert cli_json(first)["status"] == "new"
    assert _trust(state) == [] and not (state / "bootstrap-trust.json").exists()

    for generation in (2, 3):
        rotated = _rotate(servers)
        assert rotated["generation"] == generation
        again = _register_cli(built, state, "-v")  # a new client process each time
        assert again.returncode == 0, again.stderr
        assert cli_json(again)["status"] == "existing"
        assert f"bootstrap key rotated to generation {generation}" in again.stderr
        assert _trust(state) == [
            {"anchor_sha256": anchor, "generation": generation, "key_sha256": rotated["key_sha256"]}
        ]
        assert (state / "bootstrap-trust.json").stat().st_mode & 0o777 == 0o600

    # Once learned, nothing more to follow: the next boot asks with generation 3.
    quiet = _register_cli(built, state, "-v")
    assert quiet.returncode == 0, quiet.stderr
    assert "rotated" not in quiet.stderr

    # A device built from the same configuration and booted only now follows both rotations
    # in one answer.
    fresh = tmp_path / "fresh"
    late = _register_cli(built, fresh)
    assert late.returncode == 0, late.stderr
    assert cli_json(late)["status"] == "new"
    assert [t["generation"] for t in _trust(fresh)] == [3]


def _answer_with(
    key: Any,
    generation: int,
    rotations: Callable[[int], tuple[RotationCertificate, ...]],
    nodes: Any,
) -> Callable[[BootstrapServerConnection, ResolveRequest], bytes]:
    """A scripted Bootstrap's answer: ``nodes`` signed by ``key`` as ``generation``, with
    ``rotations(request generation)``; it ignores what the request trusts unless told."""

    def answer(conn: BootstrapServerConnection, request: ResolveRequest) -> bytes:
        # Forge the request's generation so the sans-IO check lets any chain through.
        chain = rotations(request.key_generation)
        conn.request = dataclasses.replace(request, key_generation=generation - len(chain))
        data = conn.data_to_sign(
            nodes,
            server_time_ms=int(time.time() * 1000),
            valid_for_s=300,
            signature_algorithm=_crypto.signature_algorithm_of(key),
            key_generation=generation,
            rotations=chain,
        )
        return conn.send_response(_crypto.sign(key, data))

    return answer


def test_after_the_rotation_the_retired_key_is_refused_even_after_a_restart(
    servers: Servers, built: Path, tmp_path: Path
) -> None:
    """Whoever holds the retired key (stolen, or a Bootstrap that kept it) signs a perfect
    generation-1 answer: a device that has seen the rotation refuses it."""
    retired = _crypto.load_private_key((servers.data / "bootstrap.key").read_bytes())
    _rotate(servers)
    nodes = resolve(servers.sdk, trusted=_key_of(servers.data, 2)).nodes
    impostor = ScriptedBootstrap(_answer_with(retired, 1, lambda _: (), nodes))
    try:
        flashed = SdkConfig.from_json(built.read_text())
        anchor_pem = flashed.bootstrap_servers[0].public_key_pem
        only_impostor = write_sdk(
            tmp_path / "impostor-sdk.json",
            sdk_with_bootstraps(flashed, [("127.0.0.1", impostor.port, anchor_pem, 1)]),
        )
        # The control: a device that never saw the rotation takes the impostor's answer.
        naive = _register_cli(only_impostor, tmp_path / "naive", "--deadline", "60")
        assert naive.returncode == 0, naive.stderr

        state = tmp_path / "device"
        learned = _register_cli(built, state)  # through the real Bootstrap: learns gen 2
        assert learned.returncode == 0, learned.stderr
        assert [t["generation"] for t in _trust(state)] == [2]

        # A new process, with only the impostor to ask.
        refused = _register_cli(only_impostor, state, "--deadline", "2")
        assert refused.returncode == 1, refused.stderr
        cause = cli_json(refused)["cause"]
        assert cause.startswith("BadSignature") and "older than the trusted generation 2" in cause
        assert impostor.requests[-1].key_generation == 2  # it asked with what it learned
        assert [t["generation"] for t in _trust(state)] == [2]
    finally:
        impostor.close()


def test_a_recorded_answer_of_the_retired_key_is_refused(servers: Servers, tmp_path: Path) -> None:
    """Cached-signature mode: an unbound answer recorded before the rotation, replayed
    after it, is taken by a device that has not rotated and refused by one that has."""
    created = servers.control("app", "create", "--name", "cams", "--cached-signature")
    app = json.loads(created.stdout)
    token = json.loads(servers.control("sdk", "create", app["token"]).stdout)["sdk_token"]
    out = tmp_path / "cams.json"
    servers.control(
        "sdk", "export", "--app", app["token"], "--sdk-token", token, "--out", str(out),
        "--bootstrap", f"127.0.0.1:{servers.sdk.bootstrap_servers[0].port}",
    )  # fmt: skip
    sdk = SdkConfig.from_json(out.read_text())
    assert sdk.accept_unbound_resolution

    recorded: list[bytes] = []

    def relay(_: BootstrapServerConnection, request: ResolveRequest) -> bytes:
        if not recorded:  # the real Bootstrap's first answer, recorded on the path
            frame = encode_frame(
                MessageType.RESOLVE_REQUEST, _codec.encode_resolve_request(request)
            )
            real = sdk.bootstrap_servers[0]
            recorded.append(exchange(real.host, real.port, frame))
        return recorded[0]

    replayer = ScriptedBootstrap(relay)
    try:
        pem = sdk.bootstrap_servers[0].public_key_pem
        via_replayer = write_sdk(
            tmp_path / "replay-sdk.json",
            sdk_with_bootstraps(sdk, [("127.0.0.1", replayer.port, pem, 1)]),
        )
        before = _register_cli(via_replayer, tmp_path / "before")  # records the answer
        assert before.returncode == 0, before.stderr
        _rotate(servers)
        state = tmp_path / "device"
        learned = _register_cli(out, state)
        assert learned.returncode == 0, learned.stderr
        assert [t["generation"] for t in _trust(state)] == [2]
        naive = _register_cli(via_replayer, tmp_path / "naive")
        assert naive.returncode == 0, naive.stderr  # the replay itself is a working answer
        refused = _register_cli(via_replayer, state, "--deadline", "2")
        assert refused.returncode == 1
        assert "older than the trusted generation 2" in cli_json(refused)["cause"]
    finally:
        replayer.close()


def _seed_starting_at(index: int, count: int) -> int:
    return next(s for s in range(1000) if random.Random(s).randrange(count) == index)


def test_a_second_bootstrap_still_on_the_old_key_is_a_failing_bootstrap(
    servers: Servers, built: Path, tmp_path: Path
) -> None:
    """A rolling rotation: another Bootstrap (its own data directory, copied before the
    rotation) still signs with generation 1."""
    old = tmp_path / "old-data"
    old.mkdir(mode=0o700)
    for name in ("bootstrap.key", "bootstrap.pub", "operations.key"):
        shutil.copy2(servers.data / name, old / name)
    _rotate(servers)
    stale, stale_port = start_bootstrap(old, name="stale-bootstrap")
    try:
        flashed = SdkConfig.from_json(built.read_text())
        real = flashed.bootstrap_servers[0]
        both = sdk_with_bootstraps(
            flashed,
            [("127.0.0.1", stale_port, real.public_key_pem, 1), (real.host, real.port,
              real.public_key_pem, 1)],
        )  # fmt: skip
        events: list[Any] = []
        state = tmp_path / "device"

        def boot(first: int) -> Any:
            """One boot of the device that asks Bootstrap ``first`` first."""
            rng = random.Random(_seed_starting_at(first, 2))
            with Device.open(
                state, both, policy=FAST_RETRIES, rng=rng, on_event=events.append
            ) as device:
                return device.register(PROFILE)

        outcome = boot(1)  # the real Bootstrap: learns generation 2
        assert isinstance(outcome, Connected), outcome
        assert [e.generation for e in events if isinstance(e, KeyRotated)] == [2]
        again = boot(0)  # the stale one first
        assert isinstance(again, Connected), again
        steps = [(a.stage, a.port, type(a.cause)) for a in again.attempts]
        assert steps[:2] == [
            ("resolve", stale_port, UnsupportedAlgorithm),
            ("resolve", real.port, type(None)),
        ]
        refusal = again.attempts[0].cause
        assert isinstance(refusal, UnsupportedAlgorithm) and not refusal.sealed
        assert "newer than this Bootstrap's (1)" in refusal.message

        only_stale = sdk_with_bootstraps(
            flashed, [("127.0.0.1", stale_port, real.public_key_pem, 1)]
        )
        with Device.open(state, only_stale, policy=GIVE_UP) as device:
            failed = device.register(PROFILE)
        assert isinstance(failed, Failed) and isinstance(failed.cause, UnsupportedAlgorithm)
    finally:
        assert stale.stop() == 0


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


@pytest.mark.parametrize("forgery", ["flipped signature", "foreign signer", "swapped key"])
def test_a_tampered_chain_is_refused(
    servers: Servers, built: Path, tmp_path: Path, forgery: str
) -> None:
    """The scripted Bootstrap even holds the current key and signs its answer right: only
    the chain check stands between the device and a key its trusted key never certified."""
    _rotate(servers)
    _rotate(servers)
    current = _crypto.load_private_key((servers.data / "bootstrap.key").read_bytes())
    true = _chain(servers.data).certificates
    nodes = resolve(servers.sdk, trusted=_key_of(servers.data, 3)).nodes
    second = true[0]
    if forgery == "flipped signature":
        forged = RotationCertificate(
            2, second.signature_algorithm, second.public_key, _flip(second.signature, 7)
        )
    elif forgery == "foreign signer":  # the true generation-2 key, certified by a stranger
        stranger = _crypto.generate_rsa_key()
        generation_2 = _crypto.load_public_key(second.public_key)
        forged = certify(stranger, 2, generation_2)  # type: ignore[arg-type]
    else:  # the true signature around another key
        other = _crypto.public_key_der(_crypto.generate_rsa_key())
        forged = RotationCertificate(2, second.signature_algorithm, other, second.signature)
    rotations = {"forged": (forged, true[1]), "true": tuple(true)}
    chosen = {"which": "forged"}
    scripted = ScriptedBootstrap(
        _answer_with(current, 3, lambda _: rotations[chosen["which"]], nodes)
    )
    try:
        flashed = SdkConfig.from_json(built.read_text())
        sdk = sdk_with_bootstraps(
            flashed,
            [("127.0.0.1", scripted.port, flashed.bootstrap_servers[0].public_key_pem, 1)],
        )
        state = tmp_path / "device"
        with Device.open(state, sdk, policy=GIVE_UP) as device:
            outcome = device.register(PROFILE)
        assert isinstance(outcome, Failed), outcome
        assert isinstance(outcome.cause, BadSignature)
        assert "not signed by generation 1" in outcome.cause.message
        assert not (state / "bootstrap-trust.json").exists()

        chosen["which"] = "true"  # the control: the same Bootstrap with the true chain
        with Device.open(state, sdk, policy=GIVE_UP) as device:
            accepted = device.register(PROFILE)
        assert isinstance(accepted, Connected), accepted
        assert [t["generation"] for t in _trust(state)] == [3]
    finally:
        scripted.close()
