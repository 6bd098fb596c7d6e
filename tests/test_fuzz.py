"""Fuzzing in the test run: hypothesis on random and mutated input, every committed corpus
input, and a short atheris run. Only protocol errors may escape, and both implementations
must agree (tests/fuzz/harness.py). The long run is documented in docs/security.md."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import load_vectors
from tests.fuzz.harness import (
    CHAIN_SELECTOR,
    OPEN_SELECTOR,
    PAYLOAD_SELECTOR,
    RESOLVE_SELECTOR,
    VERIFY_SELECTOR,
    check,
)

FUZZ = Path(__file__).parent / "fuzz"
CORPUS = sorted((FUZZ / "corpus").iterdir())
EXCHANGE = load_vectors("exchange.json")
SEED_FRAMES = [bytes.fromhex(v) for k, v in EXCHANGE.items() if k.endswith("_frame")]
SEED_PAYLOADS = [
    bytes([PAYLOAD_SELECTOR]) + bytes.fromhex(v["plaintext"])
    for v in load_vectors("registration.json")
    if "ok" in v["expect"]
]
SEED_VERIFIES = [
    bytes([VERIFY_SELECTOR]) + bytes.fromhex(v["plaintext"])
    for v in load_vectors("registration.json")
    if "ok" in v["expect"] and not v["stored_key"]
]
SEED_RESOLVES = [
    bytes([RESOLVE_SELECTOR]) + bytes.fromhex(v["hex"])[6:]
    for v in load_vectors("messages.json")
    if v["hex"][2:4] == "01" and "ok" in v["expect"]
]
SEED_OPENS = [  # bodies of the requests sealed to the harness's Operations key
    bytes([OPEN_SELECTOR]) + bytes.fromhex(EXCHANGE[name])[6:]
    for name in ("register_request_frame", "reconnect_request_frame", "register_request_p256_frame")
]
SEED_CHAINS = [  # answers with and without rotations, for the chain check
    bytes([CHAIN_SELECTOR]) + bytes.fromhex(EXCHANGE[name])[6:]
    for name in ("resolve_response_frame", "resolve_response_rotated_frame")
]
SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A seed with a few bytes flipped, cut, or spliced: input that gets past the first checks."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 4))):
        action = draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        position = draw(st.integers(1, max(1, len(data) - 1)))
        if action == "flip" and position < len(data):
            data[position] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del data[position:]
        elif action == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif position < len(data):
            del data[position]
    return bytes(data)


@SETTINGS
@given(
    st.one_of(
        st.binary(max_size=96),
        mutated(SEED_FRAMES),
        mutated(SEED_PAYLOADS),
        mutated(SEED_VERIFIES),
        mutated(SEED_RESOLVES),
        mutated(SEED_OPENS),
        mutated(SEED_CHAINS),
    )
)
def test_hypothesis_inputs(data: bytes) -> None:
    check(data)


@pytest.mark.parametrize("path", CORPUS, ids=[p.name[:12] for p in CORPUS])
def test_corpus_input(path: Path) -> None:
    check(path.read_bytes())


def test_short_atheris_run(tmp_path: Path) -> None:
    pytest.importorskip("atheris", reason="atheris has no wheel for this platform")
    corpus = tmp_path / "corpus"
    shutil.copytree(FUZZ / "corpus", corpus)  # new finds go here, not into the tree
    result = subprocess.run(
        [sys.executable, str(FUZZ / "fuzz_wire.py"), "-runs=30000", str(corpus)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=FUZZ.parents[1],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Done 30000 runs" in result.stderr
