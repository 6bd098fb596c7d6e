"""Backup and restore of the SQLite store, and pre-revocation, against real servers.

``control backup`` copies the store while ``python -m servers`` runs; the copy, restored
into a data directory whose database is gone, is what the servers then serve: a device
known only to the backup reconnects by its key hash and is EXISTING (a store without it
would answer UNKNOWN_KEY_HASH and the device would register as new). An endpoint id revoked
before its device ever registered is refused at its first registration, as revoked.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from servers_harness import START_TIMEOUT_S, _env, control, control_json, start_main

pytestmark = pytest.mark.slow


def _client(*args: str) -> tuple[int, dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "client", *args, "--deadline", "20"],
        capture_output=True, text=True, env=_env(), timeout=START_TIMEOUT_S,
    )  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, (done.stdout, done.stderr)
    return done.returncode, json.loads(lines[0])


def _register(data: Path, state: Path) -> tuple[int, dict[str, Any]]:
    return _client("register", "--sdk", str(data / "sdk.json"), "--state", str(state))


def test_a_restored_backup_serves_a_device_known_only_to_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start_main(data)
    try:
        code, first = _register(data, tmp_path / "device")
        assert (code, first["status"]) == (0, "new")
        backup = tmp_path / "backups" / "registry.db"
        backup.parent.mkdir()
        doc = control_json(data, "backup", "--out", str(backup))  # while the servers run
        assert doc["backup"] == str(backup) and doc["bytes"] == backup.stat().st_size
        assert backup.stat().st_mode & 0o777 == 0o600
        assert sorted(p.name for p in backup.parent.iterdir()) == ["registry.db"]
    finally:
        assert server.process.stop() == 0
    # The database is lost; the backup goes back in its place (docs/operations.md).
    for lost in data.glob("registry.db*"):
        lost.unlink()
    shutil.copy2(backup, data / "registry.db")
    server = start_main(data, name="restored")
    try:
        code, again = _register(data, tmp_path / "device")
        assert (code, again["status"]) == (0, "existing")
        assert again["endpoint_id"] == first["endpoint_id"]
    finally:
        assert server.process.stop() == 0


def test_an_id_revoked_before_it_registers_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start_main(data)
    try:
        device = tmp_path / "stolen"
        keygen = subprocess.run(
            [sys.executable, "-m", "kaa_wire", "keygen", "--out", str(device)],
            capture_output=True, text=True, env=_env(), check=True,
        )  # fmt: skip
        assert keygen.returncode == 0
        keyid = subprocess.run(
            [sys.executable, "-m", "kaa_wire", "keyid", str(device / "key.private")],
            capture_output=True, text=True, env=_env(), check=True,
        ).stdout.strip()  # fmt: skip
        revoked = control(data, "endpoint", "revoke", keyid, "--reason", "key stolen")
        assert "has never registered" in revoked.stderr
        code, outcome = _register(data, device)
        assert (code, outcome["status"], outcome["endpoint_id"]) == (3, "revoked", keyid)
        [entry] = [e for e in control_json(data, "audit", "list") if e["subject"] == keyid]
        assert (entry["action"], entry["detail"]) == ("endpoint.pre-revoke", "key stolen")
    finally:
        assert server.process.stop() == 0
