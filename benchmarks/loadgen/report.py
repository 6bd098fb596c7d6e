"""Text output: one load point, and the summary table of a suite run."""

from __future__ import annotations

from typing import Any

__all__ = ["format_point", "format_summary"]


def _pct(value: float | None) -> str:
    return "   -  " if value is None else f"{100 * value:5.1f}%"


def format_point(r: dict[str, Any]) -> str:
    what = {"operations": "registrations", "bootstrap": "resolutions"}.get(
        r["service"], "connections (floor server)"
    )
    how = (
        f"closed loop, concurrency {r['concurrency']}"
        if r["mode"] == "closed"
        else f"open loop at {r['target_rate_per_s']:.0f}/s"
    )
    lat = r["latency_ms"]
    lines = [
        f"{what}: {how}",
        f"  {r['ok']} ok in {r['window_s']:.3f} s = {r['per_s']:.0f}/s; "
        f"errors {r['error_count']}, unsent {r['unsent']}",
        f"  latency ms: p50 {lat['p50']:.2f}  p99 {lat['p99']:.2f}  p99.9 {lat['p99.9']:.2f}  "
        f"max {lat['max']:.2f}",
    ]
    for kind, summary in sorted(r["latency_ms_by_kind"].items()):
        if len(r["latency_ms_by_kind"]) > 1:
            lines.append(
                f"    {kind:<9} {r['ok_by_kind'][kind]:6d} ok {r['per_s_by_kind'][kind]:7.0f}/s"
                f"  p50 {summary['p50']:.2f}  p99 {summary['p99']:.2f}"
                f"  p99.9 {summary['p99.9']:.2f}"
            )
    if r["errors"]:
        lines.append(f"  errors: {r['errors']}")
    gen = r["generator"]
    server = r.get("server_cpu")
    lines.append(
        f"  CPU: server {_pct(server['share_of_one_core'] if server else None)} of a core, "
        f"generator {_pct(gen['share_of_one_core'])} ({gen['processes']} processes: "
        + ", ".join(_pct(s).strip() for s in gen["per_process_share"])
        + ")"
    )
    busy = r.get("cores_busy")
    if busy:
        lines.append(
            "  cores busy (any process): "
            + ", ".join(f"{name} {_pct(share).strip()}" for name, share in busy.items())
        )
    if server and server.get("threads_cpu_s"):
        threads = ", ".join(f"{k} {v:.2f}s" for k, v in server["threads_cpu_s"].items())
        lines.append(f"  server threads: {threads}")
    if "start_lag_ms" in gen:
        lag = gen["start_lag_ms"]
        lines.append(
            f"  send lag behind schedule ms: p50 {lag['p50']:.2f} p99 {lag['p99']:.2f} "
            f"max {lag['max']:.2f}"
        )
    lines.append(f"  verdict: {r['verdict']}")
    return "\n".join(lines)


def _fmt(stat: dict[str, Any], kind: str) -> str:
    m, lo, hi = stat["median"], stat["min"], stat["max"]
    if m is None:
        return "-"
    if kind == "pct":
        return f"{100 * m:.1f}% ({100 * lo:.1f}-{100 * hi:.1f})"
    if kind == "ms":
        return f"{m:.2f} ({lo:.2f}-{hi:.2f})"
    if kind == "us":
        return f"{m:.0f} ({lo:.0f}-{hi:.0f})"
    return f"{m:,.0f} ({lo:,.0f}-{hi:,.0f})"


_ROWS = [
    ("registrations/s, closed-loop peak", "registration_per_s", "n"),
    ("  first-time share/s", "first_time_per_s", "n"),
    ("  reconnect share/s", "reconnect_per_s", "n"),
    ("  at concurrency", "registration_peak_concurrency", "n"),
    ("crypto floor/s (same core, same run)", "crypto_floor_per_s", "n"),
    ("registration ratio (target >= 40%)", "registration_ratio", "pct"),
    ("  per server CPU second (steady)", "registration_ratio_cpu", "pct"),
    ("connection floor, server CPU us", "connection_floor_us", "us"),
    ("ceiling/s: 1 / (crypto + connection)", "registration_ceiling_per_s", "n"),
    ("registrations / ceiling", "registration_ratio_to_ceiling", "pct"),
    ("server CPU us per registration", "server_cpu_us_per_registration", "us"),
    ("server CPU at peak (1 core = 100%)", "registration_server_cpu_share", "pct"),
    ("  other processes on the server core", "registration_server_core_other_processes", "pct"),
    ("generator CPU at peak", "registration_generator_cpu_share", "pct"),
    ("open loop at 80% of peak, /s", "open_loop_achieved_per_s", "n"),
    ("  p50 ms", "registration_p50_ms", "ms"),
    ("  p99 ms (target < 20)", "registration_p99_ms", "ms"),
    ("  p99.9 ms", "registration_p999_ms", "ms"),
    ("  first-time p99 ms", "first_time_p99_ms", "ms"),
    ("  reconnect p99 ms", "reconnect_p99_ms", "ms"),
    ("  generator send lag p99 ms", "open_loop_send_lag_p99_ms", "ms"),
    ("resolutions/s, closed-loop peak", "resolution_per_s", "n"),
    ("sign floor/s (same core, same run)", "sign_floor_per_s", "n"),
    ("resolution ratio (target >= 85%)", "resolution_ratio", "pct"),
    ("  per server CPU second (steady)", "resolution_ratio_cpu", "pct"),
    ("CPU steal during the peaks", "steal", "pct"),
    ("server CPU us per resolution", "server_cpu_us_per_resolution", "us"),
    ("server CPU at resolution peak", "resolution_server_cpu_share", "pct"),
    ("  other processes on the server core", "resolution_server_core_other_processes", "pct"),
    ("errors (all loads)", "errors", "n"),
]


def format_summary(result: dict[str, Any]) -> str:
    impls = list(result["implementations"])
    runs = result["runs"]
    layout = (
        f"server on cpu {result['server_cpus']}, generator ({result['generator_processes']} "
        f"processes) on cpu {result['generator_cpus']}"
        if result["server_cpus"]
        else "server and generator unpinned (fewer than 2 cores)"
    )
    m = result["machine"]
    lines = [
        f"kaa-wire load benchmark ({result['plan']['name']}): median (min-max) of {runs} "
        f"run{'s' if runs > 1 else ''}",
        f"{m['nproc']} x {m['cpu_model']}; Python {m['python']}; {m['openssl']}; {layout}",
        f"load average before {result['load_avg_before'][0]:.2f}, "
        f"after {result['load_avg_after'][0]:.2f}",
        "",
        f"{'':<40}" + "".join(f"{name:<30}" for name in impls),
    ]
    for label, key, kind in _ROWS:
        cells = [_fmt(result["implementations"][i]["stats"][key], kind) for i in impls]
        lines.append(f"{label:<40}" + "".join(f"{c:<30}" for c in cells))
    lines.append("")
    for target in result["targets"].values():
        verdicts = ", ".join(
            f"{impl} {'met' if target[impl]['met'] else 'MISSED'}" for impl in impls
        )
        lines.append(f"target: {target['description']}: {verdicts}")
    for impl in impls:
        parts = []
        for load, found in result["implementations"][impl]["bottleneck_at_peak"].items():
            counts = {c: found.count(c) for c in dict.fromkeys(found)}
            parts.append(f"{load}s " + ", ".join(f"{c} x{n}" for c, n in counts.items()))
        lines.append(f"bottleneck at peak, per run ({impl}): {'; '.join(parts)}")
    lines.append(
        "  (server: its core was saturated by it; latency: nothing saturated; contended: other "
        "processes took part of the server core; generator: the figure measured the generator)"
    )
    if any(
        "generator"
        in impl["bottleneck_at_peak"]["registration"] + impl["bottleneck_at_peak"]["resolution"]
        for impl in result["implementations"].values()
    ):
        lines.append(
            "WARNING: the generator was saturated in some runs: those figures measured the "
            "generator, not the server."
        )
    return "\n".join(lines)
