"""One filled store of a fleet benchmark: its data directory, its server, its fill.

A data directory under ``--data`` (never in git) holds a store filled once and reused by
later runs: ``manifest.json`` says what it holds (size, backend, key source).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.fleet import fill
from benchmarks.loadgen.keys import Ed25519Keys, PooledKeys
from benchmarks.loadgen.requests import Target
from benchmarks.loadgen.servers import ServerUnderTest

__all__ = ["Deployment"]


class Deployment:
    """One data directory (and, for PostgreSQL, one database) holding one filled store."""

    def __init__(
        self, root: Path, backend: str, size: int, *, dsn: str | None,
        cpus: list[int] | None, log: Callable[[str], None],
    ) -> None:  # fmt: skip
        self.log = log
        self.root = root
        self.backend = backend
        self.size = size
        self.dsn = dsn
        self.cpus = cpus
        self.manifest_path = root / "manifest.json"
        self.server: ServerUnderTest | None = None

    def manifest(self) -> dict[str, Any]:
        if self.manifest_path.exists():
            return dict(json.loads(self.manifest_path.read_text()))
        return {}

    def save(self, manifest: dict[str, Any]) -> None:
        tmp = self.manifest_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(manifest, indent=2) + "\n")
        os.replace(tmp, self.manifest_path)

    @property
    def db(self) -> Path:
        return self.root / "data" / "registry.db"

    def start(self) -> tuple[Target, int]:
        extra = ["--store", self.dsn] if self.dsn else []
        self.server = ServerUnderTest("ext", cpus=self.cpus, workdir=self.root, extra_args=extra)
        self.server.start(timeout=300.0)
        return Target.from_sdk_json(self.server.sdk_json), self.server.pid

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def restart(self) -> tuple[Target, int]:
        self.stop()
        return self.start()

    def disk_bytes(self) -> int:
        if self.backend == "postgresql":
            assert self.dsn
            return fill.postgres_bytes(self.dsn)
        return fill.disk_bytes(self.db)

    def ensure_filled(
        self,
        keys: PooledKeys | Ed25519Keys,
        keyspec: str,
        prepare: Callable[[Target], None] | None = None,
    ) -> dict[str, Any]:
        """Fill the store to ``size`` unless the manifest says it is; the fill record.

        ``prepare(target)`` runs on the new data directory, its server stopped, before the
        fill (the storm turns on its application's cached signatures there).
        """
        manifest = self.manifest()
        wanted = {"size": self.size, "backend": self.backend, "keys": keyspec}
        if all(manifest.get(k) == v for k, v in wanted.items()) and manifest.get("filled"):
            return dict(manifest["fill"], reused=True)
        if self.root.exists() and self.backend == "sqlite":
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        target, _ = self.start()  # creates the data directory, keys and application
        self.stop()
        if prepare is not None:
            prepare(target)
        token_hash = hashlib.sha256(target.sdk_token.encode("ascii")).digest()
        shown = [0.0]

        def progress(done: int) -> None:
            if time.monotonic() - shown[0] > 10 or done == self.size:
                shown[0] = time.monotonic()
                self.log(f"[fill {self.backend} {self.size:,}] {done:,} rows")

        before = self.disk_bytes() if self.backend == "postgresql" else 0
        spec = fill.FillSpec(
            0, self.size, keys.public_der,
            token_hash=token_hash, application=target.app_token, progress=progress,
        )  # fmt: skip
        if self.backend == "postgresql":
            assert self.dsn
            result = fill.fill_postgres(self.dsn, spec)
        else:
            result = fill.fill_sqlite(self.db, spec)
        on_disk = self.disk_bytes()
        record = {
            **result.to_dict(),
            "disk_bytes": on_disk,
            "bytes_per_endpoint": round((on_disk - before) / self.size, 1),
        }
        self.save({**wanted, "filled": True, "fill": record, "fresh_cursor": 0})
        self.log(
            f"[fill {self.backend} {self.size:,}] {result.per_s:,.0f} rows/s "
            f"({result.seconds:.0f} s, index build {result.index_seconds:.0f} s), "
            f"{record['bytes_per_endpoint']} bytes/endpoint"
        )
        return dict(record, reused=False)
