"""The device's persistent identity and state, in one directory.

Layout of the state directory (created with mode 0700)::

    key.private   the private key, PKCS#8 PEM, mode 0600: RSA-2048 unless the first boot
                  chose another type (KEY_TYPES: Ed25519, ECDSA P-256)
    key.public    its SubjectPublicKeyInfo PEM (derivable from key.private), mode 0644
    state.json    what the device learned (format below), mode 0600
    bootstrap-trust.json   the Bootstrap keys learned from rotations (client/_trust.py),
                  mode 0600; absent until the first rotation the device follows
    .lock         held with flock(2) while a Device has the directory open

Every file is written with :func:`kaa_files.atomic_write` (temp file in the same
directory, fsync, rename, fsync of the directory), so a crash leaves the old file or the new
one, plus at worst a stale ``.NAME.*`` temp file, which the next open removes.

Recovery rules, in the order :meth:`StateDir.open` applies them:

* no key.private and no other file: first boot; generate the key pair, then the state;
* no key.private but a state.json or key.public: :class:`MissingKeyError`. An identity
  existed and a new key would be a different endpoint; it is never silently replaced;
* key.private unreadable: :class:`CorruptKeyError`, for the same reason;
* key.public missing or not matching key.private: rewritten from key.private;
* state.json missing: rebuilt fresh (not registered);
* state.json unreadable, with a bad checksum, or naming another endpoint id: moved aside to
  ``state.json.corrupt`` and rebuilt fresh. The device then registers in full with its key,
  which the server answers EXISTING, so nothing is lost but one round of bytes;
* bootstrap-trust.json unreadable or with a bad checksum: :class:`CorruptTrustError`, left
  as it is. Rebuilding it would make the device trust its build-time Bootstrap key again,
  which a rotation it followed has retired.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

import kaa_files
from client._trust import BootstrapTrust, decode_trust, encode_trust
from kaa_wire import crypto
from kaa_wire._errors import KaaWireError
from kaa_wire._messages import OperationsNode, RegistrationResult

__all__ = [
    "STATE_FORMAT",
    "ApplicationState",
    "CorruptKeyError",
    "CorruptTrustError",
    "DeviceState",
    "MissingKeyError",
    "ServerInfo",
    "StateDir",
    "StateDirBusy",
    "StateError",
    "KeyTypeError",
    "KEY_TYPES",
    "DEFAULT_KEY_TYPE",
    "key_type_of",
    "profile_hash",
]

STATE_FORMAT = "kaa-client-state/1"
PRIVATE_KEY_FILE = "key.private"
PUBLIC_KEY_FILE = "key.public"
STATE_FILE = "state.json"
PROFILE_FILE = "profile"
TRUST_FILE = "bootstrap-trust.json"
LOCK_FILE = ".lock"

#: The endpoint key types a first boot can generate (``--key-type``), by name. RSA-2048 is
#: the default; P-256 is the key a secure element or TPM holds and signs with in hardware.
KEY_TYPES: dict[str, Callable[[], crypto.PrivateKey]] = {
    "rsa2048": lambda: crypto.generate_rsa_key(2048),
    "ed25519": crypto.generate_ed25519_key,
    "p256": crypto.generate_p256_key,
}
DEFAULT_KEY_TYPE = "rsa2048"


def key_type_of(key: crypto.PrivateKey) -> str:
    """The KEY_TYPES name of ``key`` ("rsa3072" and the like for other RSA sizes)."""
    if isinstance(key, rsa.RSAPrivateKey):
        return f"rsa{key.key_size}"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return "p256"  # crypto.load_private_key loads P-256 keys only
    return "ed25519"


class StateError(Exception):
    """The state directory cannot be used as it is; the message says what to do."""


class MissingKeyError(StateError):
    """State exists but the private key is gone: the identity cannot be recovered here."""


class CorruptKeyError(StateError):
    """key.private exists but is not a usable private key."""


class KeyTypeError(StateError):
    """The key type asked for is unknown, or not the type of the key the device has."""


class CorruptTrustError(StateError):
    """bootstrap-trust.json exists but does not read back intact."""


class StateDirBusy(StateError):
    """Another process holds the state directory."""


def profile_hash(profile: bytes) -> str:
    """The SHA-256 of the profile, hex: what the state file remembers of it."""
    return hashlib.sha256(profile).hexdigest()


@dataclasses.dataclass(frozen=True, slots=True)
class ServerInfo:
    """The Operations server a registration went to."""

    host: str
    port: int
    access_point_id: int
    priority: int

    @classmethod
    def of(cls, node: OperationsNode) -> ServerInfo:
        return cls(node.host, node.port, node.access_point_id, node.priority)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ServerInfo:
        return cls(
            str(doc["host"]), int(doc["port"]), int(doc["access_point_id"]), int(doc["priority"])
        )


@dataclasses.dataclass(frozen=True, slots=True)
class ApplicationState:
    """What the Operations service says the application should run with."""

    config_version: int
    config: bytes
    topics: tuple[tuple[int, str], ...] = ()

    @classmethod
    def of(cls, result: RegistrationResult) -> ApplicationState:
        return cls(
            result.config_version,
            result.config,
            tuple((t.topic_id, t.name) for t in result.topics),
        )

    def to_json(self) -> dict[str, Any]:
        """JSON-ready: ``config`` as UTF-8 text when it is, else base64 (see config_encoding)."""
        try:
            config, encoding = self.config.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            config, encoding = base64.b64encode(self.config).decode("ascii"), "base64"
        return {
            "config_version": self.config_version,
            "config": config,
            "config_encoding": encoding,
            "topics": [{"id": topic_id, "name": name} for topic_id, name in self.topics],
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ApplicationState:
        encoding = doc["config_encoding"]
        if encoding == "utf-8":
            config = str(doc["config"]).encode("utf-8")
        elif encoding == "base64":
            config = base64.b64decode(str(doc["config"]), validate=True)
        else:
            raise ValueError(f"unknown config_encoding {encoding!r}")
        topics = tuple((int(t["id"]), str(t["name"])) for t in doc["topics"])
        return cls(int(doc["config_version"]), config, topics)


@dataclasses.dataclass(frozen=True, slots=True)
class DeviceState:
    """Everything the device remembers between boots, besides its keys.

    ``status`` is the last outcome: ``"unregistered"``, a registration status in lower case
    (``"new"``, ``"existing"``, ``"profile_updated"``), or ``"revoked"``.
    ``retry_base_ms`` and ``reconnect_after_s`` are the hints of the last sealed result.
    ``last_timestamp_ms`` is the request timestamp (server time) of the last accepted
    registration: the next one is always later, since the server refuses a timestamp not
    newer than the last it accepted (ReplayedRequest).
    """

    endpoint_id: str
    registered: bool = False
    status: str = "unregistered"
    operations_server: ServerInfo | None = None
    profile_sha256: str | None = None
    application_state: ApplicationState | None = None
    reconnect_after_s: int = 0
    retry_base_ms: int = 0
    last_timestamp_ms: int = 0

    @property
    def revoked(self) -> bool:
        return self.status == "revoked"

    def to_json(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "endpoint_id": self.endpoint_id,
            "registered": self.registered,
            "status": self.status,
            "operations_server": self.operations_server and self.operations_server.to_json(),
            "profile_sha256": self.profile_sha256,
            "application_state": self.application_state and self.application_state.to_json(),
            "reconnect_after_s": self.reconnect_after_s,
            "retry_base_ms": self.retry_base_ms,
            "last_timestamp_ms": self.last_timestamp_ms,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> DeviceState:
        if doc.get("format") != STATE_FORMAT:
            raise ValueError(f"not a {STATE_FORMAT} document")
        server = doc["operations_server"]
        app = doc["application_state"]
        profile = doc["profile_sha256"]
        return cls(
            endpoint_id=str(doc["endpoint_id"]),
            registered=bool(doc["registered"]),
            status=str(doc["status"]),
            operations_server=None if server is None else ServerInfo.from_json(server),
            profile_sha256=None if profile is None else str(profile),
            application_state=None if app is None else ApplicationState.from_json(app),
            reconnect_after_s=int(doc["reconnect_after_s"]),
            retry_base_ms=int(doc["retry_base_ms"]),
            last_timestamp_ms=int(doc["last_timestamp_ms"]),
        )


def _checksum(doc: dict[str, Any]) -> str:
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(canonical).hexdigest()


def encode_state(state: DeviceState) -> bytes:
    """The state file's bytes: the fields, plus a SHA-256 over their canonical JSON."""
    doc = state.to_json()
    doc["sha256"] = _checksum(doc)
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def decode_state(data: bytes) -> DeviceState:
    """Parse and check a state file; ValueError (with the reason) when it is not intact."""
    try:
        doc = json.loads(data)
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
        stored = doc.pop("sha256", None)
        if stored != _checksum(doc):
            raise ValueError("checksum does not match")
        return DeviceState.from_json(doc)
    except (KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
        raise ValueError(f"missing or invalid field: {exc!r}") from None


class StateDir:
    """An opened state directory: the key pair, the current state, and the lock.

    Use :meth:`open`; call :meth:`close` (or use it as a context manager) to release the lock.
    """

    def __init__(
        self,
        path: Path,
        private_key: crypto.PrivateKey,
        state: DeviceState,
        lock_fd: int,
        *,
        first_boot: bool,
        recovered: str | None,
        trust: BootstrapTrust | None = None,
    ) -> None:
        self.path = path
        self.private_key = private_key
        self.state = state
        #: The Bootstrap keys learned from rotations (empty until the first one).
        self.trust = trust or BootstrapTrust()
        self._lock_fd: int | None = lock_fd
        #: True when this open generated the key pair.
        self.first_boot = first_boot
        #: Why the state file was rebuilt on this open (None when it was intact or new).
        self.recovered = recovered
        self._last_profile: bytes | None = None  # read on first use

    @property
    def endpoint_id(self) -> str:
        return self.state.endpoint_id

    @classmethod
    def open(cls, path: str | os.PathLike[str], key_type: str | None = None) -> StateDir:
        """Open (creating on first boot) the state directory at ``path``; see module doc.

        ``key_type`` (a KEY_TYPES name) is the key a first boot generates (default
        RSA-2048). A device keeps its key for life: naming a type that differs from the key
        already there is a :class:`KeyTypeError`, never a new key.
        """
        if key_type is not None and key_type not in KEY_TYPES:
            raise KeyTypeError(f"unknown key type {key_type!r}: one of {', '.join(KEY_TYPES)}")
        root = Path(path)
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        loose = _tighten(root)
        lock_fd = _lock(root / LOCK_FILE)
        try:
            _remove_stale_temp_files(root)
            private_key, first_boot = _load_or_create_keys(root, key_type or DEFAULT_KEY_TYPE)
            if key_type is not None and key_type_of(private_key) != key_type:
                raise KeyTypeError(
                    f"{root / PRIVATE_KEY_FILE} is a {key_type_of(private_key)} key, not "
                    f"{key_type}: the key type is chosen at the first boot and kept (a new key "
                    "is a new endpoint; delete the state directory to become one)"
                )
            key_id = crypto.endpoint_id(crypto.public_key_der(private_key)).hex()
            state, recovered = _load_state(root / STATE_FILE, key_id)
            trust = _load_trust(root / TRUST_FILE)
            opened = cls(
                root,
                private_key,
                state,
                lock_fd,
                first_boot=first_boot,
                recovered=recovered,
                trust=trust,
            )
            if recovered is not None or not (root / STATE_FILE).exists():
                opened.save(state)
            if loose is not None:
                note = f"state directory was mode {loose:04o}, now 0700"
                opened.recovered = note if recovered is None else f"{recovered}; {note}"
            return opened
        except BaseException:
            os.close(lock_fd)
            raise

    def save(self, state: DeviceState) -> None:
        """Make ``state`` the current state, durably (atomic replace of state.json)."""
        if state.endpoint_id != self.state.endpoint_id:
            raise StateError("a state directory holds one endpoint")
        if self._lock_fd is None:
            raise StateError("the state directory is closed")
        kaa_files.atomic_write(self.path / STATE_FILE, encode_state(state), 0o600)
        self.state = state

    def last_profile(self) -> bytes:
        """The profile the server last accepted from this device (empty if none yet: a
        missing file means the empty profile). Read once; this process holds the lock."""
        if self._last_profile is None:
            try:
                self._last_profile = (self.path / PROFILE_FILE).read_bytes()
            except FileNotFoundError:
                self._last_profile = b""
        return self._last_profile

    def save_profile(self, profile: bytes) -> None:
        """Remember ``profile`` as the last one the server accepted (atomic, 0600)."""
        if self._lock_fd is None:
            raise StateError("the state directory is closed")
        kaa_files.atomic_write(self.path / PROFILE_FILE, profile, 0o600)
        self._last_profile = profile

    def save_trust(self, trust: BootstrapTrust) -> None:
        """Make ``trust`` the Bootstrap keys the device trusts, durably (atomic replace)."""
        if self._lock_fd is None:
            raise StateError("the state directory is closed")
        kaa_files.atomic_write(self.path / TRUST_FILE, encode_trust(trust), 0o600)
        self.trust = trust

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> StateDir:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def read_state(path: str | os.PathLike[str]) -> tuple[DeviceState | None, str | None]:
    """The state file of a directory, without the lock and without repairing it.

    Returns ``(state, None)``, or ``(None, reason)`` when it is missing or not intact.
    """
    try:
        data = (Path(path) / STATE_FILE).read_bytes()
    except FileNotFoundError:
        return None, "no state file"
    try:
        return decode_state(data), None
    except ValueError as exc:
        return None, f"state file is corrupt: {exc}"


def read_trust(path: str | os.PathLike[str]) -> tuple[BootstrapTrust | None, str | None]:
    """The trust file of a directory, without the lock: ``(trust, None)`` (empty when there
    is none), or ``(None, reason)`` when it is not intact."""
    try:
        return _load_trust(Path(path) / TRUST_FILE), None
    except CorruptTrustError as exc:
        return None, str(exc)


def _load_trust(path: Path) -> BootstrapTrust:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return BootstrapTrust()
    try:
        return decode_trust(data)
    except ValueError as exc:
        raise CorruptTrustError(
            f"{path} is corrupt ({exc}); it is left as it is. Restore it from a backup, or "
            "delete it to trust the SDK configuration's Bootstrap keys again (only safe "
            "when none of them was retired)."
        ) from None


def _lock(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StateDirBusy(f"{path.parent} is in use by another process") from None
    return fd


def _tighten(root: Path) -> int | None:
    """Take group and other access away from the state directory (the keys' home) and its
    private files, as the servers do with their data directory; the directory's old mode
    when it changed anything."""
    for name in (PRIVATE_KEY_FILE, STATE_FILE, TRUST_FILE, PROFILE_FILE):
        kaa_files.make_private(root / name, 0o600)
    return kaa_files.make_private(root, 0o700)


def _remove_stale_temp_files(root: Path) -> None:
    # atomic_write names its temp files ".NAME.<random>"; under the lock, any left over are
    # from a writer that died before its rename, and the file it meant to replace is intact.
    for name in (PRIVATE_KEY_FILE, PUBLIC_KEY_FILE, STATE_FILE, TRUST_FILE, PROFILE_FILE):
        for stale in root.glob(f".{name}.*"):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()


def _load_or_create_keys(root: Path, key_type: str) -> tuple[crypto.PrivateKey, bool]:
    private_path = root / PRIVATE_KEY_FILE
    public_path = root / PUBLIC_KEY_FILE
    try:
        data = private_path.read_bytes()
    except FileNotFoundError:
        leftovers = [p.name for p in (root / STATE_FILE, public_path) if p.exists()]
        if leftovers:
            raise MissingKeyError(
                f"{private_path} is missing but {', '.join(leftovers)} exists: the device "
                "identity cannot be recovered here. Restore key.private from a backup, or "
                "delete the whole state directory to start as a new endpoint."
            ) from None
        key = KEY_TYPES[key_type]()
        # Private first: a crash before the public key is written is repaired below on the
        # next boot, since the public key is derived from the private one.
        kaa_files.save_private_key(private_path, key)
        kaa_files.save_public_key(public_path, key)
        return key, True
    try:
        loaded = crypto.load_private_key(data)
    except KaaWireError as exc:
        raise CorruptKeyError(
            f"{private_path} is not a usable private key ({exc}); it is left as it is"
        ) from None
    if not isinstance(
        loaded, (rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey, ec.EllipticCurvePrivateKey)
    ):
        raise CorruptKeyError(f"{private_path} holds no signing key; it is left as it is")
    expected = crypto.public_key_pem(loaded)
    try:
        if public_path.read_bytes() != expected:
            kaa_files.save_public_key(public_path, loaded)
    except FileNotFoundError:
        kaa_files.save_public_key(public_path, loaded)
    return loaded, False


def _load_state(path: Path, key_id: str) -> tuple[DeviceState, str | None]:
    fresh = DeviceState(endpoint_id=key_id)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return fresh, None
    try:
        state = decode_state(data)
        if state.endpoint_id != key_id:
            raise ValueError(f"names endpoint {state.endpoint_id}, but the key is {key_id}")
    except ValueError as exc:
        os.replace(path, path.with_name(STATE_FILE + ".corrupt"))
        return fresh, f"state file was corrupt ({exc}); rebuilt, kept as {STATE_FILE}.corrupt"
    return state, None
