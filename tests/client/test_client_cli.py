"""``python -m client`` in a child process: exit codes, JSON output, clear errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from kaa_wire import _crypto
from tests.client.conftest import cli_json, run_cli, sdk_with_bootstraps, write_sdk


def _dead_sdk(tmp_path: Path, port: int, vector_keys: dict[str, Any]) -> Path:
    pem = _crypto.public_key_pem(vector_keys["bootstrap_rsa"]).decode()
    config = sdk_with_bootstraps(None, [("127.0.0.1", port, pem)])
    return write_sdk(tmp_path / "sdk.json", config)


def test_register_that_gives_up_says_failed_and_why(
    tmp_path: Path, closed_port: int, vector_keys: dict[str, Any], seed_dir: Callable[..., Path]
) -> None:
    sdk = _dead_sdk(tmp_path, closed_port, vector_keys)
    state = seed_dir("device")
    result = run_cli(
        "register",
        "--sdk",
        str(sdk),
        "--state",
        str(state),
        "--profile",
        '{"a": 1}',
        "--deadline",
        "0.5",
        "--base-delay",
        "0.05",
        "--max-delay",
        "0.1",
    )
    assert result.returncode == 1
    doc = cli_json(result)
    assert doc["status"] == "failed" and doc["registered"] is False
    assert doc["cause"].startswith("ConnectionRefusedError")
    assert doc["reason"] == "deadline of 0.5 s reached"
    assert len(doc["endpoint_id"]) == 40
    assert "could not register" in result.stderr


def test_status_of_a_device_that_never_registered(
    tmp_path: Path, closed_port: int, vector_keys: dict[str, Any], seed_dir: Callable[..., Path]
) -> None:
    state = seed_dir("device")
    sdk = _dead_sdk(tmp_path, closed_port, vector_keys)
    run_cli("register", "--sdk", str(sdk), "--state", str(state), "--deadline", "0")
    result = run_cli("status", "--state", str(state))
    assert result.returncode == 0, result.stderr
    doc = cli_json(result)
    assert doc["registered"] is False and doc["status"] == "unregistered"
    key = _crypto.load_private_key((state / "key.private").read_bytes())
    assert doc["endpoint_id"] == _crypto.endpoint_id(_crypto.public_key_der(key)).hex()  # type: ignore[arg-type]
    assert doc["key_present"] is True


def test_status_without_state_is_an_error(tmp_path: Path) -> None:
    result = run_cli("status", "--state", str(tmp_path / "nothing"))
    assert result.returncode == 1
    assert cli_json(result)["status"] == "unknown"
    assert "no state file" in result.stderr


def test_bad_profile_is_a_usage_error(
    tmp_path: Path, closed_port: int, vector_keys: dict[str, Any]
) -> None:
    sdk = _dead_sdk(tmp_path, closed_port, vector_keys)
    result = run_cli(
        "register", "--sdk", str(sdk), "--state", str(tmp_path / "d"), "--profile", "{not json"
    )
    assert result.returncode == 2
    assert "--profile is not JSON" in result.stderr
    assert not (tmp_path / "d").exists()  # refused before anything was created


def test_missing_key_with_state_is_a_clear_error(
    tmp_path: Path, closed_port: int, vector_keys: dict[str, Any], seed_dir: Callable[..., Path]
) -> None:
    state = seed_dir("device")
    sdk = _dead_sdk(tmp_path, closed_port, vector_keys)
    run_cli("register", "--sdk", str(sdk), "--state", str(state), "--deadline", "0")
    (state / "key.private").unlink()
    result = run_cli("register", "--sdk", str(sdk), "--state", str(state), "--deadline", "0")
    assert result.returncode == 2
    assert "key.private is missing" in result.stderr
    assert not (state / "key.private").exists()


def test_unreadable_sdk_file_is_a_usage_error(tmp_path: Path) -> None:
    sdk = tmp_path / "sdk.json"
    sdk.write_text('{"format": "something else"}')
    result = run_cli("register", "--sdk", str(sdk), "--state", str(tmp_path / "d"))
    assert result.returncode == 2
    assert "not a kaa-wire-sdk/2 document" in result.stderr
