"""``python -m kaa_wire``: key ids, key generation, and a frame decoder."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import x25519

import kaa_files
from kaa_wire import _codec, _crypto
from kaa_wire._constants import ABSOLUTE_MAX_FRAME_SIZE
from kaa_wire._errors import KaaWireError, LocalProtocolError, MalformedFrame
from kaa_wire._impl import IMPLEMENTATION, Framer


def _keyid(args: argparse.Namespace) -> int:
    key = _crypto.load_public_key(Path(args.file).read_bytes())
    if isinstance(key, x25519.X25519PublicKey):
        # An Operations node key: it seals, it identifies no endpoint.
        raise LocalProtocolError(f"{args.file} is an X25519 key: endpoint ids are of RSA or "
                                 "Ed25519 endpoint keys")
    print(_crypto.endpoint_id(_crypto.public_key_der(key)).hex())
    return 0


def _keygen(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    private = out / "key.private"
    if private.exists() and not args.force:
        print(f"error: {private} exists (use --force to replace it)", file=sys.stderr)
        return 1
    key = _crypto.generate_rsa_key(args.bits)
    kaa_files.save_private_key(private, key)
    kaa_files.save_public_key(out / "key.public", key)
    print(_crypto.endpoint_id(_crypto.public_key_der(key)).hex())
    return 0


def _decode(args: argparse.Namespace) -> int:
    data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    if args.hex:
        try:
            data = bytes.fromhex(data.decode("ascii", errors="replace").strip())
        except ValueError as exc:
            raise _UsageError(f"--hex input is not hex: {exc}") from None
    framer = Framer(ABSOLUTE_MAX_FRAME_SIZE)
    framer.receive_data(data)
    try:
        frame = framer.next_frame()
        if frame is None:
            raise MalformedFrame(f"truncated: {len(data)} bytes is not a whole frame")
        if framer.buffered:
            raise MalformedFrame(f"{framer.buffered} bytes after the frame")
        described = _codec.describe_frame(frame)
    except KaaWireError as exc:
        error = {"error": type(exc).__name__, "code": int(exc.code), "message": exc.message}
        print(json.dumps(error))
        return 2
    print(json.dumps(described, indent=2))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kaa_wire",
        description=f"kaa-wire protocol tools (implementation: {IMPLEMENTATION})",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    keyid = sub.add_parser(
        "keyid", help="print the endpoint id (SHA-1 of the DER public key) of a key file"
    )
    keyid.add_argument("file", help="public or private key, PEM or DER")
    keyid.set_defaults(run=_keyid)
    keygen = sub.add_parser(
        "keygen", help="write DIR/key.private (PKCS#8 PEM, 0600) and DIR/key.public"
    )
    keygen.add_argument("--out", required=True, metavar="DIR")
    keygen.add_argument(
        "--bits", type=int, default=2048, choices=(2048, 3072, 4096), help="RSA modulus size"
    )
    keygen.add_argument("--force", action="store_true", help="replace an existing key pair")
    keygen.set_defaults(run=_keygen)
    decode = sub.add_parser("decode", help="print a frame as JSON, or its typed error")
    decode.add_argument("file", help="a file holding one frame, or - for stdin")
    decode.add_argument("--hex", action="store_true", help="the input is hex text")
    decode.set_defaults(run=_decode)
    return parser


class _UsageError(Exception):
    """Input the command cannot take: exit 2, like a bad flag."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except _UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (OSError, KaaWireError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
