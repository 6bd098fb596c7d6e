"""The whole flow over real sockets against a real ``python -m servers`` process.

Endpoints start from an exported SDK configuration, resolve (signature checked by the
kaa_wire core), register, reconnect, update their profile, and get refused for every
reason the protocol has. Each test uses its own endpoint key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers_harness import (
    Endpoint,
    MainServer,
    ServerProcess,
    control,
    control_json,
    resolve,
    send_registration,
    start_main,
    wait_until,
)

from kaa_wire import (
    BadSignature,
    RegistrationStatus,
    ReplayedRequest,
    RevokedEndpoint,
    StaleRequest,
    Topic,
    UnknownApplication,
    UnknownKeyHash,
    UnknownSdkToken,
    _crypto,
)
from kaa_wire.crypto import generate_ed25519_key
from kaa_wire.sdk_config import BootstrapServer, SdkConfig

PROFILE = json.dumps({"model": "thermo-3", "firmware": "1.4.2", "room": "kitchen"}).encode()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MainServer]:
    data = tmp_path_factory.mktemp("flow") / "data"
    # Cached answers are re-signed after a third of their validity: an hour keeps them stable.
    main = start_main(data, "--log-json", "--log-level", "debug", "--presigned-valid-s", "3600")
    yield main
    assert main.process.stop() == 0, main.process.logs()


@pytest.fixture(scope="module")
def app_sdk(server: MainServer) -> SdkConfig:
    """An application with a real configuration and topics, exported like a user would."""
    app = control_json(
        server.data,
        "app", "create", "--name", "thermostats",
        "--body", '{"period_s": 60}', "--topic", "1:alerts", "--topic", "2:firmware",
    )  # fmt: skip
    token = control_json(server.data, "sdk", "create", app["token"])["sdk_token"]
    out = server.data.parent / "thermostats.json"
    control(
        server.data,
        "sdk", "export", "--app", app["token"], "--sdk-token", token, "--out", str(out),
        "--bootstrap", f"127.0.0.1:{server.listeners['bootstrap_port']}",
    )  # fmt: skip
    return SdkConfig.from_json(out.read_text())


def test_sdk_export_holds_the_bound_bootstrap_port_and_key(server: MainServer) -> None:
    sdk = server.sdk
    assert [(b.host, b.port) for b in sdk.bootstrap_servers] == [
        ("127.0.0.1", server.listeners["bootstrap_port"])
    ]
    public = (server.data / "bootstrap.pub").read_text()
    assert sdk.bootstrap_servers[0].public_key_pem == public
    assert sdk.accept_unbound_resolution is False
    for key in ("bootstrap.key", "operations.key", "defaults.json"):
        assert (server.data / key).stat().st_mode & 0o777 == 0o600


@pytest.mark.security
def test_resolution_is_signed_by_the_exported_key(server: MainServer, rsa_keys: list) -> None:
    resolved = resolve(server.sdk)
    assert len(resolved.nodes) == 1
    assert resolved.nodes[0].port == server.listeners["operations_port"]
    # The same answer checked against another key must fail: the signature is real.
    other = _crypto.public_key_pem(rsa_keys[-1]).decode()
    forged = SdkConfig(
        server.sdk.application_token,
        server.sdk.sdk_token,
        (BootstrapServer("127.0.0.1", server.listeners["bootstrap_port"], other),),
    )
    with pytest.raises(BadSignature):
        resolve(forged)


def test_unknown_application_is_refused(server: MainServer) -> None:
    with pytest.raises(UnknownApplication) as refused:
        resolve(server.sdk, app_token="no-such-application")
    assert not refused.value.sealed


def test_register_reconnect_and_profile_update(app_sdk: SdkConfig, rsa_keys: list) -> None:
    endpoint = Endpoint(app_sdk, rsa_keys[0])
    first = endpoint.register(PROFILE)
    assert first.status == RegistrationStatus.NEW
    assert first.endpoint_id == endpoint.endpoint_id
    assert (first.config, first.config_version) == (b'{"period_s": 60}', 1)
    assert first.topics == (Topic(1, "alerts"), Topic(2, "firmware"))
    assert first.reconnect_after_s == 3600

    again = endpoint.register(PROFILE, reconnect=True)
    assert again.status == RegistrationStatus.EXISTING
    changed = endpoint.register(PROFILE.replace(b"kitchen", b"garage"), reconnect=True)
    assert changed.status == RegistrationStatus.PROFILE_UPDATED
    # A full-key registration of a known endpoint is not NEW either.
    assert endpoint.register(PROFILE).status == RegistrationStatus.PROFILE_UPDATED


def test_endpoint_is_stored_with_its_profile(
    server: MainServer, app_sdk: SdkConfig, rsa_keys: list
) -> None:
    endpoint = Endpoint(app_sdk, rsa_keys[1])
    endpoint.register(PROFILE)
    shown = control_json(server.data, "endpoint", "show", endpoint.endpoint_id.hex())
    assert shown["application"] == app_sdk.application_token
    assert shown["status"] == "active" and shown["registration_status"] == "NEW"
    assert shown["profile"] == PROFILE.decode()
    assert bytes.fromhex(shown["public_key_der_hex"]) == _crypto.public_key_der(rsa_keys[1])
    assert shown["first_seen_ms"] <= shown["last_seen_ms"]


@pytest.mark.security
def test_revoked_endpoint_is_refused_sealed(
    server: MainServer, app_sdk: SdkConfig, rsa_keys: list
) -> None:
    endpoint = Endpoint(app_sdk, rsa_keys[2])
    endpoint.register(PROFILE)
    control(server.data, "endpoint", "revoke", endpoint.endpoint_id.hex(), "--reason", "lost")
    with pytest.raises(RevokedEndpoint) as refused:
        endpoint.register(PROFILE, reconnect=True)
    assert refused.value.sealed
    audit = control_json(server.data, "audit", "list")
    assert any(
        e["action"] == "endpoint.revoke" and e["subject"] == endpoint.endpoint_id.hex()
        for e in audit
    )


@pytest.mark.security
def test_replayed_bytes_are_refused(app_sdk: SdkConfig, rsa_keys: list) -> None:
    endpoint = Endpoint(app_sdk, rsa_keys[3])
    node = endpoint.resolve().nodes[0]
    ephemeral = _crypto.generate_x25519_key()
    timestamp = endpoint.timestamp_ms()
    original = endpoint.client(node, PROFILE, timestamp_ms=timestamp, ephemeral_key=ephemeral)
    request = original.send_request()
    assert send_registration(original, request).status == RegistrationStatus.NEW
    # A second client with the same inputs builds the very same bytes and can open the answer.
    copy = endpoint.client(node, PROFILE, timestamp_ms=timestamp, ephemeral_key=ephemeral)
    assert copy.send_request() == request
    copy2 = endpoint.client(node, PROFILE, timestamp_ms=timestamp, ephemeral_key=ephemeral)
    copy2.send_request()
    with pytest.raises(ReplayedRequest) as refused:
        send_registration(copy2, request)
    assert refused.value.sealed


@pytest.mark.security
def test_stale_timestamps_are_refused(app_sdk: SdkConfig, rsa_keys: list) -> None:
    endpoint = Endpoint(app_sdk, rsa_keys[4])
    now = endpoint.timestamp_ms()
    for skew_ms in (-200_000, 200_000):
        with pytest.raises(StaleRequest) as refused:
            endpoint.register(PROFILE, timestamp_ms=now + skew_ms)
        assert refused.value.sealed


@pytest.mark.security
def test_wrong_sdk_token_is_refused(app_sdk: SdkConfig, rsa_keys: list) -> None:
    endpoint = Endpoint(app_sdk, rsa_keys[4])
    with pytest.raises(UnknownSdkToken) as refused:
        endpoint.register(PROFILE, sdk_token="not-a-token-of-this-server")
    assert refused.value.sealed


@pytest.mark.security
def test_a_revoked_sdk_token_is_refused_within_refresh_s(server: MainServer) -> None:
    """sdk revoke: a device registered with the token is refused at its next registration
    after the token cache's refresh_s (1 s here), sealed UNKNOWN_SDK_TOKEN; a device of
    another token of the same application is not affected."""
    app = control_json(server.data, "app", "create", "--name", "revocable")
    kept, stolen = (
        control_json(server.data, "sdk", "create", app["token"])["sdk_token"] for _ in range(2)
    )
    base = dataclasses.replace(server.sdk, application_token=app["token"])
    device = Endpoint(dataclasses.replace(base, sdk_token=stolen), generate_ed25519_key())
    assert device.register(PROFILE).status == RegistrationStatus.NEW
    digest = hashlib.sha256(stolen.encode()).hexdigest()
    revoked = control_json(server.data, "sdk", "revoke", app["token"], digest[:12])
    assert revoked["sha256"] == digest and revoked["revoked_ms"] is not None
    listed = {t["sha256"]: t["revoked_ms"] for t in
              control_json(server.data, "sdk", "list", app["token"])}
    assert listed[digest] is not None and len(listed) == 2

    def refused() -> bool:
        try:
            device.register(PROFILE, reconnect=True)
        except UnknownSdkToken as exc:
            assert exc.sealed
            return True
        return False

    wait_until(refused, "the revoked SDK token to be refused", timeout=10)
    other = Endpoint(dataclasses.replace(base, sdk_token=kept), generate_ed25519_key())
    assert other.register(PROFILE).status == RegistrationStatus.NEW
    audit = control_json(server.data, "audit", "list")
    assert audit[0]["action"] == "sdk.revoke"


@pytest.mark.security
def test_reconnect_with_unknown_key_hash_is_refused(app_sdk: SdkConfig, rsa_keys: list) -> None:
    endpoint = Endpoint(app_sdk, rsa_keys[5])
    with pytest.raises(UnknownKeyHash) as refused:
        endpoint.register(PROFILE, reconnect=True)
    assert refused.value.sealed


@pytest.mark.security
def test_cached_signature_mode(server: MainServer) -> None:
    app = control_json(server.data, "app", "create", "--name", "fanin", "--cached-signature")
    token = control_json(server.data, "sdk", "create", app["token"])["sdk_token"]
    out = server.data.parent / "fanin.json"
    port = server.listeners["bootstrap_port"]
    control(
        server.data,
        "sdk", "export", "--app", app["token"], "--sdk-token", token, "--out", str(out),
        "--bootstrap", f"127.0.0.1:{port}",
    )  # fmt: skip
    sdk = SdkConfig.from_json(out.read_text())
    assert sdk.accept_unbound_resolution is True
    first = resolve(sdk)
    assert first.nodes and resolve(sdk).server_time_ms == first.server_time_ms  # signed once
    # A client whose SDK does not allow unbound answers refuses them.
    strict = SdkConfig(sdk.application_token, sdk.sdk_token, sdk.bootstrap_servers)
    with pytest.raises(ReplayedRequest):
        resolve(strict)


def test_metrics_count_what_happened(
    server: MainServer, app_sdk: SdkConfig, rsa_keys: list
) -> None:
    Endpoint(app_sdk, rsa_keys[6]).register(PROFILE)
    with pytest.raises(UnknownApplication):
        resolve(app_sdk, app_token="unknown-app")
    text = server.metrics_with('kaa_errors_total{service="bootstrap",code="UNKNOWN_APPLICATION"}')

    def value(sample: str) -> float:
        match = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.M)
        assert match, f"{sample} missing from /metrics"
        return float(match.group(1))

    assert value('kaa_registrations_total{status="NEW"}') >= 1
    assert value('kaa_resolutions_total{mode="per-request"}') >= 1
    assert value('kaa_errors_total{service="bootstrap",code="UNKNOWN_APPLICATION"}') >= 1
    assert value('kaa_request_duration_seconds_count{service="operations"}') >= 1
    assert value("kaa_store_commits_total") >= 1


@pytest.mark.security
def test_logs_are_json_lines_without_secrets(
    server: MainServer, app_sdk: SdkConfig, rsa_keys: list
) -> None:
    endpoint = Endpoint(app_sdk, rsa_keys[7])
    endpoint.register(PROFILE)
    logs = server.process.logs()
    events = [json.loads(line) for line in logs.splitlines()]
    assert any(
        e["event"] == "registered" and e["endpoint"] == endpoint.endpoint_id.hex() for e in events
    )
    secrets = [
        server.sdk.sdk_token,
        server.sdk.application_token,
        app_sdk.sdk_token,
        app_sdk.application_token,
        "kitchen",
        "PRIVATE KEY",
    ]
    for secret in secrets:
        assert secret not in logs


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_c_header_matches_the_json(server: MainServer, tmp_path: Path) -> None:
    program = tmp_path / "dump.c"
    program.write_text(
        '#include <stdio.h>\n#include "sdk.h"\n'
        "int main(void) {\n"
        '  printf("%s|%s|%s|%u|%lu|%d|%u|", KAA_APPLICATION_TOKEN, KAA_SDK_TOKEN,\n'
        "         KAA_BOOTSTRAP_SERVERS[0].host, KAA_BOOTSTRAP_SERVERS[0].port,\n"
        "         KAA_BOOTSTRAP_SERVERS[0].key_generation,\n"
        "         KAA_ACCEPT_UNBOUND_RESOLUTION, KAA_MAX_FRAME_SIZE);\n"
        '  fputs(KAA_BOOTSTRAP_SERVERS[0].public_key_pem, stdout); fputs("|", stdout);\n'
        "  fputs(KAA_SDK_CONFIG_JSON, stdout); return 0; }\n"
    )
    binary = tmp_path / "dump"
    subprocess.run(
        [
            "cc",
            "-std=c99",
            "-Wall",
            "-Werror",
            "-I",
            str(server.data),
            "-o",
            str(binary),
            str(program),
        ],
        check=True,
        timeout=60,
    )
    out = subprocess.run([str(binary)], capture_output=True, text=True, check=True).stdout
    sdk = server.sdk
    server0 = sdk.bootstrap_servers[0]
    expected = (
        f"{sdk.application_token}|{sdk.sdk_token}|{server0.host}|{server0.port}|"
        f"{server0.key_generation}|0|"
        f"{sdk.max_frame_size}|{server0.public_key_pem}|{(server.data / 'sdk.json').read_text()}"
    )
    assert out == expected


def test_restart_reuses_the_default_application(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = start_main(data, name="first")
    tokens = (first.sdk.application_token, first.sdk.sdk_token)
    assert first.process.stop() == 0
    assert not (data / "listeners.json").exists()
    second = start_main(data, name="second")
    try:
        assert (second.sdk.application_token, second.sdk.sdk_token) == tokens
        assert resolve(second.sdk).nodes
        apps = control_json(data, "app", "list")
        assert [a["name"] for a in apps] == ["default"]
    finally:
        assert second.process.stop() == 0
    assert os.path.exists(data / "registry.db")


def test_a_second_instance_on_taken_ports_leaves_the_first_alone(server: MainServer) -> None:
    listeners = (server.data / "listeners.json").read_text()
    sdk = (server.data / "sdk.json").read_text()
    second = ServerProcess(
        "servers",
        [
            "--data", str(server.data), "--admin-port", "-1", "--bootstrap-port", "0",
            "--operations-port", str(server.listeners["operations_port"]),
        ],
        server.data.parent / "logs",
        "second",
    )  # fmt: skip
    assert second.proc.wait(timeout=60) == 1
    assert "error:" in second.logs() and "Traceback" not in second.logs()
    assert (server.data / "listeners.json").read_text() == listeners
    assert (server.data / "sdk.json").read_text() == sdk
    assert resolve(server.sdk).nodes
