"""The dashboard's figures: read from the very text ``/metrics`` serves.

The console does not count anything itself: it parses the Prometheus text that the
metrics render callable produces (prometheus_client's parser), so the dashboard and a
Prometheus scrape show the same counters, and whatever that callable merges (the
workers' figures, docs/operations.md) the dashboard shows merged too. A sample is taken
every ``SAMPLE_S``; the last ``HISTORY`` make the chart (ten minutes).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import itertools
from collections.abc import Callable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from servers.clock import wall_ms
from servers.tasks import cancel_and_wait

__all__ = ["Figures", "read_figures", "Sampler", "SAMPLE_S", "HISTORY"]

SAMPLE_S = 2.0
HISTORY = 300


@dataclasses.dataclass(frozen=True, slots=True)
class Figures:
    at_ms: int
    #: Registrations acknowledged, by status (NEW, EXISTING, PROFILE_UPDATED).
    registrations: dict[str, float]
    #: ERROR frames sent, by code (both services summed).
    refusals: dict[str, float]
    resolutions: float
    connections_open: dict[str, float]

    @property
    def registrations_total(self) -> float:
        return sum(self.registrations.values())

    @property
    def refusals_total(self) -> float:
        return sum(self.refusals.values())


def read_figures(text: str, at_ms: int) -> Figures:
    registrations: dict[str, float] = collections.defaultdict(float)
    refusals: dict[str, float] = collections.defaultdict(float)
    connections: dict[str, float] = collections.defaultdict(float)
    resolutions = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "kaa_registrations_total":
                registrations[sample.labels.get("status", "")] += sample.value
            elif sample.name == "kaa_errors_total":
                refusals[sample.labels.get("code", "")] += sample.value
            elif sample.name == "kaa_resolutions_total":
                resolutions += sample.value
            elif sample.name == "kaa_connections_open":
                connections[sample.labels.get("service", "")] += sample.value
    return Figures(at_ms, dict(registrations), dict(refusals), resolutions, dict(connections))


def _rate(new: float, old: float, seconds: float) -> float:
    return max(0.0, new - old) / seconds if seconds > 0 else 0.0


class Sampler:
    """Keeps the last ``HISTORY`` samples of the figures, one every ``SAMPLE_S``."""

    def __init__(self, render: Callable[[], str], sample_s: float = SAMPLE_S) -> None:
        self._render = render
        self._sample_s = sample_s
        self._samples: collections.deque[Figures] = collections.deque(maxlen=HISTORY)
        self._task: asyncio.Task[None] | None = None

    def now(self) -> Figures:
        return read_figures(self._render(), wall_ms())

    async def start(self) -> None:
        self._samples.append(self.now())
        self._task = asyncio.create_task(self._run(), name="console-sampler")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._sample_s)
            self._samples.append(self.now())

    def document(self) -> dict[str, Any]:
        """The figures now, their rates over the last sample period, and the chart."""
        current = self.now()
        samples = [*self._samples, current]
        history = []
        for old, new in itertools.pairwise(samples):
            seconds = (new.at_ms - old.at_ms) / 1000
            if seconds <= 0:
                continue
            history.append(
                {
                    "at_ms": new.at_ms,
                    "registrations_per_s": _rate(
                        new.registrations_total, old.registrations_total, seconds
                    ),
                    "refusals_per_s": _rate(new.refusals_total, old.refusals_total, seconds),
                }
            )
        last = history[-1] if history else {"registrations_per_s": 0.0, "refusals_per_s": 0.0}
        return {
            "at_ms": current.at_ms,
            "registrations": current.registrations,
            "registrations_total": current.registrations_total,
            "refusals": current.refusals,
            "refusals_total": current.refusals_total,
            "resolutions_total": current.resolutions,
            "connections_open": current.connections_open,
            "registrations_per_s": last["registrations_per_s"],
            "refusals_per_s": last["refusals_per_s"],
            "history": history,
        }
