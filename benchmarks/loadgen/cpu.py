"""CPU time of processes and threads from /proc (Linux), for "who was the bottleneck".

``utime + stime`` of ``/proc/PID/stat`` counts every thread of the process. The per-thread
figures of ``/proc/PID/task/TID/stat`` are split into the main thread (the servers' event
loop) and all the others (store writer and readers, signing and verify pools): Python
does not name its threads for the kernel, so no finer split is possible from outside.

A process using about one core's worth of CPU over a window (``share >= SATURATED``) was
saturated: if that is the generator, the figure measured the generator, not the server.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

__all__ = [
    "CLOCK_TICKS",
    "SATURATED",
    "CpuSample",
    "core_busy",
    "core_times",
    "machine_times",
    "pinned",
    "run_time_s",
    "sample",
    "steal_share",
    "thread_times",
    "usage",
]

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def pinned(command: list[str], cpus: list[int] | None) -> list[str]:
    """``command`` run under ``taskset`` on ``cpus``; unchanged when there is nothing to pin."""
    return ["taskset", "-c", ",".join(map(str, cpus)), *command] if cpus else command


#: A process at or above this share of one core over a window counts as saturated.
SATURATED = 0.90


def _stat_times(path: Path) -> tuple[str, float]:
    """(comm, utime + stime in seconds) from a stat file."""
    text = path.read_text()
    comm = text[text.index("(") + 1 : text.rindex(")")]
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return comm, (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@dataclasses.dataclass(frozen=True, slots=True)
class CpuSample:
    pid: int
    at: float  # time.monotonic()
    seconds: float  # CPU seconds of the whole process so far
    threads: dict[str, float]  # CPU seconds: "main" thread, "other" threads


def thread_times(pid: int) -> dict[str, float]:
    """CPU seconds of the main thread and of all other live threads of ``pid``."""
    totals = {"main": 0.0, "other": 0.0}
    task_dir = Path(f"/proc/{pid}/task")
    try:
        tids = os.listdir(task_dir)
    except OSError:
        return totals
    for tid in tids:
        try:
            _, seconds = _stat_times(task_dir / tid / "stat")
        except (OSError, ValueError):
            continue  # the thread ended meanwhile
        totals["main" if int(tid) == pid else "other"] += seconds
    return totals


def sample(pid: int, threads: bool = False) -> CpuSample:
    _, seconds = _stat_times(Path(f"/proc/{pid}/stat"))
    return CpuSample(pid, time.monotonic(), seconds, thread_times(pid) if threads else {})


def run_time_s(pid: int) -> float:
    """CPU seconds of every live thread of ``pid`` from the scheduler's own clock
    (``/proc/PID/task/TID/schedstat``, nanoseconds), for windows too short for the 10 ms
    ticks of ``stat``. A thread that ended meanwhile drops out: use it on processes whose
    threads live as long as they do (the servers' are)."""
    total = 0
    task_dir = Path(f"/proc/{pid}/task")
    for tid in os.listdir(task_dir):
        try:
            total += int((task_dir / tid / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total / 1e9


def usage(before: CpuSample, after: CpuSample) -> dict[str, object]:
    """CPU seconds and share of one core between two samples, with a per-thread split."""
    wall = max(after.at - before.at, 1e-9)
    cpu = after.seconds - before.seconds
    result: dict[str, object] = {
        "wall_s": round(wall, 4),
        "cpu_s": round(cpu, 4),
        "share_of_one_core": round(cpu / wall, 4),
    }
    if after.threads:
        result["threads_cpu_s"] = {
            name: round(seconds - before.threads.get(name, 0.0), 4)
            for name, seconds in sorted(after.threads.items())
            if seconds - before.threads.get(name, 0.0) > 0
        }
    return result


def core_times() -> dict[int, tuple[float, float]]:
    """(busy, total) jiffies of every core so far, from /proc/stat."""
    out: dict[int, tuple[float, float]] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if not name.startswith("cpu") or name == "cpu":
            continue
        numbers = [float(v) for v in values]
        idle = numbers[3] + (numbers[4] if len(numbers) > 4 else 0.0)  # idle + iowait
        out[int(name[3:])] = (sum(numbers[:8]) - idle, sum(numbers[:8]))
    return out


def core_busy(
    before: dict[int, tuple[float, float]], after: dict[int, tuple[float, float]], cores: list[int]
) -> float:
    """Share of the time ``cores`` were busy (with anything) between two readings."""
    busy = sum(after[c][0] - before[c][0] for c in cores if c in after and c in before)
    total = sum(after[c][1] - before[c][1] for c in cores if c in after and c in before)
    return busy / total if total > 0 else 0.0


def machine_times() -> tuple[float, float]:
    """(steal, total) jiffies of the whole machine so far (the ``cpu`` line of /proc/stat)."""
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name == "cpu":
            numbers = [float(v) for v in values]
            steal = numbers[7] if len(numbers) > 7 else 0.0
            return steal, sum(numbers[:8])
    return 0.0, 0.0


def steal_share(before: tuple[float, float], after: tuple[float, float]) -> float:
    """Share of all cores' time the hypervisor gave to other guests between two readings."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total > 0 else 0.0
