"""A small log-linear latency histogram in the HdrHistogram style, mergeable across processes.

Values are non-negative integers (the load generator records microseconds). Below
``2 << sub_bits`` every value has its own bucket; above, each power-of-two range is split
into ``1 << sub_bits`` equal buckets, so a recorded value is known to within
``1 / (1 << sub_bits)`` of itself (0.8 % with the default 7 bits) at any magnitude, with
a few hundred buckets in use. Percentiles are reported as the highest value of the bucket
they fall in, as HdrHistogram's ``getValueAtPercentile`` does: never below the truth.

Merging adds counts bucket by bucket, so per-process histograms combine exactly; the
sparse ``to_dict`` form crosses process boundaries as plain JSON.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["Histogram"]


class Histogram:
    __slots__ = ("_counts", "count", "max", "min", "sub_bits", "total")

    def __init__(self, sub_bits: int = 7) -> None:
        if not 1 <= sub_bits <= 16:
            raise ValueError("sub_bits must be 1..16")
        self.sub_bits = sub_bits
        self._counts: dict[int, int] = {}
        self.count = 0
        self.total = 0
        self.min = 0
        self.max = 0

    # -- buckets --------------------------------------------------------------------------

    def _index(self, value: int) -> int:
        s = self.sub_bits
        if value < (2 << s):
            return value
        shift = value.bit_length() - s - 1
        return (shift << s) + (value >> shift)

    def _highest(self, index: int) -> int:
        """The largest value that lands in bucket ``index``."""
        s = self.sub_bits
        if index < (2 << s):
            return index
        shift = (index >> s) - 1
        top = index - (shift << s)
        return ((top + 1) << shift) - 1

    # -- recording ------------------------------------------------------------------------

    def record(self, value: int, count: int = 1) -> None:
        if value < 0:
            raise ValueError("a histogram records non-negative values")
        index = self._index(value)
        self._counts[index] = self._counts.get(index, 0) + count
        if self.count == 0 or value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        self.count += count
        self.total += value * count

    def merge(self, other: Histogram) -> None:
        if other.sub_bits != self.sub_bits:
            raise ValueError("only histograms of the same precision merge")
        if other.count == 0:
            return
        for index, n in other._counts.items():
            self._counts[index] = self._counts.get(index, 0) + n
        self.min = other.min if self.count == 0 else min(self.min, other.min)
        self.max = max(self.max, other.max)
        self.count += other.count
        self.total += other.total

    @classmethod
    def merged(cls, histograms: Iterable[Histogram], sub_bits: int = 7) -> Histogram:
        result = cls(sub_bits)
        for h in histograms:
            result.merge(h)
        return result

    # -- reading --------------------------------------------------------------------------

    def value_at(self, percentile: float) -> int:
        """The value at ``percentile`` (0-100): the highest value of its bucket, capped at max."""
        if self.count == 0:
            return 0
        if not 0 <= percentile <= 100:
            raise ValueError("percentile must be within 0..100")
        rank = max(1, -(-self.count * percentile // 100))  # ceil, at least the first value
        seen = 0
        for index in sorted(self._counts):
            seen += self._counts[index]
            if seen >= rank:
                return min(self._highest(index), self.max)
        return self.max

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    def summary(self, scale: float = 1e-3) -> dict[str, float]:
        """count, min, mean, p50, p90, p99, p99.9, max; values times ``scale`` (µs -> ms)."""
        return {
            "count": self.count,
            "min": self.min * scale,
            "mean": self.mean * scale,
            "p50": self.value_at(50) * scale,
            "p90": self.value_at(90) * scale,
            "p99": self.value_at(99) * scale,
            "p99.9": self.value_at(99.9) * scale,
            "max": self.max * scale,
        }

    # -- transport ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "sub_bits": self.sub_bits,
            "count": self.count,
            "total": self.total,
            "min": self.min,
            "max": self.max,
            "buckets": [[i, n] for i, n in sorted(self._counts.items())],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Histogram:
        h = cls(int(data["sub_bits"]))
        h._counts = {int(i): int(n) for i, n in data["buckets"]}
        h.count = int(data["count"])
        h.total = int(data["total"])
        h.min = int(data["min"])
        h.max = int(data["max"])
        return h
