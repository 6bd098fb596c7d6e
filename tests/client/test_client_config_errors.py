"""A wrong SDK configuration fails fast where the verdict can be trusted (issue 13).

Real servers: ``python -m servers`` and a second ``servers.bootstrap`` on its data, so a
configuration can name two distinct Bootstraps. docs/client.md, "Configuration errors",
says why each case ends as it does.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import pytest

from kaa_wire import _crypto
from kaa_wire.crypto import public_key_pem
from tests.client.conftest import Servers, cli_json, run_cli, sdk_with_bootstraps, write_sdk
from tests.servers.servers_harness import ServerProcess

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def second_bootstrap(servers: Servers) -> tuple[str, int, str, int]:
    """A second Bootstrap on the servers' data: (host, port, key PEM, key generation)."""
    process = ServerProcess(
        "servers.bootstrap",
        ["--data", str(servers.data), "--host", "127.0.0.1", "--port", "0"],
        servers.data.parent,
        "bootstrap-2",
    )
    servers.extra.append(process)
    port = int(process.wait_for_line("bootstrap ").rsplit(":", 1)[1])
    first = servers.sdk.bootstrap_servers[0]
    return first.host, port, first.public_key_pem, first.key_generation


def _both(servers: Servers, second: tuple[str, int, str, int]) -> list[tuple[Any, ...]]:
    first = servers.sdk.bootstrap_servers[0]
    return [(first.host, first.port, first.public_key_pem, first.key_generation), second]


def _register(
    sdk: Path, state: Path, deadline: float = 30
) -> tuple[int, dict[str, Any], str, float]:
    started = time.monotonic()
    result = run_cli(
        "register", "--sdk", str(sdk), "--state", str(state), "--deadline", str(deadline),
        "--base-delay", "0.2", "--max-delay", "0.5",
    )  # fmt: skip
    assert "Traceback" not in result.stderr
    return result.returncode, cli_json(result), result.stderr, time.monotonic() - started


def test_a_wrong_sdk_token_is_a_configuration_error_at_once(
    servers: Servers, tmp_path: Path
) -> None:
    sdk = write_sdk(tmp_path / "sdk.json", dataclasses.replace(servers.sdk, sdk_token="wrong"))
    code, doc, stderr, took = _register(sdk, tmp_path / "device")
    assert (code, doc["status"], doc["configuration_error"]) == (2, "failed", True)
    assert doc["cause"].startswith("UnknownSdkToken (sealed)")
    [line] = [x for x in stderr.splitlines() if x.startswith("error:")]
    assert line.startswith(f"error: configuration error in {sdk}: the SDK token is refused")
    assert took < 20  # one registration, no deadline reached (30 s)


@pytest.mark.parametrize("wrong", ["application_token", "bootstrap_key"])
def test_every_bootstrap_agreeing_is_a_configuration_error(
    servers: Servers, second_bootstrap: tuple[str, int, str, int], tmp_path: Path, wrong: str
) -> None:
    bootstraps = _both(servers, second_bootstrap)
    if wrong == "bootstrap_key":
        other = public_key_pem(_crypto.generate_rsa_key(2048)).decode()
        bootstraps = [(host, port, other, generation) for host, port, _, generation in bootstraps]
        config = sdk_with_bootstraps(servers.sdk, bootstraps)
    else:
        config = sdk_with_bootstraps(servers.sdk, bootstraps, application_token="wrong")
    sdk = write_sdk(tmp_path / "sdk.json", config)
    code, doc, stderr, _ = _register(sdk, tmp_path / "device")
    assert (code, doc["configuration_error"]) == (2, True), stderr
    expected = "UnknownApplication" if wrong == "application_token" else "BadSignature"
    assert doc["cause"].startswith(expected) and doc["reason"].endswith("(2 agree)")
    # Each Bootstrap was asked (and each said so) before the device stopped.
    asked = {attempt.split(":")[1] for attempt in doc["attempts"]}
    assert asked == {str(servers.sdk.bootstrap_servers[0].port), str(second_bootstrap[1])}


def test_one_bootstrap_alone_is_not_trusted_to_stop_a_device(
    servers: Servers, second_bootstrap: tuple[str, int, str, int], tmp_path: Path
) -> None:
    # A single Bootstrap's plain verdict is what one forger on its path could say: the
    # device retries until its deadline (exit 1), as for any failure.
    config = sdk_with_bootstraps(
        servers.sdk, _both(servers, second_bootstrap)[:1], application_token="wrong"
    )
    sdk = write_sdk(tmp_path / "sdk.json", config)
    code, doc, _, _ = _register(sdk, tmp_path / "device", deadline=2)
    assert (code, doc["configuration_error"]) == (1, False)
    assert doc["reason"] == "deadline of 2 s reached"
    # One good Bootstrap beside a wrong key for the other: no agreement; it registers.
    good, bad = _both(servers, second_bootstrap)
    other = public_key_pem(_crypto.generate_rsa_key(2048)).decode()
    config = sdk_with_bootstraps(servers.sdk, [good, (bad[0], bad[1], other, bad[3])])
    sdk = write_sdk(tmp_path / "mixed.json", config)
    code, doc, stderr, _ = _register(sdk, tmp_path / "device-2")
    assert (code, doc["status"]) == (0, "new"), stderr
