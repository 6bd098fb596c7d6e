"""The SDK configuration: what the Control service bakes into a device at build time.

``servers.control sdk export`` writes it as JSON (and as a C header); the client loads it.
It holds no secrets an attacker could use to impersonate a server: only public keys.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from kaa_wire._constants import DEFAULT_MAX_FRAME_SIZE
from kaa_wire._crypto import PublicKey, load_public_key, signature_algorithm_of
from kaa_wire._errors import LocalProtocolError

__all__ = ["FORMAT", "BootstrapServer", "SdkConfig"]

FORMAT = "kaa-wire-sdk/1"


@dataclasses.dataclass(frozen=True, slots=True)
class BootstrapServer:
    host: str
    port: int
    public_key_pem: str

    def public_key(self) -> PublicKey:
        """The build-time key that must have signed this Bootstrap's answers."""
        key = load_public_key(self.public_key_pem.encode())
        if not isinstance(key, (rsa.RSAPublicKey, ed25519.Ed25519PublicKey)):
            raise LocalProtocolError("a Bootstrap key must be RSA or Ed25519")
        signature_algorithm_of(key)  # raises for an RSA key under 2048 bits
        return key


@dataclasses.dataclass(frozen=True, slots=True)
class SdkConfig:
    application_token: str
    sdk_token: str
    bootstrap_servers: tuple[BootstrapServer, ...]
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    #: Accept resolution answers signed in advance (cached-signature mode).
    accept_unbound_resolution: bool = False

    def __post_init__(self) -> None:
        if not self.bootstrap_servers:
            raise LocalProtocolError("an SDK configuration needs at least one Bootstrap server")

    def to_json(self) -> str:
        document = {"format": FORMAT, **dataclasses.asdict(self)}
        return json.dumps(document, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> SdkConfig:
        try:
            document: dict[str, Any] = json.loads(text)
            if document.get("format") != FORMAT:
                raise LocalProtocolError(f"not a {FORMAT} document")
            return cls(
                application_token=str(document["application_token"]),
                sdk_token=str(document["sdk_token"]),
                bootstrap_servers=tuple(
                    BootstrapServer(str(b["host"]), int(b["port"]), str(b["public_key_pem"]))
                    for b in document["bootstrap_servers"]
                ),
                max_frame_size=int(document.get("max_frame_size", DEFAULT_MAX_FRAME_SIZE)),
                accept_unbound_resolution=bool(document.get("accept_unbound_resolution", False)),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise LocalProtocolError(f"invalid SDK configuration: {exc!r}") from None
