"""What the Bootstrap needs from a signer: kaa_wire.Signer (pure or extension) fits."""

from __future__ import annotations

from typing import Protocol

__all__ = ["ListSigner"]


class ListSigner(Protocol):
    #: The protocol's signature algorithm id of the key.
    algorithm: int

    def sign(self, data: bytes) -> bytes:
        """Thread-safe: called from the signing pool."""
        ...
