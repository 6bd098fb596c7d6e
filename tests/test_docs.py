"""docs/protocol.md stays true: its hex examples are the committed vectors, byte for byte."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import load_vectors

PROTOCOL = Path(__file__).parents[1] / "docs" / "protocol.md"


def test_every_hex_example_is_the_vector() -> None:
    exchange = load_vectors("exchange.json")
    blocks = re.findall(r"```hex (\w+)\n([0-9a-f\n]*)```", PROTOCOL.read_text())
    assert {name for name, _ in blocks} == {k for k in exchange if k.endswith("_frame")}
    for name, text in blocks:
        assert text.replace("\n", "") == exchange[name], name


def test_endpoint_id_example_is_the_vector() -> None:
    exchange = load_vectors("exchange.json")
    text = PROTOCOL.read_text()
    assert text.count(exchange["endpoint_id"]) == 2
    assert bytes.fromhex(exchange["endpoint_public_key"]).startswith(
        bytes.fromhex("30820122300d06092a864886f70d0101010500038201 0f00".replace(" ", ""))
    )


def test_the_small_order_points_listed_are_the_refused_ones() -> None:
    """docs/protocol.md 5.3 lists the refused Ed25519 keys: the very ones the code refuses
    (which tests/test_endpoint_keys.py derives from the curve)."""
    from kaa_wire._constants import ED25519_SMALL_ORDER_KEYS

    text = PROTOCOL.read_text()
    listing = text[text.index("The 8 canonical encodings") :]
    block = listing[listing.index("```\n") + 4 : listing.index("```", listing.index("```\n") + 4)]
    listed = [bytes.fromhex(line.strip()) for line in block.splitlines() if line.strip()]
    assert listed == list(ED25519_SMALL_ORDER_KEYS)
