"""``python -m client``: register a device, or show what it knows.

Both commands print exactly one JSON object on stdout. Exit status:

    0  registered (register), or the state is intact (status)
    1  register gave up (the JSON says "failed" and why; stderr too), or no usable state
    2  usage, SDK configuration or state directory error (stderr only)
    3  the endpoint is revoked (a sealed answer from an Operations server)
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from client._device import Device
from client._policy import (
    Attempt,
    Connected,
    Event,
    Failed,
    KeyRotated,
    RetryPolicy,
    Revoked,
    Waiting,
)
from client._state import (
    DEFAULT_KEY_TYPE,
    KEY_TYPES,
    PRIVATE_KEY_FILE,
    PUBLIC_KEY_FILE,
    StateError,
    read_state,
    read_trust,
)
from kaa_wire import crypto
from kaa_wire._errors import KaaWireError
from kaa_wire._rotation import key_fingerprint

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_REVOKED = 3
#: Interrupted (Ctrl-C): the shell's code for SIGINT. The state on disk is whole: every
#: write is atomic, and one cut short leaves the previous state.
EXIT_INTERRUPTED = 130


class _UsageError(Exception):
    pass


def _profile(arg: str | None) -> bytes | None:
    """The profile bytes: canonical JSON (sorted keys, no spaces); None when not given (the
    device then sends the profile the server last accepted)."""
    if arg is None:
        return None
    text = Path(arg[1:]).read_text() if arg.startswith("@") else arg
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise _UsageError(f"--profile is not JSON: {exc}") from None
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _print_event(event: Event) -> None:
    if isinstance(event, (Attempt, KeyRotated)):
        print(f"client: {event.describe()}", file=sys.stderr)
    elif isinstance(event, Waiting):
        print(f"client: waiting {event.delay_s:.2f} s ({event.reason})", file=sys.stderr)


def _register(args: argparse.Namespace) -> int:
    profile = _profile(args.profile)
    policy = RetryPolicy(
        base_delay_s=args.base_delay,
        max_delay_s=args.max_delay,
        exchange_timeout_s=args.timeout,
        initial_holdoff_s=args.holdoff,
        deadline_s=args.deadline,
    )
    on_event = _print_event if args.verbose else None
    with Device.open(
        args.state, args.sdk, key_type=args.key_type, policy=policy, on_event=on_event
    ) as device:
        if device.state_dir.recovered:
            print(f"client: {device.state_dir.recovered}", file=sys.stderr)
        if args.api == "asyncio":
            import asyncio

            outcome = asyncio.run(device.register_async(profile))
        else:
            outcome = device.register(profile)
    doc = outcome.to_json()
    print(json.dumps(doc))
    if isinstance(outcome, Connected):
        return EXIT_OK
    if isinstance(outcome, Revoked):
        print(
            f"error: endpoint {outcome.endpoint_id} is revoked: {outcome.message}", file=sys.stderr
        )
        return EXIT_REVOKED
    assert isinstance(outcome, Failed)
    print(
        f"error: could not register ({outcome.reason}); last failure: {doc['cause']}",
        file=sys.stderr,
    )
    return EXIT_FAILED


def _status(args: argparse.Namespace) -> int:
    root = Path(args.state)
    key_id = None
    for name in (PUBLIC_KEY_FILE, PRIVATE_KEY_FILE):
        try:
            key = crypto.load_public_key((root / name).read_bytes())
        except FileNotFoundError:
            continue
        key_id = crypto.endpoint_id(crypto.public_key_der(key)).hex()  # type: ignore[arg-type]
        break
    state, problem = read_state(root)
    if state is not None and key_id is not None and state.endpoint_id != key_id:
        problem = f"state names endpoint {state.endpoint_id}, the key {key_id}"
        state = None
    doc: dict[str, Any]
    if state is None:
        doc = {"endpoint_id": key_id, "status": "unknown", "registered": False, "error": problem}
        print(json.dumps(doc))
        print(f"error: {root}: {problem}", file=sys.stderr)
        return EXIT_FAILED
    doc = state.to_json()
    del doc["format"]
    doc["revoked"] = state.revoked
    doc["key_present"] = (root / PRIVATE_KEY_FILE).exists()
    trust, problem = read_trust(root)
    if trust is None:
        doc["bootstrap_trust"] = None
        doc["error"] = problem
        print(json.dumps(doc))
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_FAILED
    doc["bootstrap_trust"] = [
        {
            "anchor_sha256": anchor,
            "generation": key.generation,
            "key_sha256": key_fingerprint(key.der),
        }
        for anchor, key in sorted(trust.learned.items())
    ]
    print(json.dumps(doc))
    return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m client", description="kaa-wire endpoint client"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    reg = sub.add_parser(
        "register",
        help="boot the device in DIR (keys on first boot), resolve, register; print JSON",
    )
    reg.add_argument(
        "--sdk",
        required=True,
        metavar="FILE",
        help="SDK configuration JSON (servers.control sdk export)",
    )
    reg.add_argument("--state", required=True, metavar="DIR", help="the device state directory")
    reg.add_argument(
        "--profile",
        metavar="JSON|@FILE",
        help="endpoint profile as JSON text, or @file; default: the last one registered "
        "(empty on a first boot)",
    )
    reg.add_argument(
        "--key-type",
        choices=tuple(KEY_TYPES),
        metavar="TYPE",
        help=f"the key a first boot generates: {', '.join(KEY_TYPES)} (default "
        f"{DEFAULT_KEY_TYPE}; p256 is ECDSA P-256, the key secure elements hold); on a later "
        "boot it must name the key the device has (exit 2 otherwise)",
    )
    reg.add_argument(
        "--api",
        choices=("blocking", "asyncio"),
        default="blocking",
        help="which transport runs the registration (default: blocking)",
    )
    reg.add_argument(
        "--deadline",
        type=float,
        default=60.0,
        metavar="S",
        help="give up after S seconds of trying (default 60)",
    )
    reg.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="limit for one exchange: connect, request, answer (default 10)",
    )
    reg.add_argument(
        "--base-delay", type=float, default=1.0, metavar="S", help="backoff base (default 1)"
    )
    reg.add_argument(
        "--max-delay", type=float, default=300.0, metavar="S", help="backoff cap (default 300)"
    )
    reg.add_argument(
        "--holdoff",
        type=float,
        default=0.0,
        metavar="S",
        help="random initial hold-off in [0, S] (default 0: none)",
    )
    reg.add_argument(
        "-v", "--verbose", action="store_true", help="log every exchange and wait on stderr"
    )
    reg.set_defaults(run=_register)
    status = sub.add_parser("status", help="print what the device in DIR knows, as JSON")
    status.add_argument("--state", required=True, metavar="DIR")
    status.set_defaults(run=_status)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.run(args))
    except (_UsageError, StateError, KaaWireError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("client: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
