"""Durable files: atomic writes and key files, for the client and the servers.

Kept out of ``kaa_wire``, the sans-IO protocol core, which never touches a file.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import x25519

from kaa_wire.crypto import PrivateKey, PublicKey, private_key_pem, public_key_pem

__all__ = ["atomic_write", "make_private", "save_private_key", "save_public_key"]


def atomic_write(path: str | os.PathLike[str], data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new, never a mix.

    Temp file in the same directory, created with ``mode`` (never wider, whatever the umask
    allows), fsync, rename, then fsync the directory so the rename itself is durable.
    """
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        os.unlink(tmp)
        raise
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save_private_key(
    path: str | os.PathLike[str], key: PrivateKey | x25519.X25519PrivateKey
) -> None:
    """PKCS#8 PEM, mode 0600."""
    atomic_write(path, private_key_pem(key), 0o600)


def save_public_key(path: str | os.PathLike[str], key: PublicKey | PrivateKey) -> None:
    """SubjectPublicKeyInfo PEM, mode 0644."""
    atomic_write(path, public_key_pem(key), 0o644)


def make_private(path: str | os.PathLike[str], keep: int = 0o700) -> int | None:
    """Take group and other access away from ``path`` (its mode becomes ``mode & keep``).

    Returns the old mode when that changed anything; None when ``path`` was private
    already or does not exist. Raises OSError when the mode cannot be changed (another
    user's file, a read-only file system).
    """
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return None
    if not mode & 0o077:
        return None
    os.chmod(path, mode & keep)
    return mode
