"""The Control tool on a data directory (in-process: each call is a full CLI run)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from kaa_wire import Signer, _crypto
from kaa_wire.sdk_config import SdkConfig
from servers.control.actions import new_token
from servers.control.cli import main


class Control:
    def __init__(self, data: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.data = data
        self.capsys = capsys

    def __call__(self, *args: str, code: int = 0) -> Any:
        self.capsys.readouterr()
        assert main(["--data", str(self.data), "--json", *args]) == code
        out = self.capsys.readouterr()
        return json.loads(out.out) if code == 0 and out.out.strip() else out.err


@pytest.fixture
def control(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Control:
    ctl = Control(tmp_path / "data", capsys)
    ctl("init")
    return ctl


def test_init_writes_private_keys_0600_and_is_idempotent(control: Control) -> None:
    data = control.data
    assert data.stat().st_mode & 0o777 == 0o700
    for name in ("bootstrap.key", "operations.key"):
        assert (data / name).stat().st_mode & 0o777 == 0o600
    assert (data / "registry.db").exists()
    signer = Signer((data / "bootstrap.key").read_bytes())
    key = _crypto.load_private_key((data / "bootstrap.key").read_bytes())
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    assert signer.algorithm == 1
    before = (data / "bootstrap.key").read_bytes(), (data / "operations.key").read_bytes()
    control("init")
    assert before == ((data / "bootstrap.key").read_bytes(), (data / "operations.key").read_bytes())


def test_applications(control: Control, tmp_path: Path) -> None:
    body = tmp_path / "config.json"
    body.write_text('{"period_s": 10}')
    app = control(
        "app", "create", "--name", "meters", "--body-file", str(body),
        "--topic", "7:alarms", "--balancing", "least-loaded",
    )  # fmt: skip
    assert app["config"] == '{"period_s": 10}' and app["config_version"] == 1
    assert app["topics"] == [{"id": 7, "name": "alarms"}]
    assert app["balancing"] == "least-loaded" and app["cached_signature"] is False
    assert [a["token"] for a in control("app", "list")] == [app["token"]]

    updated = control("app", "update", app["token"], "--body", "{}", "--cached-signature", "on")
    assert updated["config_version"] == 2 and updated["cached_signature"] is True
    shown = control("app", "show", app["token"])
    assert shown == {**updated, "sdk_tokens": 0}
    assert "no such application" in str(control("app", "show", "nope", code=1))
    audit = control("audit", "list")
    assert [e["action"] for e in audit] == ["app.update", "app.create"]


def test_sdk_tokens_are_stored_hashed_and_exported(control: Control, tmp_path: Path) -> None:
    app = control("app", "create", "--name", "cams", "--cached-signature")
    token = control("sdk", "create", app["token"])["sdk_token"]
    assert token not in (control.data / "registry.db").read_bytes().decode("latin-1")
    assert control("app", "show", app["token"])["sdk_tokens"] == 1

    out = tmp_path / "out" / "cams.json"
    out.parent.mkdir()
    control(
        "sdk", "export", "--app", app["token"], "--sdk-token", token, "--out", str(out),
        "--bootstrap", "127.0.0.1:1234", "--bootstrap", "localhost:2345",
    )  # fmt: skip
    sdk = SdkConfig.from_json(out.read_text())
    assert sdk.application_token == app["token"] and sdk.sdk_token == token
    assert [(b.host, b.port) for b in sdk.bootstrap_servers] == [
        ("127.0.0.1", 1234),
        ("localhost", 2345),
    ]
    assert sdk.accept_unbound_resolution is True  # from the application's setting
    pem = (control.data / "bootstrap.pub").read_text()
    assert all(b.public_key_pem == pem for b in sdk.bootstrap_servers)
    header = (tmp_path / "out" / "cams.h").read_text()
    assert f'#define KAA_SDK_TOKEN "{token}"' in header
    assert "#define KAA_ACCEPT_UNBOUND_RESOLUTION 1" in header

    other = control("app", "create", "--name", "other")
    refused = control(
        "sdk", "export", "--app", other["token"], "--sdk-token", token, "--out", str(out), code=1
    )
    assert "does not belong" in str(refused)
    assert "no such application" in str(control("sdk", "create", "nope", code=1))


def test_sdk_export_reads_the_token_from_a_file_or_stdin(
    control: Control, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The token off the command line (where ps shows it): from a file, or standard input."""
    app = control("app", "create", "--name", "cams")
    token = control("sdk", "create", app["token"])["sdk_token"]
    secret = tmp_path / "token"
    secret.write_text(token + "\n")
    out = tmp_path / "from-file.json"
    control("sdk", "export", "--app", app["token"], "--sdk-token-file", str(secret), "--out",
            str(out), "--no-header")
    assert SdkConfig.from_json(out.read_text()).sdk_token == token
    monkeypatch.setattr("sys.stdin", io.StringIO(token + "\n"))
    out = tmp_path / "from-stdin.json"
    control("sdk", "export", "--app", app["token"], "--sdk-token-file", "-", "--out", str(out),
            "--no-header")
    assert SdkConfig.from_json(out.read_text()).sdk_token == token
    empty = tmp_path / "empty"
    empty.write_text("")
    with pytest.raises(SystemExit) as refused:
        control("sdk", "export", "--app", app["token"], "--sdk-token-file", str(empty))
    assert refused.value.code == 2


def test_endpoints_and_nodes_when_empty(control: Control) -> None:
    assert control("endpoint", "list") == []
    assert control("nodes", "list") == []
    missing = "00" * 20
    assert "no such endpoint" in str(control("endpoint", "show", missing, code=1))
    assert "no such endpoint" in str(control("endpoint", "reinstate", missing, code=1))


def test_an_id_not_registered_yet_can_be_revoked_and_forgotten(control: Control) -> None:
    stolen = "5a" * 20
    assert main(["--data", str(control.data), "--json", "endpoint", "revoke", stolen,
                 "--reason", "key stolen"]) == 0  # fmt: skip
    out = control.capsys.readouterr()
    assert out.err.startswith(f"note: {stolen} has never registered: recorded as revoked")
    doc = json.loads(out.out)
    assert (doc["endpoint_id"], doc["status"], doc["registration_status"]) == (
        stolen, "revoked", None
    )
    assert control("endpoint", "show", stolen)["status"] == "revoked"
    assert control("endpoint", "revoke", stolen)["revoked_ms"] == doc["revoked_ms"]  # idempotent
    # Reinstating it forgets it: it would register as new.
    assert control("endpoint", "reinstate", stolen)["status"] == "active"
    assert "no such endpoint" in str(control("endpoint", "show", stolen, code=1))
    actions = [(e["action"], e["subject"]) for e in control("audit", "list")]
    assert actions[:3] == [
        ("endpoint.reinstate", stolen), ("endpoint.revoke", stolen),
        ("endpoint.pre-revoke", stolen),
    ]  # fmt: skip


def test_bad_arguments_are_usage_errors(control: Control) -> None:
    for args in (
        ["endpoint", "show", "xyz"],
        ["app", "create", "--name", "x", "--topic", "nonumber"],
        ["app", "update", "tok"],
    ):
        with pytest.raises(SystemExit) as done:
            main(["--data", str(control.data), *args])
        assert done.value.code == 2


def test_uninitialized_directory_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--data", str(tmp_path / "none"), "app", "list"]) == 1
    assert "init" in capsys.readouterr().err


def test_tokens_never_start_with_a_dash() -> None:
    tokens = [new_token() for _ in range(2000)]
    assert not any(t.startswith("-") for t in tokens)
    assert len(set(tokens)) == len(tokens) and {len(t) for t in tokens} == {22}


def _as_reader(data: Path, *args: str) -> tuple[int, str, str]:
    """``control --data DATA ARGS`` in a forked child that cannot write ``data``: as
    ``nobody`` when the tests run as root (root writes through any mode), else as this
    user; (exit code, stdout, stderr)."""
    import os
    import pwd
    import sqlite3  # noqa: F401  (imported before the child drops root)
    import sys
    import tempfile

    import servers.store.sqlite  # noqa: F401

    out = Path(tempfile.mkstemp()[1])
    err = Path(tempfile.mkstemp()[1])
    uid = pwd.getpwnam("nobody").pw_uid if os.geteuid() == 0 else None
    if uid is not None:
        for path in (out, err, *data.parent.rglob("*"), data.parent):
            os.chown(path, uid, -1)
    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            sys.stdout = open(out, "w")  # noqa: SIM115 (the child exits below)
            sys.stderr = open(err, "w")  # noqa: SIM115
            if uid is not None:
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
            code = main(["--data", str(data), *args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    result = os.waitstatus_to_exitcode(status), out.read_text(), err.read_text()
    out.unlink()
    err.unlink()
    return result


def test_read_only_commands_work_on_a_read_only_copy(control: Control, tmp_path: Path) -> None:
    import shutil
    import tempfile

    app = control("app", "create", "--name", "meters")
    control("endpoint", "revoke", "ab" * 20)
    # Under a directory of its own that nobody may enter (pytest's are root's alone).
    base = Path(tempfile.mkdtemp(prefix="kaa-ro-copy-"))
    base.chmod(0o755)
    try:
        _read_only_copies(control, base, app["token"])
    finally:
        shutil.rmtree(base)


def _read_only_copies(control: Control, base: Path, token: str) -> None:
    import os
    import shutil
    import stat

    for immutable in (False, True):  # a writable directory (mode=ro), and not (immutable)
        copy = base / f"copy-{immutable}" / "data"
        shutil.copytree(control.data, copy)
        for path in copy.iterdir():
            path.chmod(stat.S_IRUSR)
        copy.chmod(0o500 if immutable else 0o700)
        code, out, err = _as_reader(copy, "app", "list")
        assert (code, err) == (0, ""), err
        assert out.split() == [token, "v1", "static", "meters"]
        for command in (["--json", "app", "show", token], ["endpoint", "list"],
                        ["nodes", "list"], ["audit", "list"], ["bootstrap", "show"]):  # fmt: skip
            code, out, err = _as_reader(copy, *command)
            assert (code, err) == (0, ""), (command, err)
        # A write is refused with one line, and the copy is left as it was.
        before = sorted(os.listdir(copy))
        code, out, err = _as_reader(copy, "app", "create", "--name", "x")
        assert code == 1 and len(err.splitlines()) == 1 and err.startswith("error: "), err
        assert sorted(os.listdir(copy)) == before
