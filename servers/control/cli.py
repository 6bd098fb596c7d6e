"""``python -m servers.control``: set up a data directory and manage the registry.

    init                                  keys (0600) and the database
    backup --out FILE                     a consistent online copy of the SQLite store
    app create|update|list|show           applications (token, configuration, topics, ...)
    sdk create APP                        a new SDK token for an application (shown once)
    sdk export --app APP --sdk-token T    the client SDK configuration, JSON and C header
    bootstrap show|rotate                 the Bootstrap key: its generation; rotate it
    endpoint list|show|revoke             registered endpoints
    nodes list                            Operations node leases
    admin add|key|list|revoke             admin console logins and API keys (docs/console.md)
    audit list                            control actions and revocations

``--json`` prints machine-readable output. ``--store DSN`` works on a PostgreSQL registry
instead of the data directory's SQLite file (keys stay in the data directory). Settings
(``--data``, ``--host``, ``--bootstrap-port``...) follow the same flags > KAA_* > TOML
order as the services.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from kaa_wire import Topic
from kaa_wire._errors import LocalProtocolError
from kaa_wire.crypto import (
    PrivateKey,
    generate_ed25519_key,
    generate_rsa_key,
    signature_algorithm_of,
)
from servers import config as cfg
from servers.clock import wall_ms
from servers.control import actions, credentials
from servers.control.documents import app_doc as _app_doc
from servers.control.documents import changed as _changed
from servers.control.documents import endpoint_doc as _endpoint_doc
from servers.control.documents import keyring_doc as _keyring_doc
from servers.control.documents import node_doc as _node_doc
from servers.control.documents import sdk_token_doc as _sdk_token_doc
from servers.control.export import build_sdk_config, write_export
from servers.datadir import PRIVATE_DIR_MODE, DataDir, DataDirError, NotInitialized
from servers.keyring import KeyringError, rotate
from servers.store.base import (
    AlreadyExists,
    ApplicationChanges,
    AuditEntry,
    Balancing,
    NotFound,
    Refused,
    RegistryStore,
    StoreError,
)
from servers.store.factory import is_postgres_dsn, store_for

__all__ = ["main"]

_SETTINGS = ("data", "store", "host", "advertise_host", "bootstrap_port", "max_frame_size")
#: What the listener settings mean here: control binds nothing, it writes SDK exports.
_SETTING_HELPS = {
    "host": "Bootstrap host written into an SDK export (unless --bootstrap is given)",
    "advertise_host": "Bootstrap host written into an SDK export, when --host is a wildcard",
    "bootstrap_port": "Bootstrap port written into an SDK export (unless --bootstrap is given)",
    "max_frame_size": "largest frame the exported SDK configuration accepts",
}


class UsageError(Exception):
    pass


# -- rendering -----------------------------------------------------------------------------


def _shown(key: str, value: Any) -> Any:
    """A value for people: times (``*_ms`` fields, epoch milliseconds) in ISO 8601 UTC; the
    JSON output keeps the numbers."""
    if isinstance(value, list | dict):
        return json.dumps(value)
    if key.endswith("_ms") and isinstance(value, int) and value >= _EPOCH_MS_FLOOR:
        moment = datetime.datetime.fromtimestamp(value / 1000, datetime.UTC)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return value


#: A ``*_ms`` value below this is a duration, not a time (2001-09-09).
_EPOCH_MS_FLOOR = 10**12


def _print(args: argparse.Namespace, doc: Any) -> None:
    if args.json:
        print(json.dumps(doc, indent=2))
        return
    rows = doc if isinstance(doc, list) else [doc]
    for i, row in enumerate(rows):
        if i:
            print()
        if isinstance(row, dict):
            width = max(len(k) for k in row) if row else 0
            for key, value in row.items():
                print(f"{key:<{width}}  {_shown(key, value)}")
        else:
            print(row)


# -- argument helpers ----------------------------------------------------------------------


def _read_secret(path: str) -> str:
    """One line from ``path`` (``-``: standard input), stripped."""
    text = sys.stdin.readline() if path == "-" else (Path(path).read_text().splitlines() or [""])[0]
    secret = text.strip()
    if not secret:
        raise UsageError(f"no SDK token in {'standard input' if path == '-' else path}")
    try:  # (standard input decodes bytes that are not UTF-8 to lone surrogates)
        return actions.checked_text(secret)
    except ValueError as exc:
        raise UsageError(f"the SDK token: {exc}") from None


def _hex_prefix(text: str) -> str:
    if len(text) < 8 or any(c not in "0123456789abcdefABCDEF" for c in text):
        raise argparse.ArgumentTypeError(f"wants 8 or more hex digits, got {text!r}")
    return text


def _at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"wants an integer, got {text!r}") from None
        # The store takes 64-bit integers: a larger one was an OverflowError traceback.
        if not low <= value < 2**63:
            raise argparse.ArgumentTypeError(f"must be {low} to 2^63-1, got {text!r}")
        return value

    return parse


def _topic(text: str) -> Topic:
    topic_id, sep, name = text.partition(":")
    if not sep or not topic_id.isdigit():
        raise argparse.ArgumentTypeError(f"topic must be ID:NAME, got {text!r}")
    try:
        return actions.checked_topic(int(topic_id), name)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc}, got {text!r}") from None


def _hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    try:
        return actions.checked_bootstrap_server(host, int(port))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc}, got {text!r}") from None


def _config_version(text: str) -> int:
    try:
        return actions.checked_config_version(int(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc}, got {text!r}") from None


def _name(text: str) -> str:
    try:
        return actions.checked_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc}, got {text!r}") from None


def _on_off(text: str) -> bool:
    if text not in ("on", "off"):
        raise argparse.ArgumentTypeError("expected on or off")
    return text == "on"


def _endpoint_id(text: str) -> bytes:
    try:
        value = bytes.fromhex(text)
    except ValueError:
        value = b""
    if len(value) != 20:
        raise argparse.ArgumentTypeError("an endpoint id is 40 hex digits")
    return value


def _frame_limit(args: argparse.Namespace) -> int:
    """The largest frame an application's state must fit: this command's setting, or the
    running ``python -m servers`` of this data directory's (listeners.json) when smaller.
    The CLI checked its own while the server ran with a smaller one, and every device of
    the application then failed (the console attack of 2026-12-03, round 4)."""
    limit: int = args.settings.max_frame_size
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
        listeners = json.loads(DataDir(args.settings.data).listeners.read_text())
        running = listeners["max_frame_size"]
        if isinstance(running, int) and 0 < running < limit:
            limit = running
    return limit


def _config_body(args: argparse.Namespace) -> bytes | None:
    if args.body is not None and args.body_file is not None:
        raise UsageError("give --body or --body-file, not both")
    if args.body_file is not None:
        # Read no more than a frame can carry: /dev/zero grew the CLI to 5 GB (round 4).
        limit = _frame_limit(args)
        with open(args.body_file, "rb") as file:
            body = file.read(limit + 1)
        if len(body) > limit:
            raise UsageError(f"{args.body_file} is over {limit} bytes: no registration "
                             "answer could carry it")  # fmt: skip
        return body
    if args.body is not None:
        return str(args.body).encode()
    return None


# -- commands ------------------------------------------------------------------------------


def _check_state(config: bytes, topics: tuple[Topic, ...], args: argparse.Namespace) -> None:
    try:
        actions.checked_state(config, topics, _frame_limit(args))
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _topics(args: argparse.Namespace) -> tuple[Topic, ...]:
    """The ``--topic`` options, as one application's topics (actions.checked_topics)."""
    try:
        return actions.checked_topics(tuple(args.topic))
    except ValueError as exc:
        raise UsageError(f"argument --topic: {exc}") from None


async def _app_create(store: RegistryStore, args: argparse.Namespace, _: DataDir) -> int:
    config, topics = _config_body(args) or b"{}", _topics(args)
    _check_state(config, topics, args)
    app = await actions.create_application(
        store,
        name=args.name,
        config=config,
        config_version=args.config_version,
        topics=topics,
        balancing=Balancing(args.balancing),
        cached_signature=args.cached_signature,
    )
    if args.json:
        _print(args, _app_doc(app, 0))
    else:
        print(app.token)  # TOKEN=$(python -m servers.control app create --name N)
    return 0


async def _app_update(store: RegistryStore, args: argparse.Namespace, _: DataDir) -> int:
    changes = ApplicationChanges(
        name=args.name,
        config=_config_body(args),
        config_version=args.config_version,
        topics=_topics(args) if args.topic else None,
        balancing=Balancing(args.balancing) if args.balancing else None,
        cached_signature=args.cached_signature,
    )
    if changes == ApplicationChanges():
        raise UsageError("nothing to change")
    app = await actions.existing_application(store, args.token)
    try:
        actions.checked_next_version(app, changes)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    audit = actions.application_audit(wall_ms(), actions.actor(), "app.update", app,
                                      _changed(changes))  # fmt: skip
    check = actions.update_check(_frame_limit(args))
    try:
        updated = await store.update_application(args.token, changes, audit, check)
    except Refused as exc:
        raise UsageError(str(exc)) from None
    _print(args, _app_doc(updated))
    return 0


async def _app_list(store: RegistryStore, args: argparse.Namespace, _: DataDir) -> int:
    apps = await store.list_applications()
    if args.json:
        _print(args, [_app_doc(a) for a in apps])
    else:
        for app in apps:
            print(f"{app.token}  v{app.config_version}  {app.balancing}  {app.name}")
    return 0


async def _app_show(store: RegistryStore, args: argparse.Namespace, _: DataDir) -> int:
    app = await actions.existing_application(store, args.token)
    _print(args, _app_doc(app, len(await store.list_sdk_tokens(app.token))))
    return 0


async def _sdk_list(store: RegistryStore, args: argparse.Namespace, _: DataDir) -> int:
    await actions.existing_application(store, args.app)
    tokens = await store.list_sdk_tokens(args.app)
    if args.json:
        _print(args, [_sdk_token_doc(t) for t in tokens])
    else:
        for t in tokens:
            state = f"revoked {_shown('revoked_ms', t.revoked_ms)}" if t.revoked_ms else "live"
            print(f"{t.token_hash.hex()[:16]}  {_shown('created_ms', t.created_ms)}  {state}")
    return 0


async def _sdk_revoke(store: RegistryStore, args: argparse.Namespace, _: DataDir) -> int:
    prefix = args.sha256.lower()
    tokens = await store.list_sdk_tokens(args.app)
    matches = [t for t in tokens if t.token_hash.hex().startswith(prefix)]
    if len(matches) != 1:
        raise NotFound(
            f"{len(matches)} SDK tokens of this application match {prefix}: give more digits"
            if matches else f"no SDK token of this application matches {prefix}"
        )
    app = await actions.existing_application(store, args.app)
    audit = actions.application_audit(wall_ms(), actions.actor(), "sdk.revoke", app,
                                      matches[0].token_hash.hex()[:16])  # fmt: skip
    revoked = await store.revoke_sdk_token(matches[0].token_hash, audit)
    _print(args, _sdk_token_doc(revoked))
    return 0


async def _sdk_create(store: RegistryStore, args: argparse.Namespace, _: DataDir) -> int:
    token = await actions.create_sdk_token(store, args.app)
    if args.json:
        _print(args, {"application": args.app, "sdk_token": token})
    else:
        print(token)
    return 0


async def _sdk_export(store: RegistryStore, args: argparse.Namespace, datadir: DataDir) -> int:
    app = await actions.existing_application(store, args.app)
    if args.sdk_token is None:
        args.sdk_token = _read_secret(args.sdk_token_file)
    found = await store.find_sdk_token(actions.sdk_token_hash(args.sdk_token))
    if found is None or found.application != app.token:
        raise NotFound("that SDK token does not belong to this application")
    settings: cfg.Settings = args.settings
    servers = args.bootstrap or [(settings.public_host, settings.bootstrap_port)]
    keyring = datadir.keyring()
    config = build_sdk_config(
        app,
        args.sdk_token,
        servers,
        keyring.public_key_pem,
        keyring.generation,
        settings.max_frame_size,
    )
    out = Path(args.out)
    header = None if args.no_header else Path(args.header or out.with_suffix(".h"))
    write_export(config, out, header)
    _print(args, {"json": str(out), "header": str(header) if header else None})
    return 0


#: ``bootstrap rotate --key-type`` -> how to make such a key. No RSA-4096: the Bootstrap
#: signs every resolution, and anyone with an application token (shipped in every device)
#: can ask for one; an RSA-4096 signature costs about 18x an honest registration
#: (docs/security.md, "Worst-case cost per request").
KEY_TYPES: dict[str, Callable[[], PrivateKey]] = {
    "rsa-2048": lambda: generate_rsa_key(2048),
    "rsa-3072": lambda: generate_rsa_key(3072),
    "ed25519": generate_ed25519_key,
}


async def _bootstrap_show(store: RegistryStore, args: argparse.Namespace, datadir: DataDir) -> int:
    _print(args, _keyring_doc(datadir.keyring(), datadir))
    return 0


async def _bootstrap_rotate(
    store: RegistryStore, args: argparse.Namespace, datadir: DataDir
) -> int:
    new_key = KEY_TYPES[args.key_type]()
    signature_algorithm_of(new_key)
    # Off the loop: it generates nothing more, but writes and fsyncs four files.
    keyring = await asyncio.to_thread(rotate, datadir.key_files, new_key)
    detail = f"generation={keyring.generation} key_sha256={keyring.fingerprint}"
    await store.add_audit(
        AuditEntry(wall_ms(), actions.actor(), "bootstrap.rotate", "bootstrap key", detail)
    )
    _print(args, _keyring_doc(keyring, datadir))
    return 0


async def _endpoint_list(store: RegistryStore, args: argparse.Namespace, _: DataDir) -> int:
    if args.app is not None:
        await actions.existing_application(store, args.app)
    endpoints = await store.list_endpoints(args.app, args.limit, args.offset)
    if args.json:
        _print(args, [_endpoint_doc(e) for e in endpoints])
    else:
        for e in endpoints:
            registration = e.registration_status.name if e.registered else "never-registered"
            print(f"{e.endpoint_id.hex()}  {e.status:<7}  {registration}")
    return 0


async def _endpoint_show(store: RegistryStore, args: argparse.Namespace, _: DataDir) -> int:
    endpoint = await store.get_endpoint(args.endpoint_id)
    if endpoint is None:
        raise NotFound("no such endpoint")
    _print(args, _endpoint_doc(endpoint, with_profile=True))
    return 0


async def _endpoint_revoke(store: RegistryStore, args: argparse.Namespace, _: DataDir) -> int:
    # An id not registered yet (a stolen key's, known before it is used) is pre-revoked:
    # its first registration is refused as a revoked endpoint's is.
    known = await store.get_endpoint(args.endpoint_id) is not None
    action = "endpoint.revoke" if known else "endpoint.pre-revoke"
    audit = AuditEntry(wall_ms(), actions.actor(), action, args.endpoint_id.hex(), args.reason)
    endpoint = await store.revoke_endpoint(args.endpoint_id, audit)
    if not endpoint.registered:
        print(
            f"note: {args.endpoint_id.hex()} has never registered: recorded as revoked, so its "
            "first registration is refused",
            file=sys.stderr,
        )
    _print(args, _endpoint_doc(endpoint))
    return 0


async def _endpoint_reinstate(
    store: RegistryStore, args: argparse.Namespace, _: DataDir
) -> int:
    audit = AuditEntry(
        wall_ms(), actions.actor(), "endpoint.reinstate", args.endpoint_id.hex(), args.reason
    )
    endpoint = await store.reinstate_endpoint(args.endpoint_id, audit)
    _print(args, _endpoint_doc(endpoint))
    return 0


async def _nodes_list(store: RegistryStore, args: argparse.Namespace, _: DataDir) -> int:
    now = wall_ms()
    nodes = await store.list_nodes()
    if args.json:
        _print(args, [_node_doc(n, now) for n in nodes])
    else:
        for n in nodes:
            state = f"lease {n.lease_expires_ms - now} ms" if n.lease_expires_ms > now else "lapsed"
            print(
                f"{n.node_id}  {n.host}:{n.port}  priority={n.priority} weight={n.weight} "
                f"load={n.load}  {state}"
            )
    return 0


async def _audit_list(store: RegistryStore, args: argparse.Namespace, _: DataDir) -> int:
    entries = await store.list_audit(args.limit)
    docs = [
        {
            "seq": e.seq,
            "at_ms": e.at_ms,
            "actor": e.actor,
            "action": e.action,
            "subject": e.subject,
            "detail": e.detail,
        }
        for e in entries
    ]
    if args.json:
        _print(args, docs)
    else:
        for e in entries:
            at = _shown("at_ms", e.at_ms)
            print(f"{e.seq}  {at}  {e.actor}  {e.action}  {e.subject}  {e.detail}")
    return 0


async def _backup(store: RegistryStore, args: argparse.Namespace, datadir: DataDir) -> int:
    from servers.store.sqlite import backup

    out = Path(args.out)
    size = await asyncio.to_thread(backup, datadir.database, out)
    _print(args, {"backup": str(out), "bytes": size, "database": str(datadir.database)})
    return 0


async def _init(store: RegistryStore, args: argparse.Namespace, datadir: DataDir) -> int:
    _print(args, {"data": str(datadir.root), "database": store.location})
    return 0


# -- parser --------------------------------------------------------------------------------

Command = Callable[[RegistryStore, argparse.Namespace, DataDir], Awaitable[int]]

#: The commands that only read the registry: they open a SQLite file read-only, so they
#: work on a read-only copy of a data directory (a backup, a mount) and never migrate it.
_READ_ONLY: frozenset[Command] = frozenset({
    _backup, _app_list, _app_show, _sdk_list, _sdk_export, _bootstrap_show, _endpoint_list,
    _endpoint_show, _nodes_list, _audit_list,
})  # fmt: skip


def _app_fields(parser: argparse.ArgumentParser, *, create: bool) -> None:
    # Create states its defaults; update says what happens to a field not given.
    kept = "" if create else "; unchanged if not given"
    parser.add_argument("--name", type=_name, required=create, help=f"a name for people{kept}")
    parser.add_argument(
        "--body", metavar="TEXT", help="configuration body" + (" (default {})" if create else kept)
    )
    parser.add_argument("--body-file", metavar="FILE", help="configuration body from a file")
    parser.add_argument(
        "--config-version",
        type=_config_version,
        default=1 if create else None,
        metavar="N",
        help="configuration version (default: 1)" if create
        else "configuration version (default: +1 when the body changes)",
    )
    parser.add_argument(
        "--topic",
        type=_topic,
        action="append",
        default=[],
        metavar="ID:NAME",
        help="a topic (repeat for more)" if create
        else "a topic (repeat for more; replaces all topics; unchanged if not given)",
    )
    parser.add_argument(
        "--balancing",
        choices=[str(b) for b in Balancing],
        default=str(Balancing.STATIC) if create else None,
        help="load-balancing strategy (docs/balancing.md)" + ("; default: static" if create
                                                              else kept),
    )
    if create:
        parser.add_argument(
            "--cached-signature",
            action="store_true",
            help="answer resolutions with a list signed once per change (docs/balancing.md)",
        )
    else:
        parser.add_argument(
            "--cached-signature", type=_on_off, metavar="on|off", help="cached-signature mode"
        )


def build_parser() -> argparse.ArgumentParser:
    parser = cfg.OneLineParser(
        prog="python -m servers.control",
        description="Set up a kaa-wire data directory and manage applications, SDK tokens, "
        "endpoints and nodes.",
    )
    cfg.add_arguments(parser, _SETTINGS, helps=_SETTING_HELPS)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(group: Any, name: str, handler: Command, help_text: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = group.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler, read_only=handler in _READ_ONLY)
        # --json after the command too (``app list --json``); SUPPRESS keeps a --json given
        # before the command from being reset here.
        sub.add_argument(
            "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
        )
        return sub

    command(commands, "init", _init, "create the data directory: service keys and database")
    command(
        commands,
        "backup",
        _backup,
        "a consistent copy of the SQLite store while the services run (0600, written "
        "atomically; restore: docs/operations.md)",
    ).add_argument("--out", required=True, metavar="FILE", help="where the copy goes")

    app = commands.add_parser("app", help="applications").add_subparsers(
        dest="app_command", required=True, metavar="ACTION"
    )
    _app_fields(command(app, "create", _app_create, "create an application"), create=True)
    update = command(app, "update", _app_update, "change an application")
    update.add_argument("token", help="application token")
    _app_fields(update, create=False)
    command(app, "list", _app_list, "list applications")
    command(app, "show", _app_show, "show one application").add_argument("token")

    sdk = commands.add_parser("sdk", help="SDK tokens and export").add_subparsers(
        dest="sdk_command", required=True, metavar="ACTION"
    )
    command(sdk, "create", _sdk_create, "create an SDK token (printed once)").add_argument(
        "app", help="application token"
    )
    command(sdk, "list", _sdk_list, "an application's SDK tokens, by SHA-256").add_argument(
        "app", help="application token"
    )
    revoke_sdk = command(
        sdk, "revoke", _sdk_revoke, "refuse an SDK token from now on (within refresh_s)"
    )
    revoke_sdk.add_argument("app", help="application token")
    revoke_sdk.add_argument(
        "sha256", type=_hex_prefix, help="the token's SHA-256 as sdk list shows it (8+ digits)"
    )
    export = command(sdk, "export", _sdk_export, "write the client SDK configuration")
    export.add_argument("--app", required=True, help="application token")
    token = export.add_mutually_exclusive_group(required=True)
    token.add_argument("--sdk-token", help="the SDK token to embed (ps shows it: prefer the file)")
    token.add_argument(
        "--sdk-token-file",
        metavar="FILE",
        help="read the SDK token from FILE, - for standard input (not visible in ps)",
    )
    export.add_argument("--out", default="sdk.json", help="JSON output (default sdk.json)")
    export.add_argument("--header", help="C header output (default: --out with .h)")
    export.add_argument("--no-header", action="store_true", help="do not write the C header")
    export.add_argument(
        "--bootstrap",
        type=_hostport,
        action="append",
        metavar="HOST:PORT",
        help="a Bootstrap server to embed (repeat; default: advertise host, bootstrap port)",
    )

    bootstrap = commands.add_parser("bootstrap", help="the Bootstrap key").add_subparsers(
        dest="bootstrap_command", required=True, metavar="ACTION"
    )
    command(bootstrap, "show", _bootstrap_show, "the current key: generation, fingerprint")
    rotation = command(
        bootstrap,
        "rotate",
        _bootstrap_rotate,
        "make a new Bootstrap key the next generation, certified by the current one "
        "(docs/operations.md, Bootstrap key rotation)",
    )
    rotation.add_argument(
        "--key-type",
        choices=sorted(KEY_TYPES),
        default="rsa-2048",
        help="the new key (default rsa-2048; devices must verify its algorithm)",
    )

    endpoint = commands.add_parser("endpoint", help="endpoints").add_subparsers(
        dest="endpoint_command", required=True, metavar="ACTION"
    )
    listing = command(endpoint, "list", _endpoint_list, "list endpoints, oldest first")
    listing.add_argument("--app", help="only this application's endpoints")
    listing.add_argument("--limit", type=_at_least(1), default=100, metavar="N")
    listing.add_argument("--offset", type=_at_least(0), default=0, metavar="N")
    command(endpoint, "show", _endpoint_show, "show one endpoint").add_argument(
        "endpoint_id", type=_endpoint_id, help="40 hex digits"
    )
    revoke = command(
        endpoint,
        "revoke",
        _endpoint_revoke,
        "revoke an endpoint; an id not registered yet is refused at its first registration",
    )
    revoke.add_argument("endpoint_id", type=_endpoint_id, help="40 hex digits")
    revoke.add_argument("--reason", default="", help="recorded in the audit log")
    reinstate = command(
        endpoint, "reinstate", _endpoint_reinstate, "undo a revocation (audited)"
    )
    reinstate.add_argument("endpoint_id", type=_endpoint_id, help="40 hex digits")
    reinstate.add_argument("--reason", default="", help="recorded in the audit log")

    nodes = commands.add_parser("nodes", help="Operations nodes").add_subparsers(
        dest="nodes_command", required=True, metavar="ACTION"
    )
    command(nodes, "list", _nodes_list, "list node leases, live and lapsed")

    audit = commands.add_parser("audit", help="audit log").add_subparsers(
        dest="audit_command", required=True, metavar="ACTION"
    )
    command(audit, "list", _audit_list, "newest first").add_argument(
        "--limit", type=_at_least(1), default=50, metavar="N"
    )
    credentials.add_commands(commands, command, _print)
    return parser


async def _run(args: argparse.Namespace) -> int:
    datadir = DataDir(args.settings.data)
    old_mode = datadir.tighten()  # as the servers do (docs/operations.md, "Data directory")
    if old_mode is not None:
        new_mode = old_mode & PRIVATE_DIR_MODE
        print(
            f"warning: {datadir.root} was open to group or others: mode {old_mode:04o}, "
            f"now {new_mode:04o}",
            file=sys.stderr,
        )
    for path, mode in datadir.tighten_private_files():
        print(f"warning: {path} was readable by others: mode {mode:04o}, now "
              f"{mode & 0o600:04o}", file=sys.stderr)
    if args.handler is _backup and is_postgres_dsn(args.settings.store):
        raise UsageError(
            "backup copies the data directory's SQLite store; back a PostgreSQL store up with "
            "pg_dump (docs/operations.md, Backup and restore)"
        )
    if args.handler is _init:
        datadir.create_keys()
    elif not is_postgres_dsn(args.settings.store) and not datadir.database.exists():
        # Only the commands that use a key load one (export, bootstrap): the others need the
        # registry alone, which with PostgreSQL is anywhere that reaches the database.
        raise NotInitialized(f"{datadir.database} does not exist: run init first")
    async with store_for(args.settings, datadir, read_only=args.read_only) as store:
        result: int = await args.handler(store, args, datadir)
        return result


def _checked_argv(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """Every argument by the store's rule for text (actions.checked_text), before any
    command sees one: an argument that is not UTF-8 reaches Python with lone surrogates,
    which no store, file name written back or output line can encode (it was a
    UnicodeEncodeError traceback wherever it went)."""
    for arg in argv:
        try:
            actions.checked_text(arg)
        except ValueError as exc:
            parser.error(f"argument {arg!a}: {exc}")
    return list(argv)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_checked_argv(parser, sys.argv[1:] if argv is None else argv))
    try:
        args.settings = cfg.load_settings(args)
        return asyncio.run(_run(args))
    except (UsageError, cfg.ConfigError, credentials.CredentialError) as exc:
        parser.error(str(exc))
    except UnicodeDecodeError as exc:  # a password or SDK token file, standard input
        parser.error(f"input that is not UTF-8 text (byte {exc.start})")
    except (
        NotFound,
        AlreadyExists,
        DataDirError,
        KeyringError,
        LocalProtocolError,
        StoreError,
        OSError,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 2
