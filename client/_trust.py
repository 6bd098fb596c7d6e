"""What a device learned of Bootstrap key rotations, and the file that keeps it.

The SDK configuration names, per Bootstrap, the key (and its generation) that signed at
build time: the *anchor*. When a resolution answer carries rotations and verifies
(kaa_wire._rotation.follow_chain), the device trusts the newer key instead, for every
Bootstrap with the same anchor, and never the anchor again: the trust is kept per anchor,
named by the SHA-256 of its DER, in ``bootstrap-trust.json`` in the state directory::

    {"format": "kaa-client-trust/1",
     "keys": [{"anchor_sha256": "<64 hex>", "generation": 3, "public_key_der": "<hex>"}],
     "sha256": "<SHA-256 of the canonical JSON of the rest>"}

Written with kaa_files.atomic_write, mode 0600, like the keys. A file that does not
read back intact is never silently dropped: the device would fall back to its build-time
key, which a rotation may have retired (client._state.CorruptTrustError).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from kaa_wire._errors import KaaWireError
from kaa_wire._rotation import TrustedKey, bootstrap_public_key, key_fingerprint

__all__ = ["TRUST_FORMAT", "BootstrapTrust", "decode_trust", "encode_trust"]

TRUST_FORMAT = "kaa-client-trust/1"


@dataclasses.dataclass(frozen=True, slots=True)
class BootstrapTrust:
    """Anchor fingerprint -> the newer key the device trusts in the anchor's place."""

    learned: Mapping[str, TrustedKey] = dataclasses.field(default_factory=dict)

    def current(self, anchor: TrustedKey) -> TrustedKey:
        """The key to trust for a Bootstrap whose SDK configuration names ``anchor``."""
        later = self.learned.get(key_fingerprint(anchor.der))
        return later if later is not None and later.generation > anchor.generation else anchor

    def learn(self, anchor: TrustedKey, key: TrustedKey) -> BootstrapTrust:
        """With ``key`` trusted in place of ``anchor`` (itself when ``key`` is no newer)."""
        if key.generation <= self.current(anchor).generation:
            return self
        return BootstrapTrust({**self.learned, key_fingerprint(anchor.der): key})

    def to_json(self) -> dict[str, Any]:
        return {
            "format": TRUST_FORMAT,
            "keys": [
                {
                    "anchor_sha256": anchor,
                    "generation": key.generation,
                    "public_key_der": key.der.hex(),
                }
                for anchor, key in sorted(self.learned.items())
            ],
        }


def _checksum(doc: dict[str, Any]) -> str:
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(canonical).hexdigest()


def encode_trust(trust: BootstrapTrust) -> bytes:
    doc = trust.to_json()
    doc["sha256"] = _checksum(doc)
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def decode_trust(data: bytes) -> BootstrapTrust:
    """Parse and check a trust file; ValueError (with the reason) when it is not intact."""
    try:
        doc = json.loads(data)
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
        if doc.pop("sha256", None) != _checksum(doc):
            raise ValueError("checksum does not match")
        if doc.get("format") != TRUST_FORMAT:
            raise ValueError(f"not a {TRUST_FORMAT} document")
        learned = {}
        for entry in doc["keys"]:
            key = bootstrap_public_key(bytes.fromhex(entry["public_key_der"]))
            learned[str(entry["anchor_sha256"])] = TrustedKey(int(entry["generation"]), key)
        return BootstrapTrust(learned)
    except (KeyError, TypeError, AttributeError, UnicodeDecodeError, KaaWireError) as exc:
        raise ValueError(f"missing or invalid field: {exc!r}") from None
