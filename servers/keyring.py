"""The Bootstrap key ring of a data directory: the current signing key, its generation, and
the rotation certificates that lead to it from the first key (docs/protocol.md 4.5).

    DIR/bootstrap.key          the current private key, PKCS#8 PEM, 0600
    DIR/bootstrap.pub          its public key, PEM, 0644
    DIR/bootstrap-chain.json   the rotations so far, 0644; absent until the first one, and
                               then the current key is generation 1
    DIR/bootstrap.key.next     the next key, 0600, only while a rotation is under way

**Rotation** (:func:`rotate`), under an exclusive lock, each write atomic
(kaa_files.atomic_write: temp file, fsync, rename, fsync of the directory):

1. the new key goes to ``bootstrap.key.next``;
2. the certificate, signed by the current key, is appended to the chain: the commit
   point, after which the new key is the current one;
3. ``bootstrap.key.next`` is renamed over ``bootstrap.key``: the retired private key is gone
   (docs/protocol-decisions.md says why it is not archived);
4. ``bootstrap.pub`` is rewritten.

A crash leaves a state :func:`load_keyring` still reads right: before step 2 the old key
and chain (a stray ``.next`` is ignored, and removed by the next rotation); after it, the
chain's last key is in ``bootstrap.key.next``, which is used until the next ``rotate``
finishes the rename. Loading never writes, so a running Bootstrap and the Control tool can
both read the directory while a rotation runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from kaa_files import atomic_write, save_public_key
from kaa_wire import Signer, UnsupportedAlgorithm
from kaa_wire._codec import decode_rotation_certificate, encode_rotation_certificate
from kaa_wire._constants import FIRST_KEY_GENERATION, MAX_ROTATION_CHAIN
from kaa_wire._errors import KaaWireError, LocalProtocolError
from kaa_wire._messages import RotationCertificate
from kaa_wire._rotation import (
    TrustedKey,
    bootstrap_public_key,
    certify,
    follow_link,
    key_fingerprint,
)
from kaa_wire.crypto import (
    PrivateKey,
    load_private_key,
    private_key_pem,
    public_key_der,
    public_key_pem,
    signature_algorithm_of,
)
from servers.bootstrap.signer import ListSigner

__all__ = [
    "CHAIN_FORMAT",
    "Chain",
    "KeyFiles",
    "Keyring",
    "KeyringError",
    "load_keyring",
    "rotate",
]

CHAIN_FORMAT = "kaa-wire-bootstrap-chain/1"


class KeyringError(Exception):
    """The key files do not make a usable key ring; the message says what to do."""


@dataclasses.dataclass(frozen=True, slots=True)
class KeyFiles:
    """Where a data directory keeps the Bootstrap key ring."""

    root: Path

    @property
    def key(self) -> Path:
        return self.root / "bootstrap.key"

    @property
    def public(self) -> Path:
        return self.root / "bootstrap.pub"

    @property
    def chain(self) -> Path:
        return self.root / "bootstrap-chain.json"

    @property
    def next_key(self) -> Path:
        return self.root / "bootstrap.key.next"

    @property
    def lock(self) -> Path:
        return self.root / ".bootstrap.lock"

    def stamp(self) -> tuple[tuple[int, int, int] | None, ...]:
        """Changes whenever one of the files is replaced: what a running Bootstrap polls."""
        return tuple(_stat(path) for path in (self.key, self.chain, self.next_key))


def _stat(path: Path) -> tuple[int, int, int] | None:
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    return (info.st_ino, info.st_mtime_ns, info.st_size)


@dataclasses.dataclass(frozen=True, slots=True)
class Chain:
    """The first key and every rotation since: the Bootstrap's whole key history, public."""

    first_generation: int
    first_public_key: bytes  # DER SubjectPublicKeyInfo
    certificates: tuple[RotationCertificate, ...] = ()

    @property
    def generation(self) -> int:
        return self.first_generation + len(self.certificates)

    @property
    def public_key(self) -> bytes:
        """The current key's DER."""
        return self.certificates[-1].public_key if self.certificates else self.first_public_key

    def verified(self) -> Chain:
        """Itself, once every certificate is shown to be signed by the key before it."""
        try:
            current = TrustedKey(self.first_generation, bootstrap_public_key(self.first_public_key))
            for certificate in self.certificates:
                current = follow_link(current, certificate)
        except KaaWireError as exc:
            raise KeyringError(f"the Bootstrap key chain does not verify: {exc.message}") from None
        return self

    def extended(self, certificate: RotationCertificate) -> Chain:
        return dataclasses.replace(self, certificates=(*self.certificates, certificate))

    def to_json(self) -> str:
        document = {
            "format": CHAIN_FORMAT,
            "first_generation": self.first_generation,
            "first_public_key": self.first_public_key.hex(),
            "certificates": [encode_rotation_certificate(c).hex() for c in self.certificates],
        }
        return json.dumps(document, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> Chain:
        try:
            document: dict[str, Any] = json.loads(text)
            if document.get("format") != CHAIN_FORMAT:
                raise KeyringError(f"not a {CHAIN_FORMAT} document")
            return cls(
                int(document["first_generation"]),
                bytes.fromhex(document["first_public_key"]),
                tuple(
                    decode_rotation_certificate(bytes.fromhex(c))
                    for c in document["certificates"]
                ),
            )
        except (ValueError, KeyError, TypeError, KaaWireError) as exc:
            raise KeyringError(f"the Bootstrap key chain is unreadable: {exc}") from None


@dataclasses.dataclass(frozen=True, slots=True)
class Keyring:
    """What a Bootstrap signs with: the current key and the rotations that lead to it.

    ``certificates`` are the last (at most MAX_ROTATION_CHAIN) rotations, the most an
    answer carries.
    """

    generation: int
    signer: ListSigner
    public_key_der: bytes
    certificates: tuple[RotationCertificate, ...]
    #: True while a rotation is half done (the key is read from bootstrap.key.next).
    pending: bool = False

    @property
    def fingerprint(self) -> str:
        return key_fingerprint(self.public_key_der)

    @property
    def public_key_pem(self) -> str:
        return public_key_pem(bootstrap_public_key(self.public_key_der)).decode()

    def chain_from(self, trusted: int) -> tuple[RotationCertificate, ...]:
        """The certificates an endpoint that trusts generation ``trusted`` needs.

        UnsupportedAlgorithm (a plain refusal: that endpoint counts this Bootstrap as
        failing) when ``trusted`` is newer than this key ring, or too far behind to be
        carried in one answer.
        """
        behind = self.generation - trusted
        if behind < 0:
            raise UnsupportedAlgorithm(
                f"key generation {trusted} is newer than this Bootstrap's ({self.generation})"
            )
        if behind > len(self.certificates):
            raise UnsupportedAlgorithm(
                f"key generation {trusted} is {behind} rotations behind this Bootstrap's "
                f"({self.generation}); at most {MAX_ROTATION_CHAIN} are carried, so the "
                "endpoint needs a new SDK configuration"
            )
        return self.certificates[len(self.certificates) - behind :]


def _read_key(path: Path) -> PrivateKey:
    try:
        key = load_private_key(path.read_bytes())
    except LocalProtocolError as exc:
        raise KeyringError(f"{path} is not a usable key: {exc.message}") from None
    if not isinstance(key, (rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)):
        raise KeyringError(f"{path} is not an RSA or Ed25519 key")
    return key


def _read_chain(files: KeyFiles, key: PrivateKey) -> Chain:
    try:
        text = files.chain.read_bytes()
    except FileNotFoundError:  # never rotated: the key is the first one
        return Chain(FIRST_KEY_GENERATION, public_key_der(key))
    return Chain.from_json(text).verified()


def _current(files: KeyFiles) -> tuple[Chain, PrivateKey, bool]:
    """(chain, the chain's current private key, whether it is still in bootstrap.key.next)."""
    key = _read_key(files.key)
    chain = _read_chain(files, key)
    if public_key_der(key) == chain.public_key:
        return chain, key, False
    if files.next_key.exists():
        upcoming = _read_key(files.next_key)
        if public_key_der(upcoming) == chain.public_key:
            return chain, upcoming, True
    raise KeyringError(
        f"{files.key} is not the key of generation {chain.generation} that "
        f"{files.chain.name} names: restore the key, or the directory, from a backup"
    )


def load_keyring(files: KeyFiles) -> Keyring:
    """The key ring as it is on disk (read only); KeyringError when it is not usable."""
    chain, key, pending = _current(files)
    try:
        signer = Signer(private_key_pem(key))
    except LocalProtocolError as exc:
        raise KeyringError(f"cannot sign with {files.key}: {exc.message}") from None
    return Keyring(
        generation=chain.generation,
        signer=signer,
        public_key_der=chain.public_key,
        certificates=chain.certificates[-MAX_ROTATION_CHAIN:],
        pending=pending,
    )


@contextlib.contextmanager
def _locked(files: KeyFiles) -> Iterator[None]:
    fd = os.open(files.lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise KeyringError("another rotation is running on this data directory") from None
        yield
    finally:
        os.close(fd)


def _finish_pending(files: KeyFiles) -> None:
    """Complete a rotation a crash interrupted (steps 3 and 4), or drop a stray next key."""
    _, key, pending = _current(files)
    if pending:
        os.replace(files.next_key, files.key)
        _sync_directory(files.root)
    else:
        files.next_key.unlink(missing_ok=True)
    public = public_key_pem(key)
    with contextlib.suppress(FileNotFoundError):
        if files.public.read_bytes() == public:
            return
    save_public_key(files.public, key)


def _sync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rotate(files: KeyFiles, new_key: PrivateKey) -> Keyring:
    """Make ``new_key`` the next generation (see the module doc); the new key ring."""
    signature_algorithm_of(new_key)  # refuses an RSA key under 2048 bits
    bootstrap_public_key(public_key_der(new_key))
    with _locked(files):
        _finish_pending(files)
        chain, key, _ = _current(files)
        if chain.generation >= 0xFFFFFFFF:
            raise KeyringError("the key generation counter is exhausted")
        if public_key_der(new_key) == chain.public_key:
            raise KeyringError("the new key is the current key")
        certificate = certify(key, chain.generation + 1, new_key)
        atomic_write(files.next_key, private_key_pem(new_key), 0o600)
        atomic_write(files.chain, chain.extended(certificate).to_json().encode(), 0o644)
        _finish_pending(files)
    return load_keyring(files)
