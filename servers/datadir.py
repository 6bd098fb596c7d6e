"""The data directory: the service keys, the database, and the exported SDK files.

    DIR/bootstrap.key     the current Bootstrap signing key (RSA-2048 from init), PKCS#8
                          PEM, mode 0600
    DIR/bootstrap.pub     its public key, PEM (what the SDK export embeds)
    DIR/bootstrap-chain.json   the rotations of the Bootstrap key, once there is one
                          (servers/keyring.py; ``servers.control bootstrap rotate``)
    DIR/operations.key    X25519 Operations key, PKCS#8 PEM, mode 0600
    DIR/registry.db       the SQLite registry (+ -wal, -shm), 0600, unless ``store`` names a
                          PostgreSQL database (servers/store/postgres/)
    DIR/defaults.json     the default application and SDK token of ``python -m servers``, 0600
    DIR/sdk.json, sdk.h   the SDK configuration exported by ``python -m servers``
    DIR/listeners.json    the bound addresses of the running ``python -m servers``
    DIR/console.key       the console's device-cookie key (servers/console/devices.py), 0600,
                          made by the admin process on first use

All services on one machine share one directory (and so one database and one key pair).
The directory is the owner's alone: a directory that group or others may enter is
tightened at start (:meth:`DataDir.tighten`), or the start is refused when it cannot be
(docs/operations.md, "Data directory").
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import x25519

from kaa_files import make_private, save_private_key, save_public_key
from kaa_wire.crypto import generate_rsa_key, generate_x25519_key, load_private_key
from servers.keyring import KeyFiles, Keyring, load_keyring

__all__ = [
    "DataDir",
    "DataDirBusy",
    "DataDirError",
    "NotInitialized",
    "UnsafeDataDir",
    "PRIVATE_DIR_MODE",
]

#: The data directory's mode: its owner's alone.
PRIVATE_DIR_MODE = 0o700


class DataDirError(Exception):
    """The data directory cannot be used; a process that meets it does not start."""


class DataDirBusy(DataDirError):
    """Another ``python -m servers`` holds the data directory."""


class NotInitialized(DataDirError):
    """The data directory lacks its keys (run ``python -m servers.control init``)."""


class UnsafeDataDir(DataDirError):
    """The data directory is open to group or others and this process cannot tighten it."""


@dataclasses.dataclass(frozen=True, slots=True)
class DataDir:
    root: Path

    @property
    def bootstrap_key(self) -> Path:
        return self.root / "bootstrap.key"

    @property
    def bootstrap_public(self) -> Path:
        return self.root / "bootstrap.pub"

    @property
    def key_files(self) -> KeyFiles:
        """The Bootstrap key ring's files (servers/keyring.py)."""
        return KeyFiles(self.root)

    @property
    def operations_key(self) -> Path:
        return self.root / "operations.key"

    @property
    def database(self) -> Path:
        return self.root / "registry.db"

    @property
    def defaults(self) -> Path:
        return self.root / "defaults.json"

    @property
    def sdk_json(self) -> Path:
        return self.root / "sdk.json"

    @property
    def sdk_header(self) -> Path:
        return self.root / "sdk.h"

    @property
    def listeners(self) -> Path:
        return self.root / "listeners.json"

    @property
    def console_key(self) -> Path:
        return self.root / "console.key"

    @property
    def main_lock(self) -> Path:
        return self.root / ".servers.lock"

    def lock_for_main(self) -> int:
        """Hold this directory for one ``python -m servers`` (a descriptor kept open for
        the process's life): a second one would overwrite the first's sdk.json and
        listeners.json. Raises :class:`DataDirBusy` naming the holder's pid."""
        self.root.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
        fd = os.open(self.main_lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise DataDirBusy(
                f"another python -m servers (pid {holder}) runs on {self.root}: "
                "stop it first, or give this one its own --data"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return fd

    def tighten(self) -> int | None:
        """Take group and other access away from an existing directory (0755 becomes 0700).

        Returns the old mode when it changed anything, else None (also when the directory
        does not exist yet: it is created 0700). Raises :class:`UnsafeDataDir` when the
        mode cannot be changed (another user's directory, a read-only file system): the
        keys and the registry would be readable by others, so nothing may start on it.
        """
        try:
            return make_private(self.root, PRIVATE_DIR_MODE)
        except OSError as exc:
            mode = stat.S_IMODE(self.root.stat().st_mode)
            raise UnsafeDataDir(
                f"{self.root} is open to group or others (mode {mode:04o}) and cannot be made "
                f"{PRIVATE_DIR_MODE:04o}: {exc.strerror}; chmod 700 it as its owner"
            ) from None

    def tighten_private_files(self) -> list[tuple[Path, int]]:
        """Take group and other access away from the private files present (keys, the
        default SDK token): ``(path, old mode)`` of each one changed. Raises
        :class:`UnsafeDataDir` for one that cannot be changed."""
        changed = []
        for path in (
            self.bootstrap_key,
            self.key_files.next_key,
            self.operations_key,
            self.defaults,
            self.console_key,
        ):
            try:
                old = make_private(path, 0o600)
            except OSError as exc:
                raise UnsafeDataDir(
                    f"{path} is readable by group or others and cannot be made 0600: "
                    f"{exc.strerror}; chmod 600 it as its owner"
                ) from None
            if old is not None:
                changed.append((path, old))
        return changed

    def create_keys(self) -> list[Path]:
        """Create the directory (0700) and both service keys, in a directory that has
        neither; a directory with both is left as it is.

        A directory with one key only is refused (NotInitialized names the missing file):
        a new Bootstrap key beside an existing deployment's would be one that no device
        trusts, a new Operations key one that no signed node record names.
        """
        self.root.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
        present = [path for path in (self.bootstrap_key, self.operations_key) if path.exists()]
        if len(present) == 2:
            return []
        if present:
            (missing,) = {self.bootstrap_key, self.operations_key} - set(present)
            raise NotInitialized(
                f"{missing} is missing beside {present[0].name}: copy it from the machine "
                "that has it (no key is made in a directory that already holds one)"
            )
        key = generate_rsa_key(2048)
        save_private_key(self.bootstrap_key, key)
        save_public_key(self.bootstrap_public, key)
        save_private_key(self.operations_key, generate_x25519_key())
        return [self.bootstrap_key, self.operations_key]

    def _require(self, key: Path) -> None:
        """Each service needs its own key only."""
        if not key.is_file():
            raise NotInitialized(
                f"{key} is missing: run python -m servers.control init in a new data "
                "directory, or copy this service's key into this one"
            )

    def keyring(self) -> Keyring:
        """The Bootstrap key ring: the current key, its generation, the rotations
        (KeyringError when the files do not fit together)."""
        self._require(self.bootstrap_key)
        return load_keyring(self.key_files)

    def operations_private_key(self) -> x25519.X25519PrivateKey:
        self._require(self.operations_key)
        key = load_private_key(self.operations_key.read_bytes())
        if not isinstance(key, x25519.X25519PrivateKey):
            raise NotInitialized(f"{self.operations_key} is not an X25519 key")
        return key
