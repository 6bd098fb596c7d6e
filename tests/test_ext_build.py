"""The extension is built when it must be, and exports what kaa_wire expects of it.

The build check never skips, so CI (KAA_WIRE_REQUIRE_EXT=1) cannot pass on a silent fallback
to pure Python. That the extension behaves as the pure path does is the parity tests' job
(tests/test_parity_*.py).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import kaa_wire
from kaa_wire import _constants

ROOT = Path(__file__).resolve().parents[1]


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


# ---------------------------------------------------------------------------------------
# The build itself


def test_required_extension_is_built_and_selected() -> None:
    """CI sets KAA_WIRE_REQUIRE_EXT=1: then the extension must import, and be the one in use
    unless KAA_WIRE_PUREPYTHON=1 forces pure Python (then "py", whatever is built)."""
    if _flag("KAA_WIRE_PUREPYTHON"):
        assert kaa_wire.IMPLEMENTATION == "py"
    if _flag("KAA_WIRE_REQUIRE_EXT"):
        from kaa_wire_ext import _ext  # noqa: F401 - ImportError here is the failure

        if not _flag("KAA_WIRE_PUREPYTHON"):
            assert kaa_wire.IMPLEMENTATION == "ext"


#: protocol.pxd name -> the value it mirrors.
PXD_MIRRORS: dict[str, int] = {
    "PROTOCOL_VERSION": _constants.PROTOCOL_VERSION,
    "HEADER_SIZE": _constants.HEADER_SIZE,
    "DEFAULT_MAX_FRAME_SIZE": _constants.DEFAULT_MAX_FRAME_SIZE,
    "ABSOLUTE_MAX_FRAME_SIZE": _constants.ABSOLUTE_MAX_FRAME_SIZE,
    "MAX_BODY_LENGTH": _constants.ABSOLUTE_MAX_FRAME_SIZE - _constants.HEADER_SIZE,
    "NONCE_SIZE": _constants.NONCE_SIZE,
    "RESPONSE_NONCE_SIZE": _constants.RESPONSE_NONCE_SIZE,
    "KEY_HASH_SIZE": _constants.KEY_HASH_SIZE,
    "X25519_KEY_SIZE": _constants.X25519_KEY_SIZE,
    "AEAD_TAG_SIZE": _constants.AEAD_TAG_SIZE,
    "MAX_TOKEN_SIZE": _constants.MAX_TOKEN_SIZE,
    "MAX_HOST_SIZE": _constants.MAX_HOST_SIZE,
    "FIRST_KEY_GENERATION": _constants.FIRST_KEY_GENERATION,
    "MAX_ROTATION_CHAIN": _constants.MAX_ROTATION_CHAIN,
    **{f"MSG_{t.name}": int(t) for t in _constants.MessageType},
    **{f"FLAG_{f.name}": int(f) for f in _constants.FrameFlag},
    **{f"SIG_{a.name}": int(a) for a in _constants.SignatureAlgorithm},
    **{f"KEX_{a.name}": int(a) for a in _constants.KeyExchangeAlgorithm},
    **{f"AEAD_{a.name}": int(a) for a in _constants.AeadAlgorithm},
    "ENVELOPE_SIZE": _constants.ENVELOPE_SIZE,
    "PAYLOAD_FLAG_KEY_IS_HASH": _constants.PAYLOAD_FLAG_KEY_IS_HASH,
    "SIGNATURE_LENGTH_PREFIX": _constants.SIGNATURE_LENGTH_PREFIX,
    "MIN_RSA_BITS": _constants.MIN_RSA_BITS,
    "MAX_RSA_BITS": _constants.MAX_RSA_BITS,
    "RSA_PUBLIC_EXPONENT": _constants.RSA_PUBLIC_EXPONENT,
    "P256_SIGNATURE_SIZE": _constants.P256_SIGNATURE_SIZE,
}


def test_the_extension_exports_exactly_the_fast_path_names() -> None:
    """kaa_wire/_impl.py's NAMES is the one list: the .pyx __all__ and the .pyi follow it."""
    from kaa_wire import _impl

    stub = (ROOT / "kaa_wire_ext" / "_ext.pyi").read_text()
    stub_all = re.search(r"^__all__ = \[(.*?)\]", stub, re.S | re.M)
    assert stub_all is not None
    assert set(re.findall(r'"(\w+)"', stub_all.group(1))) == set(_impl.NAMES)
    pyx = (ROOT / "kaa_wire_ext" / "_ext.pyx").read_text()
    pyx_all = re.search(r"^__all__ = \[(.*?)\]", pyx, re.S | re.M)
    assert pyx_all is not None
    assert set(re.findall(r'"(\w+)"', pyx_all.group(1))) == set(_impl.NAMES)
    try:
        from kaa_wire_ext import _ext
    except ImportError:
        return
    assert set(_ext.__all__) == set(_impl.NAMES)


def test_pxd_constants_equal_kaa_wire_constants() -> None:
    text = (ROOT / "kaa_wire_ext" / "protocol.pxd").read_text()
    declared = {
        name: int(value, 0)
        for name, value in re.findall(
            r"^\s+([A-Z][A-Z0-9_]+)\s*=\s*(0x[0-9A-Fa-f]+|\d+)", text, re.M
        )
    }
    assert declared == PXD_MIRRORS
    try:
        from kaa_wire_ext import _ext
    except ImportError:
        return
    assert _ext._constants() == PXD_MIRRORS


def test_the_benchmark_loops_are_a_module_of_their_own() -> None:
    """The libcrypto reference loops live in kaa_wire_ext._bench, built with
    KAA_WIRE_BUILD_BENCH=1 (CI sets it, with KAA_WIRE_REQUIRE_EXT=1: then it must import);
    the production extension has none of them, and kaa_wire never imports the module."""
    if _flag("KAA_WIRE_REQUIRE_EXT") and _flag("KAA_WIRE_BUILD_BENCH"):
        from kaa_wire_ext import _bench  # noqa: F401 - ImportError here is the failure
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, kaa_wire; print('kaa_wire_ext._bench' in sys.modules)"],
        capture_output=True, text=True, check=True, cwd=ROOT, timeout=60,
    ).stdout.strip()
    assert loaded == "False"
    try:
        from kaa_wire_ext import _ext
    except ImportError:
        return
    assert not [name for name in dir(_ext) if "bench" in name]
