"""Records as documents (dicts of JSON values): what the Control CLI prints with --json and
what the admin API answers, from one definition each."""

from __future__ import annotations

from typing import Any

from servers.datadir import DataDir
from servers.keyring import Keyring
from servers.store.base import Application, ApplicationChanges, Endpoint, Node, SdkToken

__all__ = [
    "app_doc",
    "body_text",
    "changed",
    "endpoint_doc",
    "keyring_doc",
    "node_doc",
    "sdk_token_doc",
]


def body_text(body: bytes) -> dict[str, str]:
    try:
        return {"config": body.decode("utf-8")}
    except UnicodeDecodeError:
        return {"config_hex": body.hex()}


def app_doc(app: Application, sdk_tokens: int | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "token": app.token,
        "name": app.name,
        "config_version": app.config_version,
        **body_text(app.config),
        "topics": [{"id": t.topic_id, "name": t.name} for t in app.topics],
        "balancing": str(app.balancing),
        "cached_signature": app.cached_signature,
        "created_ms": app.created_ms,
    }
    if sdk_tokens is not None:
        doc["sdk_tokens"] = sdk_tokens
    return doc


def endpoint_doc(endpoint: Endpoint, with_profile: bool = False) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "endpoint_id": endpoint.endpoint_id.hex(),
        "application": endpoint.application,
        "status": str(endpoint.status),
        # None: an id revoked before it ever registered (endpoint revoke of an unknown id).
        "registration_status": (
            endpoint.registration_status.name if endpoint.registered else None
        ),
        "first_seen_ms": endpoint.first_seen_ms,
        "last_seen_ms": endpoint.last_seen_ms,
        "last_request_ms": endpoint.last_request_ms,
        "revoked_ms": endpoint.revoked_ms,
        "profile_sha256": endpoint.profile_hash.hex(),
    }
    if with_profile:
        doc["public_key_der_hex"] = endpoint.public_key.hex()
        doc["profile"] = endpoint.profile.decode("utf-8", errors="replace")
    return doc


def node_doc(node: Node, now_ms: int) -> dict[str, Any]:
    return {
        "node_id": node.node_id,
        "host": node.host,
        "port": node.port,
        "priority": node.priority,
        "weight": node.weight,
        "load": node.load,
        "live": node.lease_expires_ms > now_ms,
        "lease_left_ms": node.lease_expires_ms - now_ms,
        "access_point_id": node.access_point_id,
        "kex_public_key": node.kex_public_key.hex(),
        "started_ms": node.started_ms,
        "renewed_ms": node.renewed_ms,
    }


def changed(changes: ApplicationChanges) -> str:
    fields = ("name", "config", "config_version", "topics", "balancing", "cached_signature")
    return "changed=" + ",".join(f for f in fields if getattr(changes, f) is not None)


def sdk_token_doc(token: SdkToken) -> dict[str, Any]:
    # The token itself is never stored: it is named by its SHA-256 (a prefix will do).
    return {
        "sha256": token.token_hash.hex(),
        "application": token.application,
        "created_ms": token.created_ms,
        "revoked_ms": token.revoked_ms,
    }


def keyring_doc(keyring: Keyring, datadir: DataDir) -> dict[str, Any]:
    key = keyring.signer.algorithm
    return {
        "generation": keyring.generation,
        "signature_algorithm": {1: "rsa-pkcs1v15-sha256", 2: "ed25519"}.get(key, str(key)),
        "key_sha256": keyring.fingerprint,
        "chain": str(datadir.key_files.chain) if keyring.generation > 1 else None,
        "pending_rotation": keyring.pending,
    }
