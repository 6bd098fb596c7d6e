"""Prometheus metrics without a dependency: counters, gauges, histograms, text format 0.0.4.

All updates happen on the event loop thread; state owned by other threads (the store
writer) is read at scrape time through collectors.

The services publish their figures (:class:`WorkerGroup`'s ``publish``) for the admin
process (servers/admin_process.py), which renders them merged (``render``: one view of
every ``--workers`` process). Neither knows anything of HTTP.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import json
import math
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

__all__ = [
    "Counter",
    "Gauge",
    "Histogram",
    "SampledHistogram",
    "HistogramSnapshot",
    "Registry",
    "Metrics",
    "WorkerGroup",
    "remove_stale_groups",
    "Publication",
    "stats_families",
    "process_figures",
    "LATENCY_BUCKETS",
    "MAX_APPLICATION_LABELS",
]

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


@dataclasses.dataclass(frozen=True, slots=True)
class HistogramSnapshot:
    """A histogram another thread keeps: ``counts`` per bucket of ``bounds`` (not
    cumulative) plus one for +Inf, and the sum of the observed values."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    total: float


class SampledHistogram(_Family):
    """A histogram read at scrape time (state another thread owns: the store writer's
    commit durations)."""

    kind = "histogram"

    def __init__(
        self, name: str, help_text: str, read: Callable[[], HistogramSnapshot | None]
    ) -> None:
        super().__init__(name, help_text)
        self._read_snapshot = read

    def samples(self) -> list[str]:
        snapshot = self._read_snapshot()
        if snapshot is None:
            return []
        lines, running = [], 0
        for bound, count in zip((*snapshot.bounds, math.inf), snapshot.counts, strict=True):
            running += count
            lines.append(f'{self.name}_bucket{{le="{_number(bound)}"}} {running}')
        lines.append(f"{self.name}_sum {snapshot.total!r}")
        lines.append(f"{self.name}_count {running}")
        return lines


class Registry:
    def __init__(self) -> None:
        self._families: list[_Family] = []

    def add(self, family: _Family) -> None:
        if any(f.name == family.name for f in self._families):
            raise ValueError(f"metric {family.name} is already registered")
        self._families.append(family)

    def families(self) -> list[tuple[str, str, str, list[str]]]:
        """(name, kind, help, sample lines) of each family, in registration order."""
        return [(f.name, f.kind, f.help, f.samples()) for f in self._families]

    def render(self) -> str:
        return _render(self.families())


def _render(families: Iterable[tuple[str, str, str, list[str]]]) -> str:
    lines: list[str] = []
    for name, kind, help_text, samples in families:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(samples)
    return "\n".join(lines) + "\n"


#: At most this many applications get a label of their own in the per-application
#: counters; registrations and resolutions of any further ones count under "other". An
#: operator creates applications (devices cannot), so this bounds a mistake, not an attack.
MAX_APPLICATION_LABELS = 100
OTHER_APPLICATIONS = "other"


class _BoundedLabel:
    """Label values, the first ``limit`` distinct ones as they are, any later one as
    ``other``: a family's series count stays bounded whatever the values."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(self._seen) >= self._limit:
            return OTHER_APPLICATIONS
        self._seen.add(value)
        return value


def _package_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("kaa-wire")
    except metadata.PackageNotFoundError:
        return "unknown"


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _process_figures() -> dict[str, float]:
    """CPU seconds, resident memory, open and maximum descriptors of this process, read
    from /proc (Linux; empty elsewhere). The names and meanings are those of the Prometheus
    client libraries' process collector, which reads the same files."""
    try:
        stat = Path("/proc/self/stat").read_text()
        fds = len(os.listdir("/proc/self/fd"))
    except OSError:
        return {}
    # Fields after the command name (which may hold spaces), from field 3 (state) on.
    fields = stat.rsplit(")", 1)[1].split()
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return {
        "cpu_seconds_total": (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS,
        "resident_memory_bytes": int(fields[21]) * _PAGE_SIZE,
        "open_fds": fds,
        "max_fds": soft,
        "start_time_seconds": _boot_time() + int(fields[19]) / _CLOCK_TICKS,
    }


def _boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    return 0.0


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
        self.application = _BoundedLabel(MAX_APPLICATION_LABELS)
        self.application_registrations = Counter(
            "kaa_application_registrations_total",
            f"Registrations acknowledged, by application name (the first "
            f"{MAX_APPLICATION_LABELS}; any others as {OTHER_APPLICATIONS})",
            ("application",),
        )
        self.application_resolutions = Counter(
            "kaa_application_resolutions_total",
            f"Resolution answers sent, by application name (the first "
            f"{MAX_APPLICATION_LABELS}; any others as {OTHER_APPLICATIONS})",
            ("application",),
        )
        self.started = time.time()
        build = (_package_version(), platform.python_version())
        self.build_info = Gauge(
            "kaa_build_info",
            "Always 1: the kaa-wire version, Python version and hot-path implementation",
            ("version", "python", "implementation"),
            read=lambda: [((*build, _implementation()), 1.0)],
        )
        self.uptime = Gauge(
            "kaa_uptime_seconds", "Seconds since this process started serving",
            read=lambda: [((), time.time() - self.started)],
        )  # fmt: skip
        for family in (
            self.connections,
            self.connections_open,
            self.resolutions,
            self.registrations,
            self.errors,
            self.latency,
            self.signatures,
            self.application_registrations,
            self.application_resolutions,
            self.build_info,
            self.uptime,
        ):
            self.registry.add(family)
        self._add_process_metrics()

    def _add_process_metrics(self) -> None:
        """``process_*`` (Prometheus's standard names): CPU, memory, descriptors, start."""
        helps = {
            "cpu_seconds_total": "User and system CPU time spent, in seconds",
            "resident_memory_bytes": "Resident memory size, in bytes",
            "open_fds": "Open file descriptors",
            "max_fds": "Maximum open file descriptors (soft RLIMIT_NOFILE)",
            "start_time_seconds": "Start time of the process, in seconds since the epoch",
        }
        if not _process_figures():
            return  # no /proc: not Linux
        for key, help_text in helps.items():
            kind = Counter if key.endswith("_total") else Gauge

            def sample(key: str = key) -> list[tuple[Labels, float]]:
                return [((), _process_figures().get(key, 0.0))]

            self.registry.add(kind(f"process_{key}", help_text, read=sample))

    def count_registration(self, application: str) -> None:
        self.application_registrations.inc(self.application(application))

    def count_resolution(self, application: str) -> None:
        self.application_resolutions.inc(self.application(application))

    def add(self, family: _Family) -> None:
        self.registry.add(family)

    def add_stats(self, prefix: str, what: str, read: Callable[[], dict[str, float]]) -> None:
        """One family per key of ``read()`` (read at each scrape): ``<prefix>_<key>``."""
        for family in stats_families(prefix, what, read):
            self.registry.add(family)

    def add_gauge(self, name: str, help_text: str, read: Callable[[], float | None]) -> None:
        """A gauge read at each scrape (no sample while ``read()`` is None)."""

        def sample() -> list[tuple[Labels, float]]:
            value = read()
            return [] if value is None else [((), value)]

        self.registry.add(Gauge(name, help_text, read=sample))

    def render(self) -> str:
        return self.registry.render()


def stats_families(prefix: str, what: str, read: Callable[[], dict[str, float]]) -> list[_Family]:
    """One family per key of ``read()`` (read at each scrape): ``<prefix>_<key>``.

    Keys ending in ``_total`` are counters, the others gauges.
    """
    families: list[_Family] = []
    for key in read():
        kind = Counter if key.endswith("_total") else Gauge

        def sample(key: str = key) -> list[tuple[Labels, float]]:
            return [((), read().get(key, 0.0))]

        help_text = f"{what}: {key.removesuffix('_total').replace('_', ' ')}"
        families.append(kind(f"{prefix}_{key}", help_text, read=sample))
    return families


def process_figures() -> dict[str, float]:
    """This process's CPU, memory and descriptors (the ``process_*`` figures)."""
    return _process_figures()


def _implementation() -> str:
    import kaa_wire

    return str(kaa_wire.IMPLEMENTATION)


# -- one view across --workers --------------------------------------------------------------

#: Families merged across workers by their largest value (the same fact in every worker, or
#: a state any one worker holding is enough for), or their smallest; every other family is
#: summed (counters, histograms, open connections, memory, CPU, descriptors).
_MERGE_MAX = frozenset({
    "kaa_build_info", "kaa_uptime_seconds", "process_max_fds", "kaa_nodes_live",
    "kaa_lease_held",
})  # fmt: skip
_MERGE_MIN = frozenset({"process_start_time_seconds", "kaa_ready"})
#: How often a services process publishes its figures for the admin process.
PUBLISH_INTERVAL_S = 1.0
#: A publication older than this is a services process that is gone or stuck: not alive,
#: not ready (a few intervals: a busy loop or a slow disk delays one, not five).
STALE_AFTER_S = 5.0


#: The group this process publishes to (set in a worker after the fork), or None.
_current_group: WorkerGroup | None = None


def join_group(group: WorkerGroup) -> None:
    """Make this process (a freshly forked worker) a member of ``group``."""
    global _current_group
    _current_group = group


def current_group() -> WorkerGroup | None:
    return _current_group


#: A group's directory: ``kaa-metrics-<owner pid>-<random>`` (before: ``kaa-metrics-<random>``).
_GROUP_PREFIX = "kaa-metrics-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # (another user's)
    return True


def _owners(directory: Path) -> list[int]:
    """The pids a group's directory belongs to: the one its name holds, or (a directory
    of an older version) those of its publications; empty when it cannot tell."""
    head = directory.name.removeprefix(_GROUP_PREFIX).partition("-")
    if head[1] and head[0].isdigit():
        return [int(head[0])]
    pids = []
    for path in directory.glob("worker-*.json"):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            pids.append(int(json.loads(path.read_text())["pid"]))
    return pids


def remove_stale_groups(base: Path) -> list[Path]:
    """Remove this user's group directories under ``base`` whose owners are all dead: those
    of services killed with SIGKILL together with their admin process (memory on tmpfs
    until the next boot). Never one of a live process, nor one whose owner it cannot tell;
    returns those removed. An older version's directory (no owner in its name) that has
    stayed empty for :data:`ABANDONED_S` goes too."""
    removed = []
    for directory in base.glob(_GROUP_PREFIX + "*"):
        try:
            mine = directory.lstat().st_uid == os.getuid()
            if not mine or directory.is_symlink() or not directory.is_dir():
                continue
        except OSError:
            continue
        owners = _owners(directory)
        if owners and not any(_alive(pid) for pid in owners):
            WorkerGroup(directory).remove()
        elif not owners and _abandoned(directory):
            with contextlib.suppress(OSError):  # (not empty after all: kept)
                directory.rmdir()
        if not directory.exists():
            removed.append(directory)
    return removed


#: An owner-less (older version's) directory empty this long is nobody's: a live group
#: publishes within a second of its start.
ABANDONED_S = 3600.0


def _abandoned(directory: Path) -> bool:
    try:
        age_s = time.time() - directory.stat().st_mtime
        return age_s > ABANDONED_S and not any(directory.iterdir())
    except OSError:
        return False


class WorkerGroup:
    """The services' figures, published for the admin process's one ``/metrics``.

    The admin port runs in a process of its own (servers/admin_process.py), so it reads
    the services' figures from files. Their supervisor (the process started: with
    ``--workers`` the workers' parent, otherwise the services' process itself) makes a
    private directory (on tmpfs, /dev/shm, where it exists); each services process (slot
    0, or each worker's) writes there every :data:`PUBLISH_INTERVAL_S`
    ``worker-<slot>.json``: when, its readiness and its families' sample lines (written
    to a temporary file and renamed, so a reader sees a whole one; not fsynced: nothing
    here outlives the group). The admin process renders them merged (:meth:`render`), and
    answers ``/healthz`` and ``/livez`` from them (:meth:`health`): a publication older
    than :data:`STALE_AFTER_S` is a process that is gone or stuck. A restarted worker
    starts its counters from zero, so the merged counter goes down once (Prometheus treats
    that as a reset).
    """

    def __init__(self, directory: Path, slot: int | None = None) -> None:
        self.directory = directory
        self.slot = slot

    @classmethod
    def create(cls) -> WorkerGroup:
        """A new group's directory, named ``kaa-metrics-<pid>-*`` after the process that
        makes it (and removes it when it stops); first, the stale ones are removed."""
        base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
        remove_stale_groups(Path(base or tempfile.gettempdir()))
        prefix = f"{_GROUP_PREFIX}{os.getpid()}-"
        return cls(Path(tempfile.mkdtemp(prefix=prefix, dir=base)))

    def for_worker(self, slot: int) -> WorkerGroup:
        return WorkerGroup(self.directory, slot)

    def remove(self) -> None:
        for path in self.directory.glob("*"):
            path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.directory.rmdir()

    def _path(self, slot: int) -> Path:
        return self.directory / f"worker-{slot}.json"

    def publish(self, metrics: Metrics, not_ready: str | None) -> None:
        """Write this process's figures and readiness (``not_ready``: why it cannot serve
        now, or None) for the admin process."""
        assert self.slot is not None
        target = self._path(self.slot)
        tmp = target.with_name(f".{target.name}.{os.getpid()}")
        doc = {"at": time.time(), "pid": os.getpid(), "not_ready": not_ready,
               "families": metrics.registry.families()}  # fmt: skip
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, target)

    def published(self) -> dict[int, Publication]:
        """Every slot's last publication, by slot (an unreadable one is left out)."""
        found: dict[int, Publication] = {}
        for path in sorted(self.directory.glob("worker-*.json")):
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                doc = json.loads(path.read_text())
                found[int(path.stem.removeprefix("worker-"))] = Publication(
                    at=float(doc["at"]),
                    not_ready=doc["not_ready"],
                    families=[tuple(f) for f in doc["families"]],  # type: ignore[misc]
                )
        return found

    def render(
        self, own: Sequence[tuple[str, str, str, list[str]]] = (), *, per_worker: bool = False
    ) -> str:
        """The services' last published figures, merged, then ``own`` (the admin
        process's); with ``per_worker``, ``kaa_worker_connections_total{worker}`` too: how
        the kernel spreads connections over ``--workers``."""
        by_slot = {slot: p.families for slot, p in self.published().items()}
        merged = merge_families(list(by_slot.values()))
        if per_worker:
            spread = [
                f'kaa_worker_connections_total{{worker="{slot}"}} '
                f"{_number(_total(fams, CONNECTIONS))}"
                for slot, fams in sorted(by_slot.items())
            ]
            merged.append((
                "kaa_worker_connections_total", "counter",
                "TCP connections accepted by each worker (of all its services)", spread,
            ))  # fmt: skip
        return _render([*merged, *own])

    def health(self, slots: int, now: float | None = None) -> tuple[str | None, str | None]:
        """(why the services are not alive, why they are not ready), each None when they
        are: alive while at least one of the ``slots`` published within
        :data:`STALE_AFTER_S`; ready while every one did and none says it is not."""
        now = time.time() if now is None else now
        published = self.published()
        fresh = {s: p for s, p in published.items() if now - p.at <= STALE_AFTER_S}
        if not fresh:
            why = ("no figures published by the services yet" if not published else
                   f"the services published nothing for {STALE_AFTER_S:g} s")  # fmt: skip
            return why, why
        for slot in range(slots):
            publication = fresh.get(slot)
            if publication is None:
                return None, f"worker {slot} published nothing for {STALE_AFTER_S:g} s"
            if publication.not_ready is not None:
                return None, str(publication.not_ready)
        return None, None


@dataclasses.dataclass(frozen=True, slots=True)
class Publication:
    """One services process's last figures (:meth:`WorkerGroup.publish`)."""

    at: float  # time.time() when written
    not_ready: str | None
    families: list[tuple[str, str, str, list[str]]]


CONNECTIONS = "kaa_connections_total"


def _total(families: Sequence[tuple[str, str, str, list[str]]], name: str) -> float:
    """The sum of every sample of family ``name``."""
    return sum(
        float(line.rpartition(" ")[2]) for n, _, _, lines in families if n == name for line in lines
    )


def merge_families(
    groups: Sequence[Sequence[tuple[str, str, str, list[str]]]],
) -> list[tuple[str, str, str, list[str]]]:
    """The families of several processes as one: each sample summed over the processes
    (or its max or min, for the families in ``_MERGE_MAX`` / ``_MERGE_MIN``), in the order
    the families and samples first appear."""
    order: dict[str, tuple[str, str]] = {}
    values: dict[str, dict[str, float]] = {}
    for families in groups:
        for name, kind, help_text, samples in families:
            order.setdefault(name, (kind, help_text))
            merged = values.setdefault(name, {})
            for line in samples:
                series, _, number = line.rpartition(" ")
                value = float(number)
                if series not in merged:
                    merged[series] = value
                elif name in _MERGE_MAX:
                    merged[series] = max(merged[series], value)
                elif name in _MERGE_MIN:
                    merged[series] = min(merged[series], value)
                else:
                    merged[series] += value
    return [
        (name, kind, help_text, [f"{s} {_number(v)}" for s, v in values[name].items()])
        for name, (kind, help_text) in order.items()
    ]
