"""The SDK configuration file, as docs/protocol.md section 12 specifies it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kaa_wire import LocalProtocolError, _crypto
from kaa_wire.sdk_config import FORMAT, BootstrapServer, SdkConfig
from servers.control.export import c_header


@pytest.fixture(scope="module")
def pem(vector_keys: dict[str, Any]) -> str:
    return _crypto.public_key_pem(vector_keys["bootstrap_rsa"]).decode()


def _document(pem: str, **changes: Any) -> dict[str, Any]:
    server = {"host": "boot.example.net", "port": 9888, "public_key_pem": pem, "key_generation": 4}
    server.update(changes.pop("server", {}))
    document = {
        "format": FORMAT,
        "application_token": "app-token",
        "sdk_token": "sdk-token",
        "bootstrap_servers": [server],
        "max_frame_size": 65536,
        "accept_unbound_resolution": False,
    }
    document.update(changes)
    return document


def test_round_trip_and_version_1(pem: str) -> None:
    config = SdkConfig.from_json(json.dumps(_document(pem)))
    assert config.bootstrap_servers[0].key_generation == 4
    assert SdkConfig.from_json(config.to_json()) == config
    assert json.loads(config.to_json())["format"] == "kaa-wire-sdk/2"
    old = _document(pem, format="kaa-wire-sdk/1")
    del old["bootstrap_servers"][0]["key_generation"]
    assert SdkConfig.from_json(json.dumps(old)).bootstrap_servers[0].key_generation == 1
    minimal = _document(pem)
    del minimal["max_frame_size"], minimal["accept_unbound_resolution"]
    minimal["added_later"] = {"ignored": True}
    parsed = SdkConfig.from_json(json.dumps(minimal))
    assert (parsed.max_frame_size, parsed.accept_unbound_resolution) == (65536, False)


@pytest.mark.parametrize(
    "changes",
    [
        {"format": "kaa-wire-sdk/3"},
        {"application_token": ""},
        {"application_token": 5},
        {"sdk_token": "t" * 65},
        {"bootstrap_servers": []},
        {"max_frame_size": 6},
        {"max_frame_size": 16_777_222},
        {"max_frame_size": "65536"},
        {"accept_unbound_resolution": 1},
        {"server": {"key_generation": 0}},
        {"server": {"key_generation": 2**32}},
        {"server": {"key_generation": "4"}},
        {"server": {"key_generation": None}},
        {"server": {"port": 0}},
        {"server": {"port": 65536}},
        {"server": {"port": True}},
        {"server": {"host": ""}},
        {"server": {"host": "h" * 256}},
    ],
)
def test_invalid_documents_are_refused(pem: str, changes: dict[str, Any]) -> None:
    with pytest.raises(LocalProtocolError, match="invalid SDK configuration"):
        SdkConfig.from_json(json.dumps(_document(pem, **changes)))


def test_version_2_requires_the_generation(pem: str) -> None:
    document = _document(pem)
    del document["bootstrap_servers"][0]["key_generation"]
    with pytest.raises(LocalProtocolError, match="key_generation"):
        SdkConfig.from_json(json.dumps(document))


@pytest.mark.parametrize("bits", [1024, 4104])
def test_a_bootstrap_key_out_of_range_is_refused_when_used(bits: int) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    server = BootstrapServer("h", 1, _crypto.public_key_pem(key).decode())
    with pytest.raises(LocalProtocolError, match="unusable Bootstrap key"):
        server.trusted_key()


def test_header_and_json_carry_the_same_facts(pem: str) -> None:
    config = SdkConfig.from_json(json.dumps(_document(pem, accept_unbound_resolution=True)))
    header = c_header(config)
    assert '#define KAA_SDK_CONFIG_FORMAT "kaa-wire-sdk/2"' in header
    assert '#define KAA_APPLICATION_TOKEN "app-token"' in header
    assert "#define KAA_MAX_FRAME_SIZE 65536u" in header
    assert "#define KAA_ACCEPT_UNBOUND_RESOLUTION 1" in header
    assert "unsigned long key_generation;" in header and "unsigned short port;" in header
    assert '{ "boot.example.net",\n      9888u,' in header and "4u,\n" in header
    # What the C SDK takes from the same PEM: the DER, its size and the algorithm id.
    assert "#ifndef KAA_BOOTSTRAP_SERVER_DECLARED" in header
    assert "const unsigned char *public_key_der;" in header
    assert '(const unsigned char *)"\\060\\202\\001\\042' in header
    assert "294u,\n      1u }" in header
