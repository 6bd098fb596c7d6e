"""Key files, atomic writes and sealing helpers."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

import kaa_files
from kaa_wire import BadSeal, LocalProtocolError, UnsupportedAlgorithm, _crypto


def test_private_key_file_is_0600_whatever_the_umask(
    tmp_path: Path, vector_keys: dict[str, Any]
) -> None:
    old = os.umask(0)
    try:
        kaa_files.save_private_key(tmp_path / "k", vector_keys["endpoint_rsa"])
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "k").st_mode) == 0o600
    loaded = _crypto.load_private_key((tmp_path / "k").read_bytes())
    assert _crypto.public_key_der(loaded) == _crypto.public_key_der(vector_keys["endpoint_rsa"])  # type: ignore[arg-type]


def test_atomic_write_replaces_whole_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_bytes(b"old")
    kaa_files.atomic_write(target, b"new", 0o644)
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_atomic_write_failure_keeps_old_file(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_bytes(b"old")
    with pytest.raises(TypeError):
        kaa_files.atomic_write(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_load_public_key_accepts_every_form(vector_keys: dict[str, Any]) -> None:
    key = vector_keys["endpoint_rsa"]
    der = _crypto.public_key_der(key)
    for blob in (der, _crypto.public_key_pem(key), _crypto.private_key_pem(key)):
        assert _crypto.public_key_der(_crypto.load_public_key(blob)) == der  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "blob", [b"", b"garbage", b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"]
)
def test_bad_key_material_is_a_local_error(blob: bytes) -> None:
    with pytest.raises(LocalProtocolError):
        _crypto.load_public_key(blob)


def test_small_rsa_keys_have_no_algorithm() -> None:
    small = _crypto.generate_rsa_key(1024)
    with pytest.raises(UnsupportedAlgorithm):
        _crypto.signature_algorithm_of(small)


def test_session_keys_agree_and_differ_per_direction(vector_keys: dict[str, Any]) -> None:
    server_key = vector_keys["operations_x25519"]
    server_public = _crypto.x25519_public_bytes(server_key)
    client = _crypto.client_session(server_public)
    server = _crypto.server_session(server_key, server_public, client.ephemeral_public_key)
    sealed = _crypto.seal(client.request, b"payload", b"aad")
    assert _crypto.unseal(server.request, sealed, b"aad") == b"payload"
    with pytest.raises(BadSeal):  # no key of the response side opens a request
        _crypto.open_answer(server.response_secret, bytes(32) + sealed, b"aad")
    answer = _crypto.seal_answer(server.response_secret, b"answer", b"aad", bytes(range(32)))
    assert _crypto.open_answer(client.response_secret, answer, b"aad") == b"answer"
    with pytest.raises(BadSeal):  # the request key does not open the answer
        _crypto.unseal(client.request, answer[32:], b"aad")
