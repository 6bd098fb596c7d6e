"""Prometheus metrics without a dependency: counters, gauges, histograms, text format 0.0.4.

All updates happen on the event loop thread; state owned by other threads (the store
writer) is read at scrape time through collectors.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Sequence

__all__ = ["Counter", "Gauge", "Histogram", "Registry", "Metrics", "LATENCY_BUCKETS"]

Labels = tuple[str, ...]

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


Reader = Callable[[], Iterable[tuple[Labels, float]]]


def _value_samples(
    name: str, labelnames: Labels, values: dict[Labels, float], read: Reader | None
) -> list[str]:
    items = dict(values)
    if read is not None:
        items.update(read())
    return [f"{name}{_labels(labelnames, k)} {_number(v)}" for k, v in sorted(items.items())]


class _Family:
    kind = ""

    def __init__(
        self,
        name: str,
        help_text: str,
        labelnames: Sequence[str] = (),
        read: Reader | None = None,
    ) -> None:
        self.name = name
        self.help = help_text
        self.labelnames = tuple(labelnames)
        #: Values computed at scrape time (state another thread owns).
        self.read = read

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def samples(self) -> list[str]:
        raise NotImplementedError


class Counter(_Family):
    kind = "counter"

    def __init__(
        self,
        name: str,
        help_text: str,
        labelnames: Sequence[str] = (),
        read: Reader | None = None,
    ) -> None:
        super().__init__(name, help_text, labelnames, read)
        self.values: dict[Labels, float] = {}

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        self.values[labels] = self.values.get(labels, 0.0) + amount

    def value(self, *labels: str) -> float:
        return self.values.get(labels, 0.0)

    def samples(self) -> list[str]:
        return _value_samples(self.name, self.labelnames, self.values, self.read)


class Gauge(Counter):
    kind = "gauge"

    def set(self, value: float, *labels: str) -> None:
        self.values[labels] = value


class Histogram(_Family):
    kind = "histogram"

    def __init__(
        self,
        name: str,
        help_text: str,
        labelnames: Sequence[str] = (),
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> None:
        super().__init__(name, help_text, labelnames)
        self.buckets = tuple(sorted(buckets))
        # per label set: [count per bucket (not cumulative) + overflow, sum]
        self._series: dict[Labels, tuple[list[int], list[float]]] = {}

    def observe(self, value: float, *labels: str) -> None:
        series = self._series.get(labels)
        if series is None:
            series = self._series[labels] = ([0] * (len(self.buckets) + 1), [0.0])
        series[0][bisect.bisect_left(self.buckets, value)] += 1
        series[1][0] += value

    def count(self, *labels: str) -> int:
        series = self._series.get(labels)
        return sum(series[0]) if series else 0

    def samples(self) -> list[str]:
        lines = []
        for labels, (counts, total) in sorted(self._series.items()):
            running = 0
            for bound, count in zip((*self.buckets, math.inf), counts, strict=True):
                running += count
                le = f'le="{_number(bound)}"'
                lines.append(f"{self.name}_bucket{_labels(self.labelnames, labels, le)} {running}")
            lines.append(f"{self.name}_sum{_labels(self.labelnames, labels)} {total[0]!r}")
            lines.append(f"{self.name}_count{_labels(self.labelnames, labels)} {running}")
        return lines


class Registry:
    def __init__(self) -> None:
        self._families: list[_Family] = []

    def add(self, family: _Family) -> None:
        if any(f.name == family.name for f in self._families):
            raise ValueError(f"metric {family.name} is already registered")
        self._families.append(family)

    def render(self) -> str:
        lines: list[str] = []
        for family in self._families:
            lines.extend(family.header())
            lines.extend(family.samples())
        return "\n".join(lines) + "\n"


class Metrics:
    """Every metric the servers export (docs/operations.md lists them)."""

    def __init__(self) -> None:
        self.registry = Registry()
        self.connections = Counter(
            "kaa_connections_total", "TCP connections accepted", ("service",)
        )
        self.connections_open = Gauge(
            "kaa_connections_open", "TCP connections open now", ("service",)
        )
        self.resolutions = Counter(
            "kaa_resolutions_total",
            "Signed resolution answers sent, by signature mode",
            ("mode",),
        )
        self.registrations = Counter(
            "kaa_registrations_total", "Registrations acknowledged, by status", ("status",)
        )
        self.errors = Counter(
            "kaa_errors_total", "ERROR frames sent, by service and code", ("service", "code")
        )
        self.latency = Histogram(
            "kaa_request_duration_seconds",
            "From a whole request received to its answer written",
            ("service",),
        )
        self.signatures = Counter(
            "kaa_signatures_total", "RSA signatures made by the Bootstrap", ("mode",)
        )
        for family in (
            self.connections,
            self.connections_open,
            self.resolutions,
            self.registrations,
            self.errors,
            self.latency,
            self.signatures,
        ):
            self.registry.add(family)

    def add(self, family: _Family) -> None:
        self.registry.add(family)

    def add_stats(self, prefix: str, what: str, read: Callable[[], dict[str, float]]) -> None:
        """One family per key of ``read()`` (read at each scrape): ``<prefix>_<key>``.

        Keys ending in ``_total`` are counters, the others gauges.
        """
        for key in read():
            kind = Counter if key.endswith("_total") else Gauge

            def sample(key: str = key) -> list[tuple[Labels, float]]:
                return [((), read().get(key, 0.0))]

            help_text = f"{what}: {key.removesuffix('_total').replace('_', ' ')}"
            self.registry.add(kind(f"{prefix}_{key}", help_text, read=sample))

    def render(self) -> str:
        return self.registry.render()
