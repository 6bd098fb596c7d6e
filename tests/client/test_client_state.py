"""The state directory: first boot, later boots, corruption, missing keys, real crashes."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import kaa_files
from client import (
    ApplicationState,
    CorruptKeyError,
    DeviceState,
    MissingKeyError,
    ServerInfo,
    StateDir,
    StateDirBusy,
)
from client._state import decode_state, encode_state, read_state
from kaa_wire import _crypto

ROOT = Path(__file__).resolve().parents[2]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _registered(state: DeviceState) -> DeviceState:
    return dataclasses.replace(
        state,
        registered=True,
        status="new",
        operations_server=ServerInfo("127.0.0.1", 9000, 1, 5),
        profile_sha256="ab" * 32,
        application_state=ApplicationState(3, b'{"x": 1}', ((1, "alerts"),)),
        reconnect_after_s=600,
        retry_base_ms=2000,
    )


@pytest.fixture
def seeded(tmp_path: Path, vector_keys: dict[str, Any]) -> Path:
    """A state directory that already holds a key pair (no key generation cost)."""
    directory = tmp_path / "device"
    directory.mkdir(mode=0o700)
    kaa_files.save_private_key(directory / "key.private", vector_keys["endpoint_rsa"])
    kaa_files.save_public_key(directory / "key.public", vector_keys["endpoint_rsa"])
    return directory


def _key_id(key: Any) -> str:
    return _crypto.endpoint_id(_crypto.public_key_der(key)).hex()


def test_a_loose_state_directory_is_tightened_and_said(tmp_path: Path) -> None:
    """A pre-made 0777 state directory (another tool, a umask of 0) holds the device key:
    it becomes 0700, and the device says so."""
    directory = tmp_path / "device"
    directory.mkdir()
    directory.chmod(0o777)
    with StateDir.open(directory) as opened:
        assert opened.recovered == "state directory was mode 0777, now 0700"
    assert _mode(directory) == 0o700
    with StateDir.open(directory) as opened:
        assert opened.recovered is None


def test_first_boot_creates_keys_and_state(tmp_path: Path) -> None:
    directory = tmp_path / "device"
    with StateDir.open(directory) as opened:
        assert opened.first_boot and opened.recovered is None
        key_id = opened.endpoint_id
    private = (directory / "key.private").read_bytes()
    assert private.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8
    key = _crypto.load_private_key(private)
    assert key.key_size == 2048  # type: ignore[union-attr]
    public = (directory / "key.public").read_bytes()
    assert public.startswith(b"-----BEGIN PUBLIC KEY-----")  # SubjectPublicKeyInfo
    assert _key_id(_crypto.load_public_key(public)) == _key_id(key) == key_id
    assert _mode(directory) == 0o700
    assert _mode(directory / "key.private") == 0o600
    assert _mode(directory / "key.public") == 0o644
    assert _mode(directory / "state.json") == 0o600
    state, problem = read_state(directory)
    assert problem is None and state == DeviceState(endpoint_id=key_id)


def test_later_boots_reuse_keys_and_state(seeded: Path, vector_keys: dict[str, Any]) -> None:
    with StateDir.open(seeded) as opened:
        assert not opened.first_boot
        assert opened.endpoint_id == _key_id(vector_keys["endpoint_rsa"])
        saved = _registered(opened.state)
        opened.save(saved)
    with StateDir.open(seeded) as again:
        assert again.state == saved
        assert again.recovered is None
        assert _crypto.private_key_pem(again.private_key) == (seeded / "key.private").read_bytes()


def test_state_round_trips_binary_config(seeded: Path) -> None:
    with StateDir.open(seeded) as opened:
        state = dataclasses.replace(
            _registered(opened.state), application_state=ApplicationState(1, b"\xff\x00\xfe")
        )
        assert decode_state(encode_state(state)) == state
        doc = state.application_state.to_json()  # type: ignore[union-attr]
        assert doc["config_encoding"] == "base64"


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: data[: len(data) // 2], id="torn"),
        pytest.param(lambda data: b"", id="empty"),
        pytest.param(
            lambda data: data.replace(b'"registered": true', b'"registered": 1'),
            id="edited-without-checksum",
        ),
        pytest.param(lambda data: b"\x00" * len(data), id="zeroed"),
        pytest.param(lambda data: b"[1, 2]", id="not-an-object"),
    ],
)
def test_corrupt_state_is_rebuilt_and_the_key_kept(seeded: Path, damage: Any) -> None:
    key_before = (seeded / "key.private").read_bytes()
    with StateDir.open(seeded) as opened:
        key_id = opened.endpoint_id
        opened.save(_registered(opened.state))
    state_file = seeded / "state.json"
    damaged = damage(state_file.read_bytes())
    state_file.write_bytes(damaged)
    with StateDir.open(seeded) as reopened:
        assert reopened.recovered is not None and "corrupt" in reopened.recovered
        assert reopened.state == DeviceState(endpoint_id=key_id)
    assert (seeded / "key.private").read_bytes() == key_before
    assert (seeded / "state.json.corrupt").read_bytes() == damaged
    assert read_state(seeded) == (DeviceState(endpoint_id=key_id), None)


def test_state_of_another_endpoint_is_rebuilt(seeded: Path, vector_keys: dict[str, Any]) -> None:
    other = DeviceState(endpoint_id=_key_id(vector_keys["other_rsa"]), registered=True)
    (seeded / "state.json").write_bytes(encode_state(other))
    with StateDir.open(seeded) as opened:
        assert "names endpoint" in (opened.recovered or "")
        assert opened.state.endpoint_id == _key_id(vector_keys["endpoint_rsa"])
        assert not opened.state.registered


def test_missing_state_file_is_rebuilt(seeded: Path) -> None:
    with StateDir.open(seeded) as opened:
        opened.save(_registered(opened.state))
    (seeded / "state.json").unlink()
    with StateDir.open(seeded) as opened:
        assert not opened.state.registered and opened.recovered is None
    assert (seeded / "state.json").exists()


@pytest.mark.parametrize("leftover", ["state.json", "key.public"])
def test_missing_private_key_with_existing_state_is_an_error(seeded: Path, leftover: str) -> None:
    with StateDir.open(seeded):
        pass
    (seeded / "key.private").unlink()
    for name in ("state.json", "key.public"):
        if name != leftover:
            (seeded / name).unlink()
    before = sorted(p.name for p in seeded.iterdir())
    with pytest.raises(MissingKeyError, match=r"key\.private is missing"):
        StateDir.open(seeded)
    assert sorted(p.name for p in seeded.iterdir()) == before  # nothing generated
    assert not (seeded / "key.private").exists()


def test_unreadable_private_key_is_an_error_and_left_alone(seeded: Path) -> None:
    (seeded / "key.private").write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot base64\n")
    with pytest.raises(CorruptKeyError):
        StateDir.open(seeded)
    assert b"not base64" in (seeded / "key.private").read_bytes()


def test_missing_or_wrong_public_key_is_rewritten(
    seeded: Path, vector_keys: dict[str, Any]
) -> None:
    expected = (seeded / "key.public").read_bytes()
    (seeded / "key.public").unlink()
    with StateDir.open(seeded):
        pass
    assert (seeded / "key.public").read_bytes() == expected
    kaa_files.save_public_key(seeded / "key.public", vector_keys["other_rsa"])
    with StateDir.open(seeded):
        pass
    assert (seeded / "key.public").read_bytes() == expected


def test_stale_temp_files_are_removed(seeded: Path) -> None:
    stale = [seeded / ".state.json.k2j3h4", seeded / ".key.private.x9y8z7"]
    for path in stale:
        path.write_bytes(b"half")
    unrelated = seeded / "notes.txt"
    unrelated.write_text("keep")
    with StateDir.open(seeded):
        pass
    assert not any(path.exists() for path in stale)
    assert unrelated.exists()


def test_a_second_opener_is_refused_while_the_first_holds_it(seeded: Path) -> None:
    first = StateDir.open(seeded)
    try:
        with pytest.raises(StateDirBusy):
            StateDir.open(seeded)
    finally:
        first.close()
    with StateDir.open(seeded):
        pass


# -- real crashes: SIGKILL exactly between the temp file's fsync and its rename -----------

_CHILD = textwrap.dedent(
    """
    import dataclasses, os, signal, sys
    from pathlib import Path

    directory, target, nth = sys.argv[1], sys.argv[2], int(sys.argv[3])
    seen = 0

    def kill_at_rename(event, args):
        # atomic_write has written and fsynced the temp file; the rename is next.
        global seen
        if event == "os.rename" and Path(args[1]).name == target:
            seen += 1
            if seen == nth:
                os.kill(os.getpid(), signal.SIGKILL)

    sys.addaudithook(kill_at_rename)
    from client import StateDir

    opened = StateDir.open(directory)
    opened.save(dataclasses.replace(opened.state, registered=True, status="new"))
    print("not killed")
    """
)


def _crash(directory: Path, target: str, nth: int) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, str(directory), target, str(nth)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == -signal.SIGKILL, child.stdout + child.stderr


@pytest.mark.crash
def test_kill_between_state_write_and_rename_keeps_the_old_state(seeded: Path) -> None:
    key_before = (seeded / "key.private").read_bytes()
    # Rename 1 of state.json is the boot's own write; 2 is the save of the new state.
    _crash(seeded, "state.json", 2)
    temp_files = list(seeded.glob(".state.json.*"))
    assert len(temp_files) == 1  # the fsynced, never renamed, new state
    assert decode_state(temp_files[0].read_bytes()).registered
    with StateDir.open(seeded) as opened:
        assert opened.recovered is None
        assert not opened.state.registered  # the old state, intact
    assert not list(seeded.glob(".state.json.*"))
    assert (seeded / "key.private").read_bytes() == key_before


@pytest.mark.crash
def test_kill_on_first_boot_between_the_two_key_files_keeps_the_private_key(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "device"
    _crash(directory, "key.public", 1)
    assert not (directory / "key.public").exists()
    private = (directory / "key.private").read_bytes()
    with StateDir.open(directory) as opened:
        assert not opened.first_boot  # the key survived: same identity
        assert _crypto.private_key_pem(opened.private_key) == private
    assert _key_id(_crypto.load_public_key((directory / "key.public").read_bytes())) == (
        _key_id(_crypto.load_private_key(private))
    )


@pytest.mark.crash
def test_kill_before_the_private_key_lands_is_still_a_first_boot(tmp_path: Path) -> None:
    directory = tmp_path / "device"
    _crash(directory, "key.private", 1)
    assert not (directory / "key.private").exists()
    assert list(directory.glob(".key.private.*"))
    with StateDir.open(directory) as opened:  # nothing was ever registered with that key
        assert opened.first_boot
    assert not list(directory.glob(".key.private.*"))


def test_state_file_is_json_with_the_documented_fields(seeded: Path) -> None:
    with StateDir.open(seeded) as opened:
        opened.save(_registered(opened.state))
    doc = json.loads((seeded / "state.json").read_text())
    assert sorted(doc) == sorted(
        [
            "format",
            "endpoint_id",
            "registered",
            "status",
            "operations_server",
            "profile_sha256",
            "application_state",
            "reconnect_after_s",
            "retry_base_ms",
            "last_timestamp_ms",
            "sha256",
        ]
    )
    assert doc["format"] == "kaa-client-state/1"
    assert doc["application_state"]["topics"] == [{"id": 1, "name": "alerts"}]


def test_first_boot_key_type_is_kept_and_checked(tmp_path: Path) -> None:
    """A P-256 first boot writes a P-256 key (0600); reopening keeps it, with or without the
    type named; another type is KeyTypeError with the key untouched; an unknown type is
    refused before anything is created."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from client._state import KeyTypeError

    directory = tmp_path / "device"
    with StateDir.open(directory, "p256") as first:
        assert isinstance(first.private_key, ec.EllipticCurvePrivateKey)
        endpoint_id = first.endpoint_id
    assert (directory / "key.private").stat().st_mode & 0o777 == 0o600
    for key_type in ("p256", None):
        with StateDir.open(directory, key_type) as again:
            assert again.endpoint_id == endpoint_id and not again.first_boot
    key_bytes = (directory / "key.private").read_bytes()
    with pytest.raises(KeyTypeError, match="is a p256 key, not ed25519"):
        StateDir.open(directory, "ed25519")
    assert (directory / "key.private").read_bytes() == key_bytes
    with StateDir.open(directory) as reopened:  # the lock was released by the refusal
        assert reopened.endpoint_id == endpoint_id
    with pytest.raises(KeyTypeError, match="unknown key type 'rsa1024'"):
        StateDir.open(tmp_path / "other", "rsa1024")
    assert not (tmp_path / "other").exists()
