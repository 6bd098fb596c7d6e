"""Who can read the data directory (issue 11, finding 5), against real servers and real
files: a data directory open to group or others is tightened to 0700 at start, with one
warning, or the start is refused with one line and exit 1 when this user cannot tighten
it; the SQLite database and its -wal and -shm files are 0600, new or found looser.

Before: an existing directory kept its mode and ``registry.db`` was created 0644, so with
a pre-made 0755 directory profiles, public keys and token hashes were world-readable.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from servers.__main__ import main as servers_main
from servers.control.cli import main as control_main
from servers.standalone import main as standalone_main
from servers.store.base import AuditEntry
from servers.store.sqlite import SqliteStore
from tests.hardening.tools import probe
from tests.servers.servers_harness import control_json, resolve, start_main

pytestmark = pytest.mark.security

SIDE_FILES = ("registry.db", "registry.db-wal", "registry.db-shm")
PRIVATE_FILES = ("bootstrap.key", "operations.key", "defaults.json")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _loose_directory(path: Path) -> Path:
    path.mkdir()
    os.chmod(path, 0o755)  # whatever the umask
    return path


def _events(logs: str, name: str) -> list[dict[str, Any]]:
    found = []
    for line in logs.splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            if event["event"] == name:
                found.append(event)
    return found


def test_a_loose_data_directory_is_tightened_and_the_database_is_private(tmp_path: Path) -> None:
    """A pre-made 0755 directory: ``python -m servers`` leaves it 0700 with one warning
    naming both modes; after real registrations the database, its -wal and its -shm are
    0600, the keys and the defaults too. The next start has nothing to say."""
    data = _loose_directory(tmp_path / "data")
    main = start_main(data, "--log-json")
    try:
        for _ in range(3):
            probe(main.sdk)
        assert _mode(data) == 0o700
        for name in (*SIDE_FILES, *PRIVATE_FILES):
            assert _mode(data / name) == 0o600, name
    finally:
        assert main.process.stop() == 0, main.process.logs()
    (warning,) = _events(main.process.logs(), "data directory tightened")
    assert (warning["level"], warning["path"]) == ("warning", str(data))
    assert (warning["old_mode"], warning["new_mode"]) == ("0755", "0700")

    again = start_main(data, "--log-json", name="again")
    try:
        probe(again.sdk)
    finally:
        assert again.process.stop() == 0, again.process.logs()
    logs = again.process.logs()
    assert not _events(logs, "data directory tightened") + _events(logs, "database file tightened")


def _assert_each_tightened_once(
    logs: str, event: str, data: Path, names: tuple[str, ...]
) -> None:
    """One ``event`` warning for each file of ``names``, each from 0644 to 0600."""
    warnings = _events(logs, event)
    assert sorted(w["path"] for w in warnings) == sorted(str(data / n) for n in names)
    assert {(w["old_mode"], w["new_mode"]) for w in warnings} == {("0644", "0600")}


def test_loose_database_files_are_tightened_at_open(tmp_path: Path) -> None:
    """A database left looser (a copy, an older version): the server killed with -9 keeps
    its -wal and -shm on disk; all three made 0644, then a new start makes each 0600 with
    one warning each, and serves the devices registered before."""
    data = tmp_path / "data"
    first = start_main(data, "--log-json", name="first")
    endpoint_ids = [probe(first.sdk).endpoint_id for _ in range(3)]
    first.process.kill()
    for name in SIDE_FILES:
        os.chmod(data / name, 0o644)  # FileNotFoundError here: kill -9 left no WAL

    main = start_main(data, "--log-json")
    try:
        for name in SIDE_FILES:
            assert _mode(data / name) == 0o600, name
        # (The killed node's lease has not lapsed yet: register on the live one.)
        port = main.listeners["operations_port"]
        (live,) = [n for n in resolve(main.sdk).nodes if n.port == port]
        probe(main.sdk, node=live)
        for name in SIDE_FILES:
            assert _mode(data / name) == 0o600, name
    finally:
        assert main.process.stop() == 0, main.process.logs()
    _assert_each_tightened_once(main.process.logs(), "database file tightened", data, SIDE_FILES)
    for endpoint_id in endpoint_ids:  # nothing lost with the kill or the chmod
        assert control_json(data, "endpoint", "show", endpoint_id.hex())["status"] == "active"


def test_private_files_readable_by_others_are_made_private(tmp_path: Path) -> None:
    """Keys and the default SDK token restored as 0644 (a copy, a backup tool): the next
    start makes each 0600 with one warning each, and serves with them."""
    data = tmp_path / "data"
    first = start_main(data, name="first")
    assert first.process.stop() == 0, first.process.logs()
    for name in PRIVATE_FILES:
        os.chmod(data / name, 0o644)
    main = start_main(data, "--log-json")
    try:
        probe(main.sdk)
        for name in PRIVATE_FILES:
            assert _mode(data / name) == 0o600, name
    finally:
        assert main.process.stop() == 0, main.process.logs()
    _assert_each_tightened_once(
        main.process.logs(), "private file tightened", data, PRIVATE_FILES
    )


def test_a_new_database_is_private_whatever_the_umask(tmp_path: Path) -> None:
    """With umask 0 (SQLite alone would create 0644), the store still creates the database
    0600, and SQLite's -wal and -shm, made lazily at the first write, follow it."""
    path = tmp_path / "open" / "registry.db"

    async def write() -> None:
        async with SqliteStore(path) as store:
            await store.add_audit(AuditEntry(at_ms=1, actor="test", action="probe", subject="x"))
            for name in SIDE_FILES:
                assert _mode(path.parent / name) == 0o600, name

    previous = os.umask(0)
    try:
        asyncio.run(write())
    finally:
        os.umask(previous)
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700


def test_control_tightens_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``servers.control`` on a pre-made 0755 directory: 0700, one warning line."""
    data = _loose_directory(tmp_path / "data")
    assert control_main(["--data", str(data), "init"]) == 0
    err = capsys.readouterr().err
    assert err == f"warning: {data} was open to group or others: mode 0755, now 0700\n"
    assert _mode(data) == 0o700
    for name in ("registry.db", "bootstrap.key", "operations.key"):
        assert _mode(data / name) == 0o600, name
    assert control_main(["--data", str(data), "nodes", "list"]) == 0
    assert capsys.readouterr().err == ""


# -- a directory this user cannot tighten ------------------------------------------------------


@contextlib.contextmanager
def _foreign_directory() -> Iterator[tuple[Path, int]]:
    """A 0755 data directory owned by root, and the uid of an unprivileged user who can
    enter it but not chmod it (so EPERM is real, not a mock)."""
    if os.geteuid() != 0:
        pytest.skip("needs root, to make a directory another user cannot tighten")
    try:
        nobody = pwd.getpwnam("nobody").pw_uid
    except KeyError:
        pytest.skip("no 'nobody' user")
    base = Path(tempfile.mkdtemp(prefix="kaa-foreign-"))
    try:
        os.chmod(base, 0o755)
        yield _loose_directory(base / "data"), nobody
    finally:
        shutil.rmtree(base)


def _as_user(uid: int, entry: Callable[[], int], errors: Path) -> int:
    """``entry()`` in a forked child running as ``uid``; its stderr goes to ``errors``."""
    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (the child exits below)
            sys.stderr = open(errors, "w")  # noqa: SIM115
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            code = entry()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


ENTRY_POINTS: dict[str, Callable[[Path], int]] = {
    "servers": lambda d: servers_main(
        ["--data", str(d), "--bootstrap-port", "0", "--operations-port", "0", "--admin-port", "0"]
    ),
    "servers.operations": lambda d: standalone_main("operations", ["--data", str(d)]),
    "servers.control": lambda d: control_main(["--data", str(d), "nodes", "list"]),
}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_a_directory_that_cannot_be_tightened_is_refused(tmp_path: Path, entry: str) -> None:
    """Another user's 0755 directory: one ``error:`` line naming it and its mode, exit 1
    (the servers' "cannot start"), no traceback; the directory untouched and empty."""
    errors = tmp_path / "stderr"
    with _foreign_directory() as (data, uid):
        code = _as_user(uid, lambda: ENTRY_POINTS[entry](data), errors)
        assert _mode(data) == 0o755
        assert list(data.iterdir()) == []
    text = errors.read_text()
    assert code == 1, text
    assert text == (
        f"error: {data} is open to group or others (mode 0755) and cannot be made 0700: "
        "Operation not permitted; chmod 700 it as its owner\n"
    )
