"""The SDK configuration: what the Control service bakes into a device at build time.

``servers.control sdk export`` writes it as JSON (and as a C header); the client loads it.
It holds no secrets an attacker could use to impersonate a server: only public keys.
docs/protocol.md section 12 specifies the JSON, field by field.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from kaa_wire._constants import (
    ABSOLUTE_MAX_FRAME_SIZE,
    DEFAULT_MAX_FRAME_SIZE,
    FIRST_KEY_GENERATION,
    HEADER_SIZE,
    MAX_HOST_SIZE,
    MAX_TOKEN_SIZE,
)
from kaa_wire._crypto import PublicKey, load_public_key, public_key_der
from kaa_wire._errors import KaaWireError, LocalProtocolError
from kaa_wire._rotation import TrustedKey, bootstrap_public_key

__all__ = ["FORMAT", "READABLE_FORMATS", "BootstrapServer", "SdkConfig"]

#: The format this module writes.
FORMAT = "kaa-wire-sdk/2"
#: The formats it reads: version 1 predates key generations, and its keys are generation 1.
READABLE_FORMATS = ("kaa-wire-sdk/1", FORMAT)


def _printable(text: str, most: int) -> bool:
    return 1 <= len(text) <= most and text.isascii() and text.isprintable()


@dataclasses.dataclass(frozen=True, slots=True)
class BootstrapServer:
    """One Bootstrap service: where it is, and the key (of generation ``key_generation``)
    that signed its answers when the configuration was exported."""

    host: str
    port: int
    public_key_pem: str
    key_generation: int = FIRST_KEY_GENERATION

    def __post_init__(self) -> None:
        if not _printable(self.host, MAX_HOST_SIZE):
            raise LocalProtocolError(f"host must be 1 to {MAX_HOST_SIZE} printable characters")
        if not 1 <= self.port <= 0xFFFF:
            raise LocalProtocolError("port must be 1 to 65535")
        if not FIRST_KEY_GENERATION <= self.key_generation <= 0xFFFFFFFF:
            raise LocalProtocolError("key_generation must be 1 to 4294967295")

    def public_key(self) -> PublicKey:
        """The build-time key: RSA of 2048 to 4096 bits, or Ed25519 (LocalProtocolError)."""
        try:
            key = load_public_key(self.public_key_pem.encode())
            return bootstrap_public_key(public_key_der(key))  # type: ignore[arg-type]
        except (KaaWireError, TypeError) as exc:
            raise LocalProtocolError(f"unusable Bootstrap key: {exc}") from None

    def trusted_key(self) -> TrustedKey:
        """The build-time key with its generation: where the endpoint's trust starts."""
        return TrustedKey(self.key_generation, self.public_key())


@dataclasses.dataclass(frozen=True, slots=True)
class SdkConfig:
    application_token: str
    sdk_token: str
    bootstrap_servers: tuple[BootstrapServer, ...]
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    #: Accept resolution answers signed in advance (cached-signature mode).
    accept_unbound_resolution: bool = False

    def __post_init__(self) -> None:
        for name in ("application_token", "sdk_token"):
            if not _printable(getattr(self, name), MAX_TOKEN_SIZE):
                raise LocalProtocolError(f"{name} must be 1 to {MAX_TOKEN_SIZE} printable ASCII")
        if not self.bootstrap_servers:
            raise LocalProtocolError("an SDK configuration needs at least one Bootstrap server")
        if not HEADER_SIZE < self.max_frame_size <= ABSOLUTE_MAX_FRAME_SIZE:
            raise LocalProtocolError(
                f"max_frame_size must be {HEADER_SIZE + 1} to {ABSOLUTE_MAX_FRAME_SIZE}"
            )

    def to_json(self) -> str:
        document = {"format": FORMAT, **dataclasses.asdict(self)}
        return json.dumps(document, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> SdkConfig:
        """Parse either readable format; LocalProtocolError names what is wrong."""
        try:
            document: dict[str, Any] = json.loads(text)
            version = document.get("format")
            if version not in READABLE_FORMATS:
                raise LocalProtocolError(f"not a {FORMAT} document")
            return cls(
                application_token=_typed(document["application_token"], str),
                sdk_token=_typed(document["sdk_token"], str),
                bootstrap_servers=tuple(
                    _server(b, generation_required=version == FORMAT)
                    for b in _typed(document["bootstrap_servers"], list)
                ),
                max_frame_size=_typed(
                    document.get("max_frame_size", DEFAULT_MAX_FRAME_SIZE), int
                ),
                accept_unbound_resolution=_typed(
                    document.get("accept_unbound_resolution", False), bool
                ),
            )
        except LocalProtocolError as exc:
            raise LocalProtocolError(f"invalid SDK configuration: {exc.message}") from None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise LocalProtocolError(f"invalid SDK configuration: {exc!r}") from None


def _typed(value: Any, kind: type) -> Any:
    # JSON true is an int to Python, and 1 is no bool: check exactly.
    if type(value) is not kind:
        raise LocalProtocolError(f"{value!r} is not a JSON {kind.__name__}")
    return value


def _server(document: dict[str, Any], *, generation_required: bool) -> BootstrapServer:
    if generation_required:
        generation = _typed(document["key_generation"], int)
    else:  # kaa-wire-sdk/1 knew only the first Bootstrap key
        generation = FIRST_KEY_GENERATION
    return BootstrapServer(
        _typed(document["host"], str),
        _typed(document["port"], int),
        _typed(document["public_key_pem"], str),
        generation,
    )
