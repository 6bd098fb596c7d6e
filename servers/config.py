"""Configuration: command-line flags, then KAA_* environment variables, then a TOML file.

Every setting has one key (``bootstrap_port``), one flag (``--bootstrap-port``), one
environment variable (``KAA_BOOTSTRAP_PORT``) and one TOML key (the key itself, at the top
level of the file). The first of those that is set wins, in that order; otherwise the
default applies. The TOML file is ``--config FILE`` or ``KAA_CONFIG``. docs/operations.md
lists every key.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tomllib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, NoReturn

from kaa_wire._constants import ABSOLUTE_MAX_FRAME_SIZE, DEFAULT_MAX_FRAME_SIZE, HEADER_SIZE
from servers.admin_hosts import parse_allowed_hosts
from servers.store.factory import is_store_setting
from servers.store.limits import DEFAULT_LIMITS, StoreLimits

__all__ = [
    "Option",
    "OPTIONS",
    "Settings",
    "ConfigError",
    "add_arguments",
    "load_settings",
]


class ConfigError(Exception):
    """A setting has a bad value, or the TOML file is unreadable or has unknown keys."""


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {text!r}")


@dataclasses.dataclass(frozen=True, slots=True)
class Option:
    key: str
    kind: type
    default: Any
    help: str
    metavar: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")

    @property
    def env(self) -> str:
        return "KAA_" + self.key.upper()

    def parse(self, text: str) -> Any:
        parser: Callable[[str], Any] = _bool if self.kind is bool else self.kind
        return parser(text)

    @property
    def names(self) -> str:
        """How a person sets it: flag, environment variable and TOML key."""
        return f"{self.flag} ({self.env}, TOML {self.key})"

    def parse_flag(self, text: str) -> Any:
        """:meth:`parse` for argparse: a bad value is one line naming every way to set it."""
        try:
            return self.parse(text)
        except ValueError:
            kind = _KIND_NAMES.get(self.kind, self.kind.__name__)
            raise argparse.ArgumentTypeError(
                f"wants {kind}, got {text!r}; also settable as {self.env} or TOML {self.key}"
            ) from None


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (the usage is one ``--help`` away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _named(message: str) -> str:
    """A settings message that starts with an option's key, with the key spelled the ways
    a person sets it (``bootstrap_port must be ...`` -> ``--bootstrap-port (...) must be``)."""
    key, _, rest = message.partition(" ")
    option = OPTIONS.get(key)
    return f"{option.names} {rest}" if option is not None else message


OPTIONS: dict[str, Option] = {
    o.key: o
    for o in (
        # -- where ----------------------------------------------------------------------
        Option("data", Path, Path("kaa-data"), "data directory (keys, database, SDK export)"),
        Option(
            "store",
            str,
            "",
            "registry store: empty for the data directory's SQLite file, or a PostgreSQL "
            "DSN postgresql://USER@HOST:PORT/DB (docs/deploy.md)",
            "DSN",
        ),
        Option("host", str, "127.0.0.1", "address the Bootstrap and Operations listeners bind to"),
        Option(
            "advertise_host",
            str,
            "",
            "host that clients are told to connect to (node leases, SDK export); default: host",
        ),
        Option("bootstrap_port", int, 9888, "Bootstrap TCP port (0: pick a free port)"),
        Option("operations_port", int, 9997, "Operations TCP port (0: pick a free port)"),
        Option(
            "admin_port",
            int,
            9899,
            "admin HTTP port: /metrics, /healthz, the console and API (0: a free port, -1: off)",
        ),
        Option(
            "admin_host",
            str,
            "127.0.0.1",
            "address the admin port binds to; its own, so a wildcard host does not expose it",
        ),
        # -- logs -----------------------------------------------------------------------
        Option(
            "workers",
            int,
            1,
            "processes serving the same ports (SO_REUSEPORT), supervised by this one",
        ),
        Option("log_json", bool, False, "log one JSON object per line"),
        Option("log_level", str, "info", "debug, info, warning or error", "LEVEL"),
        # -- limits ---------------------------------------------------------------------
        Option(
            "max_frame_size", int, DEFAULT_MAX_FRAME_SIZE, "largest accepted frame, header included"
        ),
        Option(
            "read_timeout_s",
            float,
            10.0,
            "seconds a connection gets to send its whole request (then Timeout, close)",
        ),
        Option("max_connections", int, 1024, "concurrent connections per service"),
        Option(
            "admin_max_connections",
            int,
            16,
            "concurrent admin connections; beyond, a connection gets 503 and is closed at once",
        ),
        Option(
            "admin_timeout_s",
            float,
            2.0,
            "admin deadline in seconds: a request head (408), a handler (503), an idle connection",
        ),
        Option(
            "admin_allowed_hosts",
            str,
            "",
            "more Host names the console and API answer to, comma-separated HOST or HOST:PORT "
            "(e.g. a reverse proxy's); besides admin_host, and localhost on loopback",
            "HOSTS",
        ),
        Option(
            "admin_requests_per_s",
            float,
            20.0,
            "console and API requests per second (bursts of twice that); beyond: 429",
        ),
        Option("retry_after_ms", int, 1000, "retry hint sent with Overloaded errors"),
        Option(
            "sign_threads",
            int,
            -1,
            "Bootstrap threads for RSA signing (0: on the event loop; -1: one per core the "
            "process may run on, or 0 when that is one core)",
        ),
        Option("max_pending_signs", int, 512, "signatures queued or running before Overloaded"),
        Option(
            "crypto_threads",
            int,
            0,
            "Operations threads for the proof-of-possession verify (0: on the event loop)",
        ),
        Option("max_pending_crypto", int, 512, "verifies queued or running before Overloaded"),
        Option(
            "max_pending_writes",
            int,
            DEFAULT_LIMITS.max_pending_writes,
            "store writes queued before Overloaded",
        ),
        Option(
            "group_commit_ms",
            float,
            DEFAULT_LIMITS.group_commit_ms,
            "how long the store writer gathers a batch",
        ),
        # -- protocol policy --------------------------------------------------------------
        Option("replay_window_s", float, 120.0, "accepted request timestamp skew, +/- seconds"),
        Option("resolution_valid_s", int, 300, "validity of per-request signed answers"),
        Option(
            "presigned_valid_s",
            int,
            30,
            "validity of cached-signature answers (re-signed after a third of it)",
        ),
        Option("reconnect_after_s", int, 3600, "reconnect hint sent with registrations"),
        Option("retry_base_ms", int, 1000, "retry back-off base sent with registrations"),
        # -- cluster ----------------------------------------------------------------------
        Option("lease_s", float, 15.0, "Operations node lease; renewed every third of it"),
        Option("refresh_s", float, 1.0, "how often cached nodes, applications and tokens refresh"),
        Option("priority", int, 100, "this Operations node's priority (0-255, higher first)"),
        Option("weight", int, 100, "this Operations node's weight (0-65535)"),
        Option(
            "node_id", str, "", "this Operations node's id in the node table; default host:port"
        ),
    )
}


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    data: Path
    store: str
    host: str
    advertise_host: str
    bootstrap_port: int
    operations_port: int
    admin_port: int
    admin_host: str
    workers: int
    log_json: bool
    log_level: str
    max_frame_size: int
    read_timeout_s: float
    max_connections: int
    admin_max_connections: int
    admin_timeout_s: float
    admin_allowed_hosts: str
    admin_requests_per_s: float
    retry_after_ms: int
    sign_threads: int
    max_pending_signs: int
    crypto_threads: int
    max_pending_crypto: int
    max_pending_writes: int
    group_commit_ms: float
    replay_window_s: float
    resolution_valid_s: int
    presigned_valid_s: int
    reconnect_after_s: int
    retry_base_ms: int
    lease_s: float
    refresh_s: float
    priority: int
    weight: int
    node_id: str

    @property
    def public_host(self) -> str:
        return self.advertise_host or self.host

    @property
    def store_limits(self) -> StoreLimits:
        return dataclasses.replace(
            DEFAULT_LIMITS,
            max_pending_writes=self.max_pending_writes,
            group_commit_ms=self.group_commit_ms,
        )

    def __post_init__(self) -> None:
        checks = (
            (0 <= self.bootstrap_port <= 65535, "bootstrap_port must be 0-65535"),
            (0 <= self.operations_port <= 65535, "operations_port must be 0-65535"),
            (-1 <= self.admin_port <= 65535, "admin_port must be -1 to 65535"),
            (0 <= self.priority <= 255, "priority must be 0-255"),
            (0 <= self.weight <= 65535, "weight must be 0-65535"),
            (
                HEADER_SIZE < self.max_frame_size <= ABSOLUTE_MAX_FRAME_SIZE,
                f"max_frame_size must be {HEADER_SIZE + 1}-{ABSOLUTE_MAX_FRAME_SIZE} "
                "(the protocol's largest frame)",
            ),
            (self.read_timeout_s > 0, "read_timeout_s must be > 0"),
            (self.max_connections >= 1, "max_connections must be >= 1"),
            (self.admin_max_connections >= 1, "admin_max_connections must be >= 1"),
            (self.admin_timeout_s > 0, "admin_timeout_s must be > 0"),
            (self.admin_requests_per_s > 0, "admin_requests_per_s must be > 0"),
            (bool(self.admin_host), "admin_host must not be empty"),
            (1 <= self.workers <= 256, "workers must be 1-256"),
            (
                is_store_setting(self.store),
                "store must be empty (SQLite in the data directory) or a postgresql:// DSN "
                "(with a port of 1-65535)",
            ),
            (self.sign_threads >= -1, "sign_threads must be >= -1"),
            (self.crypto_threads >= 0, "crypto_threads must be >= 0"),
            (self.max_pending_signs >= 1, "max_pending_signs must be >= 1"),
            (self.max_pending_crypto >= 1, "max_pending_crypto must be >= 1"),
            (self.replay_window_s > 0, "replay_window_s must be > 0"),
            (self.resolution_valid_s >= 1, "resolution_valid_s must be >= 1"),
            (self.presigned_valid_s >= 3, "presigned_valid_s must be >= 3"),
            (self.lease_s > 0, "lease_s must be > 0"),
            (self.refresh_s > 0, "refresh_s must be > 0"),
            (
                self.log_level.lower() in ("debug", "info", "warning", "error"),
                "log_level must be debug, info, warning or error",
            ),
            (
                self.public_host not in _WILDCARDS,
                "host is a wildcard address: set --advertise-host (KAA_ADVERTISE_HOST, TOML "
                "advertise_host) to the address clients use",
            ),
        )
        for ok, message in checks:
            if not ok:
                raise ConfigError(_named(message))
        try:
            parse_allowed_hosts(self.admin_allowed_hosts)
        except ValueError as exc:
            message = f"admin_allowed_hosts must list HOST or HOST:PORT: {exc}"
            raise ConfigError(_named(message)) from None
        try:
            self.store_limits  # noqa: B018 (built for its checks)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None


def add_arguments(
    parser: argparse.ArgumentParser,
    keys: Iterable[str],
    *,
    renames: Mapping[str, str] | None = None,
    defaults: Mapping[str, Any] | None = None,
    helps: Mapping[str, str] | None = None,
) -> None:
    """Add ``--config`` and one flag per key (``renames``: key -> flag, e.g. ``--port``).

    Flags default to "not given", so :func:`load_settings` can tell them from defaults.
    """
    renames = renames or {}
    defaults = defaults or {}
    parser.add_argument(
        "--config", metavar="FILE", default=None, help="TOML settings file (env: KAA_CONFIG)"
    )
    for key in keys:
        option = OPTIONS[key]
        default = defaults.get(key, option.default)
        described = (helps or {}).get(key, option.help)
        text = f"{described} (env: {option.env}; default: {_show(default)})"
        flag = renames.get(key, option.flag)
        if option.kind is bool:
            parser.add_argument(
                flag, dest=key, action="store_const", const=True, default=None, help=text
            )
        else:
            parser.add_argument(
                flag,
                dest=key,
                type=option.parse_flag,
                default=None,
                metavar=option.metavar or _metavar(option),
                help=text,
            )


def _metavar(option: Option) -> str:
    if option.key.endswith("port"):
        return "PORT"
    if option.key.endswith("_ms"):
        return "MS"
    if option.key.endswith("_s"):
        return "SECONDS"
    return {Path: "DIR", int: "N", float: "X"}.get(option.kind, option.key.upper())


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if value == "" else str(value)


_WILDCARDS = frozenset({"0.0.0.0", "::", "[::]", "*"})
_KIND_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "a boolean"}


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            document = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    except UnicodeDecodeError as exc:  # (TOML is UTF-8; this was a traceback)
        raise ConfigError(f"cannot read {path}: not UTF-8 (byte {exc.start})") from None
    unknown = sorted(set(document) - set(OPTIONS))
    if unknown:
        raise ConfigError(f"{path}: unknown settings {', '.join(unknown)}")
    return document


def _from_toml(option: Option, value: Any, path: str) -> Any:
    kind = option.kind
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is Path and isinstance(value, str):
        return Path(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{path}: {option.key} must be {_KIND_NAMES[kind]}")
    return value


def load_settings(
    args: argparse.Namespace,
    *,
    environ: Mapping[str, str] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> Settings:
    """Settings from flags in ``args``, then ``environ``, then the TOML file, then defaults."""
    environ = os.environ if environ is None else environ
    defaults = defaults or {}
    config_path = getattr(args, "config", None) or environ.get("KAA_CONFIG")
    document = _read_toml(config_path) if config_path else {}
    values: dict[str, Any] = {}
    for key, option in OPTIONS.items():
        flag_value = getattr(args, key, None)
        if flag_value is not None:
            values[key] = flag_value
        elif option.env in environ:
            try:
                values[key] = option.parse(environ[option.env])
            except ValueError as exc:
                raise ConfigError(f"{option.env}: {exc}") from None
        elif key in document:
            values[key] = _from_toml(option, document[key], str(config_path))
        else:
            values[key] = defaults.get(key, option.default)
    return Settings(**values)
