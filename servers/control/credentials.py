"""Admin console credentials: people's passwords (Argon2id) and API keys (SHA-256).

``python -m servers.control admin add|key|list|revoke``. A password is hashed with
argon2-cffi's defaults (Argon2id, RFC 9106's low-memory profile); an API key is 256 random
bits shown once and stored as its SHA-256, which a request finds by an index (a slow hash
would cost every API call the Argon2 time, and a random key needs no stretching).
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import hmac
import secrets
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from servers.clock import wall_ms
from servers.control import actions
from servers.store.base import AuditEntry, RegistryStore
from servers.store.console import AdminCredential, CredentialKind, Role

__all__ = [
    "API_KEY_PREFIX",
    "MIN_PASSWORD",
    "api_key_hash",
    "create_password",
    "create_api_key",
    "verify_password",
    "add_commands",
]

#: API keys start with this, so a leaked one is recognisable (and greppable in logs).
API_KEY_PREFIX = "kaa_admin_"
MIN_PASSWORD = 12
_hasher = PasswordHasher()
#: Verified when the name is unknown, so that an unknown name costs as long as a known one.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class CredentialError(Exception):
    """A credential cannot be created as asked (a usage error, exit code 2)."""


def api_key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def verify_password(credential: AdminCredential | None, password: str) -> bool:
    """Whether ``password`` is ``credential``'s (live, password kind). Slow on purpose
    (Argon2): call it off the event loop. Takes as long for an unknown name."""
    usable = (
        credential is not None and credential.live and credential.kind == CredentialKind.PASSWORD
    )
    encoded = credential.secret_hash if usable and credential is not None else _DUMMY_HASH
    try:
        ok: bool = _hasher.verify(encoded, password)
    except (VerificationError, InvalidHashError):
        ok = False
    return ok and usable


def api_key_matches(credential: AdminCredential, key: str) -> bool:
    """The stored hash equals the key's (constant time: the lookup found it already)."""
    return hmac.compare_digest(credential.secret_hash, api_key_hash(key))


async def create_password(
    store: RegistryStore, name: str, role: Role, password: str, who: str
) -> AdminCredential:
    if len(password) < MIN_PASSWORD:
        raise CredentialError(f"a password has at least {MIN_PASSWORD} characters")
    credential = AdminCredential(
        name, CredentialKind.PASSWORD, role, _hasher.hash(password), wall_ms()
    )
    audit = AuditEntry(credential.created_ms, who, "admin.add", name, f"role={role}")
    await store.add_credential(credential, audit)
    return credential


async def create_api_key(
    store: RegistryStore, name: str, role: Role, who: str
) -> tuple[AdminCredential, str]:
    """A new API key credential; the key itself is returned once and never stored."""
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    credential = AdminCredential(name, CredentialKind.API_KEY, role, api_key_hash(key), wall_ms())
    audit = AuditEntry(credential.created_ms, who, "admin.key", name, f"role={role}")
    await store.add_credential(credential, audit)
    return credential, key


def credential_doc(c: AdminCredential) -> dict[str, Any]:
    """A credential for people and the API: never its hash."""
    return {
        "name": c.name,
        "kind": str(c.kind),
        "role": str(c.role),
        "created_ms": c.created_ms,
        "revoked_ms": c.revoked_ms,
    }


# -- the CLI -------------------------------------------------------------------------------


def _name(text: str) -> str:
    if not 1 <= len(text) <= 64 or not all(c.isalnum() or c in "._@-" for c in text):
        raise argparse.ArgumentTypeError("a name is 1-64 letters, digits or ._@-")
    return text


def _read_password(path: str | None) -> str:
    if path is not None:
        text = sys.stdin.readline() if path == "-" else Path(path).read_text()
        lines = text.splitlines()
        try:  # (standard input decodes bytes that are not UTF-8 to lone surrogates)
            return actions.checked_text(lines[0] if lines else "")
        except ValueError as exc:
            raise CredentialError(f"the password: {exc}") from None
    if not sys.stdin.isatty():
        raise CredentialError("no terminal to ask for the password: give --password-file")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise CredentialError("the passwords differ")
    return first


async def _add(store: RegistryStore, args: argparse.Namespace, _: Any) -> int:
    password = _read_password(args.password_file)
    credential = await create_password(store, args.name, Role(args.role), password, actions.actor())
    args.print(args, credential_doc(credential))
    return 0


async def _key(store: RegistryStore, args: argparse.Namespace, _: Any) -> int:
    credential, key = await create_api_key(store, args.name, Role(args.role), actions.actor())
    if args.json:
        args.print(args, {**credential_doc(credential), "api_key": key})
    else:
        print(key)  # KEY=$(python -m servers.control admin key NAME --role read-only)
    return 0


async def _list(store: RegistryStore, args: argparse.Namespace, _: Any) -> int:
    args.print(args, [credential_doc(c) for c in await store.list_credentials()])
    return 0


async def _revoke(store: RegistryStore, args: argparse.Namespace, _: Any) -> int:
    audit = AuditEntry(wall_ms(), actions.actor(), "admin.revoke", args.name, "")
    args.print(args, credential_doc(await store.revoke_credential(args.name, audit)))
    return 0


def add_commands(
    commands: Any,
    command: Callable[..., argparse.ArgumentParser],
    printer: Callable[[argparse.Namespace, Any], None],
) -> None:
    """``admin add|key|list|revoke`` on the Control CLI's parser."""
    admin = commands.add_parser("admin", help="admin console credentials").add_subparsers(
        dest="admin_command", required=True, metavar="ACTION"
    )
    roles = [str(r) for r in Role]
    add = command(admin, "add", _add, "a person's login for the admin console and API")
    add.add_argument("name", type=_name)
    add.add_argument("--role", choices=roles, required=True)
    add.add_argument(
        "--password-file", metavar="FILE", help="read the password from FILE, - for stdin "
        "(default: ask on the terminal)"
    )  # fmt: skip
    key = command(admin, "key", _key, "an API key for scripts (printed once)")
    key.add_argument("name", type=_name)
    key.add_argument("--role", choices=roles, required=True)
    revoke = command(admin, "revoke", _revoke, "refuse a credential from now on")
    revoke.add_argument("name", type=_name)
    for sub in (add, key, revoke):
        sub.set_defaults(print=printer)
    command(admin, "list", _list, "credentials (never their secrets)").set_defaults(print=printer)
