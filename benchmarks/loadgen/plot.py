"""The PNG of a suite run: throughput against concurrency, and the latency percentiles.

Needs matplotlib (``pip install -e .[bench]``).
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from benchmarks.loadgen.hdr import Histogram

__all__ = ["plot_results"]

_COLORS = {"ext": "tab:blue", "py": "tab:orange"}
_LABELS = {"ext": "extension", "py": "pure Python"}


def _sweep(
    result: dict[str, Any], impl: str, key: str
) -> tuple[list[int], list[float], list[float], list[float]]:
    by_conc: dict[int, list[float]] = {}
    for run in result["run_details"]:
        for point in run[impl][key]:
            by_conc.setdefault(point["concurrency"], []).append(point["per_s"])
    xs = sorted(by_conc)
    med = [statistics.median(by_conc[x]) for x in xs]
    lo = [m - min(by_conc[x]) for x, m in zip(xs, med, strict=True)]
    hi = [max(by_conc[x]) - m for x, m in zip(xs, med, strict=True)]
    return xs, med, lo, hi


def plot_results(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    impls = list(result["implementations"])
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.2))
    m = result["machine"]
    fig.suptitle(
        f"kaa-wire load benchmark: median of {result['runs']} run(s), min-max bars; "
        f"{m['nproc']} x {m['cpu_model']}, Python {m['python']}, "
        f"server on {result['server_cores']} core",
        fontsize=10,
    )
    for ax, key, floor_key, factor, title, target_text in (
        (axes[0], "registration_sweep", "crypto_floor_per_s", 0.40,
         "Registrations/s (new TCP connection each, 50 % first-time)",
         "40 % of crypto floor"),
        (axes[1], "resolution_sweep", "sign_floor_per_s", 0.85,
         "Resolutions/s (per-request RSA-2048 signature)", "85 % of sign floor"),
    ):  # fmt: skip
        for impl in impls:
            xs, med, lo, hi = _sweep(result, impl, key)
            ax.errorbar(
                xs, med, yerr=[lo, hi], marker="o", capsize=3, color=_COLORS.get(impl),
                label=_LABELS.get(impl, impl),
            )  # fmt: skip
        floor = result["implementations"][impls[0]][floor_key] * result["server_cores"]
        ax.axhline(floor * factor, linestyle="--", color="grey", label=target_text)
        ceiling = result["implementations"][impls[0]].get("registration_ceiling_per_s")
        if key == "registration_sweep" and ceiling:
            ax.axhline(
                ceiling, linestyle=":", color="black",
                label="ceiling: 1 / (crypto + connection floor)",
            )  # fmt: skip
        ax.set_xscale("log", base=2)
        levels = sorted({x for impl in impls for x in _sweep(result, impl, key)[0]})
        ax.set_xticks(levels)
        ax.set_xticklabels([str(x) for x in levels])
        ax.minorticks_off()
        ax.set_xlabel("concurrency (closed loop)")
        ax.set_ylabel("operations/s")
        ax.set_title(title, fontsize=10)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    ax = axes[2]
    for impl in impls:
        hists = [
            Histogram.from_dict(run[impl]["registration_open_loop"]["histogram_us"])
            for run in result["run_details"]
        ]
        merged = Histogram.merged(hists)
        pcts = [50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.99]
        where = [1 / (1 - p / 100) for p in pcts]
        values = [merged.value_at(p) / 1000 for p in pcts]
        rate = result["implementations"][impl]["open_loop_rate_per_s"]
        ax.plot(
            where, values, marker="o", color=_COLORS.get(impl),
            label=f"{_LABELS.get(impl, impl)} at {rate:,.0f}/s",
        )  # fmt: skip
    ax.axhline(20, linestyle="--", color="grey", label="p99 target 20 ms")
    ax.set_xscale("log")
    ax.set_xticks([1 / (1 - p / 100) for p in (50, 90, 99, 99.9, 99.99)])
    ax.set_xticklabels(["p50", "p90", "p99", "p99.9", "p99.99"])
    ax.set_ylabel("latency, ms (from scheduled send)")
    ax.set_title("Registration latency, open loop at 80 % of peak (all runs merged)", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
