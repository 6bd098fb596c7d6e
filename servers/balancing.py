"""Load-balancing strategies: which Operations services an answer lists, in what order.

A strategy turns the live node leases into a :class:`Plan`: one or more candidate
answers (*variants*), each a list of nodes with the priority and weight the endpoint will
see (priority u8, higher preferred; endpoints take the top priority and pick at random
among ties), and a relative weight for choosing that variant. Each resolution picks one
variant at random by weight. In cached-signature mode each variant is signed once per
change, so the same plan works for both signature modes. docs/balancing.md explains each
strategy and when to use it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import random
from collections.abc import Callable, Sequence

from kaa_wire import OperationsNode
from servers.store.base import Balancing, Node

__all__ = ["Plan", "make_plan", "LOAD_TIE_TOLERANCE", "MAX_NODES"]

#: Least-loaded: nodes within 10% (plus one request/s) of the least load count as tied.
LOAD_TIE_TOLERANCE = 0.10
_TOP = 255


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    variants: tuple[tuple[OperationsNode, ...], ...]
    weights: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.variants) != len(self.weights):
            raise ValueError("one weight per variant")

    def __bool__(self) -> bool:
        return bool(self.variants)

    def pick(self, rng: random.Random) -> tuple[OperationsNode, ...]:
        """A variant chosen at random by weight (uniformly when every weight is 0)."""
        if len(self.variants) == 1:
            return self.variants[0]
        if not any(self.weights):
            return rng.choice(self.variants)
        return rng.choices(self.variants, weights=self.weights)[0]

    def pick_index(self, rng: random.Random) -> int:
        if len(self.variants) == 1:
            return 0
        indexes = range(len(self.variants))
        if not any(self.weights):
            return rng.choice(indexes)
        return rng.choices(indexes, weights=self.weights)[0]


def _wire(node: Node, priority: int) -> OperationsNode:
    return OperationsNode(
        priority=max(0, priority),
        weight=node.weight,
        access_point_id=node.access_point_id,
        host=node.host,
        port=node.port,
        kex_public_key=node.kex_public_key,
    )


def _each_tied_node_first(
    ordered: Sequence[tuple[Node, int]], tied: int
) -> tuple[tuple[OperationsNode, ...], ...]:
    """One variant per node of the top ``tied`` nodes, that node listed first."""
    wire = [_wire(node, priority) for node, priority in ordered]
    return tuple((wire[i], *wire[:i], *wire[i + 1 :]) for i in range(tied))


def _static(nodes: Sequence[Node], app_token: str) -> Plan:
    """The priorities the nodes were started with; ties shared evenly."""
    ordered = sorted(nodes, key=lambda n: (-n.priority, n.node_id))
    top = ordered[0].priority
    tied = sum(1 for n in ordered if n.priority == top)
    variants = _each_tied_node_first([(n, n.priority) for n in ordered], tied)
    return Plan(variants, (1,) * tied)


def _least_loaded(nodes: Sequence[Node], app_token: str) -> Plan:
    """The node with the least load per unit of weight first; near-equal loads tie."""

    def per_weight(node: Node) -> float:
        return node.load / node.weight if node.weight else math.inf

    ordered = sorted(nodes, key=lambda n: (per_weight(n), n.node_id))
    best = per_weight(ordered[0])
    limit = best * (1 + LOAD_TIE_TOLERANCE) + 1 / max(1, ordered[0].weight)
    tied = sum(1 for n in ordered if per_weight(n) <= limit) if math.isfinite(best) else 1
    ranked = [(n, _TOP if i < tied else _TOP - 1 - (i - tied)) for i, n in enumerate(ordered)]
    return Plan(_each_tied_node_first(ranked, tied), (1,) * tied)


def _weighted_random(nodes: Sequence[Node], app_token: str) -> Plan:
    """Each node on top with probability weight / total weight; the rest by weight."""
    by_weight = sorted(nodes, key=lambda n: (-n.weight, n.node_id))
    variants = []
    for first in by_weight:
        rest = [n for n in by_weight if n is not first]
        ordered = [_wire(first, _TOP)] + [_wire(n, _TOP - 1 - i) for i, n in enumerate(rest)]
        variants.append(tuple(ordered))
    return Plan(tuple(variants), tuple(n.weight for n in by_weight))


def _affinity_score(app_token: str, node: Node) -> float:
    """Weighted rendezvous hashing: -weight / ln(u), u uniform in (0, 1) from SHA-256."""
    digest = hashlib.sha256(f"{app_token}\x00{node.node_id}".encode()).digest()
    u = (int.from_bytes(digest[:8], "big") + 0.5) / 2**64
    return -node.weight / math.log(u) if node.weight else 0.0


def _hash_affinity(nodes: Sequence[Node], app_token: str) -> Plan:
    """A stable order per application token; adding or losing a node moves few apps."""
    ordered = sorted(nodes, key=lambda n: (-_affinity_score(app_token, n), n.node_id))
    return Plan((tuple(_wire(n, _TOP - i) for i, n in enumerate(ordered)),), (1,))


_STRATEGIES: dict[Balancing, Callable[[Sequence[Node], str], Plan]] = {
    Balancing.STATIC: _static,
    Balancing.LEAST_LOADED: _least_loaded,
    Balancing.WEIGHTED_RANDOM: _weighted_random,
    Balancing.HASH_AFFINITY: _hash_affinity,
}

_EMPTY = Plan((), ())
#: A resolution answer lists at most this many nodes (the wire format's limit).
MAX_NODES = 255


def make_plan(strategy: Balancing, nodes: Sequence[Node], app_token: str) -> Plan:
    """The plan for ``app_token`` over the live ``nodes`` (an empty plan when none)."""
    if not nodes:
        return _EMPTY
    plan = _STRATEGIES[strategy](nodes, app_token)
    if len(nodes) <= MAX_NODES:
        return plan
    return Plan(tuple(v[:MAX_NODES] for v in plan.variants), plan.weights)
