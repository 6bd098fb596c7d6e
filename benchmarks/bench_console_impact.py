"""What the admin console costs registrations: the same load with and without clients
hammering the admin API of the same process.

    python -m benchmarks.bench_console_impact                # 3 rounds of off / on
    python -m benchmarks.bench_console_impact --rounds 5 --seconds 10 --hammers 4

One ``python -m servers`` (the services on one uvloop loop; the admin port in a child
process of its own, servers/admin_process.py, or on the services' loop before that).
Each round runs the register load generator (``benchmarks.loadgen register``,
closed loop, reconnecting endpoints) twice: once alone, once while ``--hammers`` threads
of this process ask ``GET /api/v1/endpoints?limit=50`` and ``GET /api/v1/dashboard`` back
to back with an API key (far more than people at a console: the dashboard polls once
every 2 s). It prints registrations per second of each run, their medians, the ratio, and
the API requests per second served meanwhile, and the CPU per registration of the
services' process alone and of the server as a whole (the services and any child process
of theirs: the admin process), from /proc. Figures only: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.environment import child_environment
from benchmarks.loadgen import cpu

REPO = Path(__file__).resolve().parents[1]


def _python(*args: str, timeout: float = 600, check: bool = True) -> str:
    """Run ``python ARGS`` in a session of its own: on a timeout the whole group is killed
    (the load generator's worker processes too, which would otherwise go on loading the
    machine)."""
    proc = subprocess.Popen(
        [sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=child_environment(REPO), start_new_session=True,
    )  # fmt: skip
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    if check and proc.returncode != 0:
        raise RuntimeError(f"{args} failed:\n{stderr[-2000:]}")
    return stdout


class Hammer:
    """``count`` threads asking the admin API as fast as it answers, until stopped."""

    def __init__(self, url: str, key: str, count: int) -> None:
        self.url, self.key, self.count = url, key, count
        self.done = 0
        self.failed = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(count)]

    def _run(self) -> None:
        paths = ("/api/v1/endpoints?limit=50", "/api/v1/dashboard")
        i = 0
        while not self._stop.is_set():
            request = urllib.request.Request(
                self.url + paths[i % 2], headers={"Authorization": f"Bearer {self.key}"}
            )
            i += 1
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:
                    answer.read()
                self.done += 1
            except OSError:
                self.failed += 1

    def __enter__(self) -> Hammer:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (the admin process of a ``python -m servers``)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU seconds so far of the process ``pid`` alone, and of it with its children."""
    own = cpu.sample(pid).seconds
    children = 0.0
    for child in _children(pid):
        try:
            children += cpu.sample(child).seconds
        except OSError:
            continue  # it ended meanwhile
    return own, own + children


class Run:
    """One load run with the server's CPU around it: µs per registration."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def __call__(self, sdk: Path, keys: Path, seconds: float, count: int, out: Path
                 ) -> dict[str, Any]:  # fmt: skip
        own0, all0 = cpu_seconds(self.pid)
        result = load(sdk, keys, seconds, count, out)
        own1, all1 = cpu_seconds(self.pid)
        ok = max(1, result["ok"])
        result["services_us"] = 1e6 * (own1 - own0) / ok
        result["server_us"] = 1e6 * (all1 - all0) / ok
        return result


def load(sdk: Path, keys: Path, seconds: float, count: int, out: Path) -> dict[str, Any]:
    """One closed-loop run: ``count`` reconnects (built and signed before the timed
    window) or ``seconds``, whichever ends first."""
    _python(
        "-m", "benchmarks.loadgen", "register", "--sdk", str(sdk), "--concurrency", "16",
        "--seconds", str(seconds), "--count", str(count), "--first-share", "0",
        "--reconnect-pool", "200", "--keycache", str(keys), "--json", str(out),
        check=False,  # (it exits 1 when --seconds ends the run before --count is sent)
    )  # fmt: skip
    result: dict[str, Any] = json.loads(out.read_text())
    if result["error_count"]:
        raise RuntimeError(f"{result['error_count']} registrations failed")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--hammers", type=int, default=4)
    parser.add_argument("--count", type=int, default=4000, help="registrations per run at most")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kaa-bench-impact-") as tmp:
        data, keys = Path(tmp) / "data", Path(tmp) / "keys"
        _python("-m", "benchmarks.loadgen", "keys", "--count", "200", "--keycache", str(keys))
        server = subprocess.Popen(
            [sys.executable, "-m", "servers", "--data", str(data), "--host", "127.0.0.1",
             "--bootstrap-port", "0", "--operations-port", "0", "--admin-port", "0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=child_environment(REPO),
        )  # fmt: skip
        try:
            while not (data / "listeners.json").exists():
                if server.poll() is not None:
                    raise RuntimeError("python -m servers did not start")
                time.sleep(0.1)
            listeners = json.loads((data / "listeners.json").read_text())
            url = f"http://127.0.0.1:{listeners['admin_port']}"
            key = _python("-m", "servers.control", "--data", str(data), "admin", "key", "bench",
                          "--role", "read-only").strip()  # fmt: skip
            alone: list[float] = []
            hammered: list[float] = []
            api_rates: list[float] = []
            #: µs of CPU per registration: [services alone, server alone, services
            #: hammered, server hammered] per round.
            costs: list[tuple[float, float, float, float]] = []
            run = Run(server.pid)
            sdk, out = data / "sdk.json", Path(tmp) / "load.json"
            for round_ in range(args.rounds):
                quiet = run(sdk, keys, args.seconds, args.count, out)
                alone.append(quiet["per_s"])
                with Hammer(url, key, args.hammers) as hammer:
                    started = time.monotonic()
                    result = run(sdk, keys, args.seconds, args.count, out)
                    api_rates.append(hammer.done / (time.monotonic() - started))
                hammered.append(result["per_s"])
                costs.append((quiet["services_us"], quiet["server_us"],
                              result["services_us"], result["server_us"]))  # fmt: skip
                print(f"round {round_ + 1}: alone {alone[-1]:.0f}/s, with the API hammered "
                      f"{hammered[-1]:.0f}/s ({api_rates[-1]:.0f} API requests/s, "
                      f"{hammer.failed} refused or failed); CPU per registration: "
                      f"services {costs[-1][0]:.0f} µs alone, {costs[-1][2]:.0f} µs hammered; "
                      f"server {costs[-1][1]:.0f} µs alone, {costs[-1][3]:.0f} µs hammered",
                      flush=True)  # fmt: skip
        finally:
            server.terminate()
            server.wait(60)
    a, h = statistics.median(alone), statistics.median(hammered)
    print(f"registrations/s, median of {args.rounds}: alone {a:.0f} (min {min(alone):.0f}, "
          f"max {max(alone):.0f}); with {args.hammers} API clients {h:.0f} (min "
          f"{min(hammered):.0f}, max {max(hammered):.0f}); ratio {h / a:.2f}; "
          f"API {statistics.median(api_rates):.0f} requests/s")  # fmt: skip
    med = [statistics.median(c[i] for c in costs) for i in range(4)]
    print(f"CPU µs per registration, median: services alone {med[0]:.0f}, hammered "
          f"{med[2]:.0f} (x{med[2] / med[0]:.2f}); server (services + admin process) alone "
          f"{med[1]:.0f}, hammered {med[3]:.0f} (x{med[3] / med[1]:.2f})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
