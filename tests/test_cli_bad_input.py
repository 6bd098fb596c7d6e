"""Every CLI entry point over bad input: one line on stderr, no traceback, the documented
exit code (README.md, "CLI reference"). Real processes, real files."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", *args], input=stdin, capture_output=True, cwd=REPO, timeout=60
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bad-input") / "data"
    assert _run("servers.control", "--data", str(path), "init").returncode == 0
    return path


def _cases(data: Path, tmp: Path) -> list[tuple[str, tuple[str, ...], bytes, int]]:
    a_file = tmp / "a-file"
    a_file.write_text("x")
    return [
        ("keyid of an X25519 key", ("kaa_wire", "keyid", str(data / "operations.key")), b"", 1),
        ("keyid of a missing file", ("kaa_wire", "keyid", str(tmp / "none")), b"", 1),
        ("keyid of garbage", ("kaa_wire", "keyid", str(a_file)), b"", 1),
        ("decode --hex of non-hex", ("kaa_wire", "decode", "--hex", "-"), b"zz", 2),
        ("servers --data under a file", ("servers", "--data", str(a_file / "sub")), b"", 1),
        ("servers --data in /proc", ("servers", "--data", "/proc/kaa-wire-data"), b"", 1),
        (
            "control with a DSN port out of range",
            ("servers.control", "--data", str(data), "--store",
             "postgresql://kaa@127.0.0.1:99999/kaa", "app", "list"),
            b"",
            2,
        ),
        ("servers with a non-integer port", ("servers", "--bootstrap-port", "abc"), b"", 2),
        ("servers with a port out of range", ("servers", "--bootstrap-port", "70000"), b"", 2),
        ("servers with a frame limit past the protocol's", ("servers", "--max-frame-size",
                                                          "99999999999"), b"", 2),
        ("bootstrap on a wildcard host without an advertised host",
         ("servers.bootstrap", "--host", "0.0.0.0"), b"", 2),
        ("control with an unknown flag", ("servers.control", "app", "list", "--nope"), b"", 2),
        ("control show of an unknown app", ("servers.control", "--data", str(data), "app",
                                            "show", "NOPE"), b"", 1),
        ("operations without a key", ("servers.operations", "--data", str(tmp / "empty")), b"", 1),
        ("control backup into a missing directory", ("servers.control", "--data", str(data),
                                                     "backup", "--out", str(tmp / "no" / "b.db")),
         b"", 1),
        ("control backup onto the database itself", ("servers.control", "--data", str(data),
                                                     "backup", "--out", str(data / "registry.db")),
         b"", 1),
        ("control backup of a PostgreSQL store", ("servers.control", "--data", str(data),
                                                  "--store", "postgresql://kaa@127.0.0.1:1/kaa",
                                                  "backup", "--out", str(tmp / "b.db")), b"", 2),
        ("control backup without --out", ("servers.control", "--data", str(data), "backup"),
         b"", 2),
        ("control read-only command on a missing database",
         ("servers.control", "--data", str(tmp / "no-data"), "app", "list"), b"", 1),
        # read to its end before: /dev/zero grew the CLI to 5 GB (console attack, round 4)
        ("control app create with an endless body file", ("servers.control", "--data",
                                                          str(data), "app", "create", "--name",
                                                          "z", "--body-file", "/dev/zero"), b"", 2),
        ("control app create with a missing body file", ("servers.control", "--data", str(data),
                                                         "app", "create", "--name", "m",
                                                         "--body-file", str(tmp / "none")), b"", 1),
    ]


def test_bad_inputs_get_one_line_and_their_exit_code(data: Path, tmp_path: Path) -> None:
    failures = []
    for name, args, stdin, code in _cases(data, tmp_path):
        out = _run(*args, stdin=stdin)
        stderr = out.stderr.decode(errors="replace")
        if (
            out.returncode != code
            or b"Traceback" in out.stdout + out.stderr
            or len(stderr.strip().splitlines()) != 1
        ):
            failures.append(f"{name}: exit {out.returncode} (want {code}), stderr {stderr!r}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("api", ["blocking", "asyncio"])
def test_ctrl_c_during_register_is_one_line(data: Path, tmp_path: Path, api: str) -> None:
    """Ctrl-C while the client backs off (no Bootstrap listens): exit 130, one line."""
    sdk = tmp_path / "sdk.json"
    app = _run("servers.control", "--data", str(data), "--json", "app", "create", "--name", api)
    token = __import__("json").loads(app.stdout)["token"]
    created = _run("servers.control", "--data", str(data), "--json", "sdk", "create", token)
    sdk_token = __import__("json").loads(created.stdout)["sdk_token"]
    exported = _run("servers.control", "--data", str(data), "sdk", "export", "--app", token,
                    "--sdk-token", sdk_token, "--out", str(sdk), "--bootstrap", "127.0.0.1:1")
    assert exported.returncode == 0, exported.stderr
    client = subprocess.Popen(
        [sys.executable, "-m", "client", "register", "--sdk", str(sdk), "--state",
         str(tmp_path / "device"), "--api", api],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO,
    )
    time.sleep(2.0)  # past start-up and the first key generation, into the backoff
    client.send_signal(signal.SIGINT)
    _, stderr = client.communicate(timeout=30)
    assert client.returncode == 130, stderr
    assert stderr.decode().strip() == "client: interrupted"


def test_control_arguments_that_are_not_utf8_are_one_line_exit_2(
    data: Path, tmp_path: Path
) -> None:
    """An argument that is not UTF-8 (Python decodes it with surrogateescape) was a
    UnicodeEncodeError traceback wherever it went (the store, a file, the output): the
    console attack of 2026-12-03. Now refused before any command runs, for every one."""
    bad = b"\xff"
    d = str(data).encode()
    endpoint = b"ab" * 20
    cases = [
        [b"--data", d, b"app", b"create", b"--name", b"x", b"--body", bad],
        [b"--data", d, b"app", b"create", b"--name", b"n" + bad],
        [b"--data", d, b"app", b"show", bad],
        [b"--data", d, b"app", b"update", b"tok", b"--body", b"caf\xe9"],  # Latin-1
        [b"--data", d, b"endpoint", b"revoke", endpoint, b"--reason", bad],
        [b"--data", d, b"sdk", b"create", bad],
        [b"--data", d, b"admin", b"key", bad, b"--role", b"admin"],
        [b"--data", d, b"audit", b"list", b"--limit", bad],
        [b"--data", d + b"/" + bad, b"app", b"list"],
        [b"--data", d, b"sdk", b"export", b"--app", b"a", b"--sdk-token", b"t",
         b"--out", str(tmp_path).encode() + b"/" + bad + b".json"],
    ]  # fmt: skip
    failures = []
    for args in cases:
        out = subprocess.run(
            [sys.executable.encode(), b"-m", b"servers.control", *args],
            capture_output=True, cwd=REPO, timeout=60,
        )  # fmt: skip
        lines = out.stderr.decode(errors="replace").strip().splitlines()
        if out.returncode != 2 or b"Traceback" in out.stderr or len(lines) != 1 or (
            "not UTF-8" not in lines[0]
        ):
            failures.append(f"{args!r}: exit {out.returncode}, stderr {out.stderr!r}")
    assert not failures, "\n".join(failures)
    listed = _run("servers.control", "--data", str(data), "--json", "audit", "list")
    assert b"\\udcff" not in listed.stdout and listed.returncode == 0  # nothing written


def test_control_input_files_that_are_not_utf8_are_one_line_exit_2(
    data: Path, tmp_path: Path
) -> None:
    """The same for what the CLI reads: a TOML settings file (python -m servers too), a
    password or SDK token file, standard input (decoded with surrogateescape). Each was a
    UnicodeDecodeError or UnicodeEncodeError traceback."""
    not_utf8 = b"abcdefghijklmnop\xff\n"
    settings = tmp_path / "kaa.toml"
    settings.write_bytes(b'data = "/tmp/\xff"\n')
    secret = tmp_path / "secret"
    secret.write_bytes(not_utf8)
    app = _run("servers.control", "--data", str(data), "app", "create", "--name", "utf8")
    token = app.stdout.decode().strip()
    d = str(data)
    cases = [
        (("servers.control", "--config", str(settings), "app", "list"), b""),
        (("servers", "--config", str(settings)), b""),
        (("servers.control", "--data", d, "admin", "add", "u1", "--role", "admin",
          "--password-file", str(secret)), b""),
        (("servers.control", "--data", d, "admin", "add", "u2", "--role", "admin",
          "--password-file", "-"), not_utf8),
        (("servers.control", "--data", d, "sdk", "export", "--app", token,
          "--sdk-token-file", str(secret), "--out", str(tmp_path / "sdk.json")), b""),
        (("servers.control", "--data", d, "sdk", "export", "--app", token,
          "--sdk-token-file", "-", "--out", str(tmp_path / "sdk.json")), not_utf8),
    ]  # fmt: skip
    failures = []
    for args, stdin in cases:
        out = _run(*args, stdin=stdin)
        lines = out.stderr.decode(errors="replace").strip().splitlines()
        if out.returncode != 2 or b"Traceback" in out.stderr or len(lines) != 1 or (
            "not UTF-8" not in lines[0]
        ):
            failures.append(f"{args!r}: exit {out.returncode}, stderr {out.stderr!r}")
    assert not failures, "\n".join(failures)
