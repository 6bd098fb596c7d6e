"""Control actions on the registry, shared by the Control CLI and ``python -m servers``.

Each mutation writes its audit entry in the same transaction. Tokens come from
``secrets``; SDK tokens are stored by SHA-256 only, so the plaintext is shown once.
"""

from __future__ import annotations

import getpass
import hashlib
import secrets
from collections.abc import Callable

from kaa_wire import LocalProtocolError, RegistrationResult, RegistrationStatus, Topic
from kaa_wire._constants import AEAD_TAG_SIZE, HEADER_SIZE, RESPONSE_NONCE_SIZE
from kaa_wire._impl import encode_registration_result
from kaa_wire.sdk_config import BootstrapServer
from servers.clock import wall_ms
from servers.store.base import (
    Application,
    ApplicationChanges,
    AuditEntry,
    Balancing,
    NotFound,
    RegistryStore,
    SdkToken,
)

__all__ = [
    "actor",
    "new_token",
    "sdk_token_hash",
    "create_application",
    "create_sdk_token",
    "application_audit",
    "checked_name",
    "checked_config_version",
    "checked_topic",
    "checked_topics",
    "checked_text",
    "checked_bootstrap_server",
    "checked_state",
    "update_check",
    "checked_next_version",
]

#: An application's name: for people, at most this many characters.
MAX_NAME = 200


# -- the rules for what people type (the CLI's and the API's one copy) ------------------------


def checked_name(name: str) -> str:
    """An application's name: 1 to MAX_NAME printable characters (a control character
    would forge lines in a listing or a log); ValueError otherwise."""
    if not 0 < len(name) <= MAX_NAME or not name.isprintable():
        raise ValueError(f"a name is 1 to {MAX_NAME} printable characters")
    return name


def checked_text(text: str) -> str:
    """Text a store can keep: UTF-8 (no lone surrogate, which is what Python makes of
    bytes that are not UTF-8, as on a command line) and no NUL (PostgreSQL's text cannot
    hold U+0000, where SQLite's can: the two backends would answer differently). The
    API's rule for every string it is given, and the CLI's for every argument;
    ValueError otherwise."""
    if "\x00" in text:
        raise ValueError("text holds a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text that is not UTF-8") from None
    return text


def checked_config_version(version: int) -> int:
    """A configuration version: 1 to 2^32-1 (32 unsigned bits, as on the wire; 0 is
    refused because it is what a device's zeroed state holds before its first
    configuration, so it could not tell one from none); ValueError otherwise."""
    if not 0 < version < 2**32:
        raise ValueError("a configuration version is 1 to 2^32-1")
    return version


def checked_topic(topic_id: int, name: str) -> Topic:
    """A topic (an id of 32 unsigned bits, a printable name of 1 to 255 bytes);
    ValueError otherwise."""
    if not name or not name.isprintable():
        raise ValueError("a topic name is 1 to 255 bytes of printable text")
    try:
        return Topic(topic_id, name)
    except LocalProtocolError as exc:
        raise ValueError(str(exc)) from None


def checked_topics(topics: tuple[Topic, ...]) -> tuple[Topic, ...]:
    """An application's topics (each by checked_topic): no two with the same id, which a
    device could not tell apart; ValueError otherwise."""
    seen: set[int] = set()
    for topic in topics:
        if topic.topic_id in seen:
            raise ValueError(f"topic id {topic.topic_id} is given twice")
        seen.add(topic.topic_id)
    return topics


def checked_bootstrap_server(host: str, port: int) -> tuple[str, int]:
    """A Bootstrap address for an SDK export, by the SDK configuration's own rule (a
    printable host, a port of 1-65535); ValueError otherwise."""
    try:
        BootstrapServer(host, port, public_key_pem="")  # (the key is checked elsewhere)
    except LocalProtocolError as exc:
        raise ValueError(str(exc)) from None
    return host, port


def checked_state(config: bytes, topics: tuple[Topic, ...], max_frame_size: int) -> None:
    """An application's state (configuration and topics) must fit the sealed answer every
    registration carries, in a frame of ``max_frame_size``: else every device of the
    application would be refused (the console attack's F3). ValueError otherwise."""
    largest = RegistrationResult(
        status=RegistrationStatus.NEW, endpoint_id=bytes(20), server_time_ms=2**64 - 1,
        config_version=2**32 - 1, config=config, topics=topics,
        reconnect_after_s=2**32 - 1, retry_base_ms=2**32 - 1,
    )  # fmt: skip
    size = HEADER_SIZE + RESPONSE_NONCE_SIZE + len(encode_registration_result(largest))
    size += AEAD_TAG_SIZE
    if size > max_frame_size:
        raise ValueError(
            f"the configuration and topics make a {size}-byte registration answer, over "
            f"the {max_frame_size}-byte frame limit: devices could not register"
        )


def checked_next_version(app: Application, changes: ApplicationChanges) -> int:
    """The configuration version ``changes`` give ``app``: a new body without a version
    bumps it by one, which past 2^32-1 no registration answer could carry (every device
    of the application would be refused); ValueError then."""
    return _checked_bumped(changes.applied_to(app).config_version)


def _checked_bumped(version: int) -> int:
    if version >= 2**32:
        raise ValueError("the configuration version is at 2^32-1: give a version (1 to "
                         "2^32-1) with the new configuration")  # fmt: skip
    return version


def update_check(max_frame_size: int) -> Callable[[Application], None]:
    """The check of the application an update makes, for ``store.update_application`` to
    run inside its write: its version and its state (checked_state) as stored, after any
    change that came first. Checked only before, on the application as read then, two
    updates racing (a configuration, then topics) each fit, and together did not (the
    console attack of 2026-12-03, round 3)."""

    def check(updated: Application) -> None:
        _checked_bumped(updated.config_version)
        checked_state(updated.config, updated.topics, max_frame_size)

    return check


def application_audit(
    at_ms: int, who: str, action: str, app: Application, detail: str = ""
) -> AuditEntry:
    """An audit row about an application: its subject is the application's token, as
    for every action on one (stable across renames; application tokens are identifiers,
    not secrets: docs/security.md). SDK tokens never appear, only their SHA-256's first
    16 hex digits."""
    return AuditEntry(at_ms, who, action, app.token, detail)


def actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"control:{user}"


def new_token() -> str:
    """22 URL-safe characters from 128 random bits, never starting with "-".

    A leading "-" would read as an option on every command line that takes the token.
    """
    while True:
        token = secrets.token_urlsafe(16)
        if not token.startswith("-"):
            return token


def sdk_token_hash(token: str) -> bytes:
    # (Tokens are ASCII, so this is their ASCII; anything else someone types hashes to a
    # token that does not exist, instead of raising: the CLI answers "not found".)
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


async def create_application(
    store: RegistryStore,
    *,
    name: str,
    config: bytes,
    config_version: int = 1,
    topics: tuple[Topic, ...] = (),
    balancing: Balancing = Balancing.STATIC,
    cached_signature: bool = False,
    who: str | None = None,
) -> Application:
    """A new application; its state is the caller's to check (checked_state), as on update."""
    now = wall_ms()
    app = Application(
        token=new_token(),
        name=name,
        config=config,
        config_version=config_version,
        topics=topics,
        balancing=balancing,
        cached_signature=cached_signature,
        created_ms=now,
    )
    detail = f"name={name} balancing={balancing} cached_signature={cached_signature}"
    audit = application_audit(now, who or actor(), "app.create", app, detail)
    await store.create_application(app, audit)
    return app


async def existing_application(store: RegistryStore, token: str) -> Application:
    """The application with ``token``; NotFound when there is none."""
    app = await store.get_application(token)
    if app is None:
        raise NotFound("no such application")
    return app


async def create_sdk_token(store: RegistryStore, application: str, who: str | None = None) -> str:
    """A new SDK token for ``application`` (raises NotFound); the plaintext, shown once."""
    app = await existing_application(store, application)
    token = new_token()
    now = wall_ms()
    record = SdkToken(sdk_token_hash(token), application, now)
    audit = application_audit(now, who or actor(), "sdk.create", app, record.token_hash.hex()[:16])
    await store.add_sdk_token(record, audit)
    return token
