"""``python -m kaa_wire`` against the openssl CLI as an outside implementation."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from kaa_wire import Signer, _crypto
from tests.conftest import load_vectors

EXCHANGE = load_vectors("exchange.json")


def kaa(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "kaa_wire", *args], input=stdin, capture_output=True, timeout=60
    )


def openssl(*args: str, stdin: bytes | None = None) -> bytes:
    return subprocess.run(
        ["openssl", *args], input=stdin, capture_output=True, check=True, timeout=60
    ).stdout


@pytest.fixture(scope="module")
def openssl_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("openssl") / "rsa.pem"
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(path))
    return path


def _openssl_id(public_pem: Path) -> str:
    der = openssl("pkey", "-pubin", "-in", str(public_pem), "-outform", "DER")
    return openssl("sha1", "-r", stdin=der).split()[0].decode()


@pytest.mark.parametrize("form", ["private-pem", "public-pem", "public-der", "private-der"])
def test_keyid_matches_openssl(openssl_key: Path, tmp_path: Path, form: str) -> None:
    public_pem = tmp_path / "pub.pem"
    openssl("pkey", "-in", str(openssl_key), "-pubout", "-out", str(public_pem))
    files = {
        "private-pem": openssl_key,
        "public-pem": public_pem,
        "public-der": tmp_path / "pub.der",
        "private-der": tmp_path / "priv.der",
    }
    openssl(
        "pkey",
        "-pubin",
        "-in",
        str(public_pem),
        "-outform",
        "DER",
        "-out",
        str(files["public-der"]),
    )
    openssl("pkey", "-in", str(openssl_key), "-outform", "DER", "-out", str(files["private-der"]))
    out = kaa("keyid", str(files[form]))
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode().strip() == _openssl_id(public_pem)


def test_keygen_writes_0600_private_key(tmp_path: Path) -> None:
    out = kaa("keygen", "--out", str(tmp_path / "dev"))
    assert out.returncode == 0, out.stderr
    private, public = tmp_path / "dev" / "key.private", tmp_path / "dev" / "key.public"
    assert stat.S_IMODE(os.stat(private).st_mode) == 0o600
    assert private.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8
    assert public.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")  # SubjectPublicKeyInfo
    assert out.stdout.decode().strip() == _openssl_id(public)
    again = kaa("keygen", "--out", str(tmp_path / "dev"))
    assert again.returncode != 0 and b"exists" in again.stderr


def test_signatures_verify_with_openssl(openssl_key: Path, tmp_path: Path) -> None:
    data = b"KAA-WIRE/2 RESOLVE\x00 signed by kaa_wire, checked by openssl"
    signature = Signer(openssl_key.read_bytes()).sign(data)
    (tmp_path / "data").write_bytes(data)
    (tmp_path / "sig").write_bytes(signature)
    public_pem = tmp_path / "pub.pem"
    openssl("pkey", "-in", str(openssl_key), "-pubout", "-out", str(public_pem))
    out = openssl(
        "dgst",
        "-sha256",
        "-verify",
        str(public_pem),
        "-signature",
        str(tmp_path / "sig"),
        str(tmp_path / "data"),
    )
    assert b"Verified OK" in out
    # And the other way round: openssl's PKCS#1 v1.5 signature verifies here.
    theirs = openssl("dgst", "-sha256", "-sign", str(openssl_key), str(tmp_path / "data"))
    key = _crypto.load_public_key(public_pem.read_bytes())
    _crypto.verify_signature(key, 1, data, theirs)  # type: ignore[arg-type]


def test_ed25519_signatures_verify_with_openssl(tmp_path: Path) -> None:
    key_path = tmp_path / "ed.pem"
    openssl("genpkey", "-algorithm", "ED25519", "-out", str(key_path))
    data = b"KAA-WIRE/2 RESOLVE\x00 ed25519"
    (tmp_path / "data").write_bytes(data)
    (tmp_path / "sig").write_bytes(Signer(key_path.read_bytes()).sign(data))
    openssl("pkey", "-in", str(key_path), "-pubout", "-out", str(tmp_path / "pub.pem"))
    out = openssl(
        "pkeyutl",
        "-verify",
        "-pubin",
        "-inkey",
        str(tmp_path / "pub.pem"),
        "-rawin",
        "-in",
        str(tmp_path / "data"),
        "-sigfile",
        str(tmp_path / "sig"),
    )
    assert b"Signature Verified Successfully" in out


@pytest.mark.parametrize("name", [k for k in EXCHANGE if k.endswith("_frame")])
def test_decode_prints_every_frame_as_json(name: str) -> None:
    out = kaa("decode", "-", stdin=bytes.fromhex(EXCHANGE[name]))
    assert out.returncode == 0, out.stderr
    decoded = json.loads(out.stdout)
    assert decoded["type"] in {
        "RESOLVE_REQUEST",
        "RESOLVE_RESPONSE",
        "REGISTER_REQUEST",
        "REGISTER_RESPONSE",
        "ERROR",
    }


def test_decode_hex_input_and_fields() -> None:
    out = kaa("decode", "--hex", "-", stdin=EXCHANGE["resolve_request_frame"].encode())
    assert json.loads(out.stdout)["app_token"] == EXCHANGE["app_token"]


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"\x01\x01\x00\x00\x00\x00", "UnsupportedVersion"),
        (b"\x02\x09\x00\x00\x00\x00", "UnknownMessageType"),
        (b"\x02\x01\x00\x00\x00\x05ab", "MalformedFrame"),
        (b"\x02\x01\x00\x00\x00\x01a", "MalformedFrame"),
        (b"GET / HTTP/1.1\r\n\r\n", "UnsupportedVersion"),
    ],
)
def test_decode_bad_frame_gives_typed_error(data: bytes, error: str) -> None:
    out = kaa("decode", "-", stdin=data)
    assert out.returncode == 2
    assert json.loads(out.stdout)["error"] == error
