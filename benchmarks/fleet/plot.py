"""The fleet plot: registrations/s against the number of endpoints in the store.

matplotlib (the ``bench`` extra) draws ``fleet.png``; without it a small SVG is written by
hand (``fleet.svg``), so ``--quick`` on a bare checkout still leaves a plot.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

__all__ = ["plot_fleet"]

SERIES = (
    ("new_per_s", "new registrations", "tab:blue", "#1f77b4"),
    ("reconnect_hit_per_s", "reconnects, key cached", "tab:green", "#2ca02c"),
    ("reconnect_miss_per_s", "reconnects, key-cache miss", "tab:red", "#d62728"),
)


def _series(result: dict[str, Any], backend: str, key: str) -> tuple[list[int], list[float]]:
    rows = sorted((r for r in result["sizes"] if r["backend"] == backend), key=lambda r: r["size"])
    return [r["size"] for r in rows], [r[key] for r in rows]


def plot_fleet(result: dict[str, Any], out_dir: Path) -> Path:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return _svg(result, out_dir / "fleet.svg")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for backend, style in (("sqlite", "-o"), ("postgresql", "--s")):
        for key, label, color, _ in SERIES:
            xs, ys = _series(result, backend, key)
            if xs:
                ax.plot(xs, ys, style, color=color, label=f"{label} ({backend})")
    ax.set_xscale("log")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("endpoints in the store")
    ax.set_ylabel("registrations/s (one server core)")
    ax.set_title(f"kaa-wire registrations against fleet size ({result['plan']} run)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out_dir / "fleet.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _svg(result: dict[str, Any], path: Path) -> Path:
    width, height, pad = 640, 400, 60
    rows = result["sizes"]
    sizes = [r["size"] for r in rows] or [1]
    top = max([r[k] for r in rows for k, *_ in SERIES] + [1.0]) * 1.1
    lo, hi = math.log10(min(sizes)), math.log10(max(sizes))
    span = (hi - lo) or 1.0

    def x(size: int) -> float:
        return pad + (width - 2 * pad) * (math.log10(size) - lo) / span

    def y(rate: float) -> float:
        return height - pad - (height - 2 * pad) * rate / top

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="11">',
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" '
        'stroke="black"/>',
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="black"/>',
        f'<text x="{width / 2}" y="{height - 15}" text-anchor="middle">'
        "endpoints in the store</text>",
        f'<text x="15" y="{height / 2}" transform="rotate(-90 15 {height / 2})" '
        'text-anchor="middle">registrations/s</text>',
        f'<text x="{pad - 5}" y="{pad}" text-anchor="end">{top:,.0f}</text>',
    ]
    for size in sorted(set(sizes)):
        parts.append(
            f'<text x="{x(size)}" y="{height - pad + 15}" text-anchor="middle">{size:,}</text>'
        )
    for i, (key, label, _, color) in enumerate(SERIES):
        for backend, dash in (("sqlite", ""), ("postgresql", ' stroke-dasharray="5,3"')):
            xs, ys = _series(result, backend, key)
            if not xs:
                continue
            points = " ".join(f"{x(a):.1f},{y(b):.1f}" for a, b in zip(xs, ys, strict=True))
            parts.append(f'<polyline points="{points}" fill="none" stroke="{color}"{dash}/>')
        parts.append(
            f'<text x="{width - pad}" y="{pad + 14 * i}" text-anchor="end" '
            f'fill="{color}">{label}</text>'
        )
    parts.append("</svg>")
    path.write_text("\n".join(parts) + "\n")
    return path
