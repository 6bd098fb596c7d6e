"""The Bootstrap's key ring, reloaded when the data directory's key files change.

A rotation (``servers.control bootstrap rotate``) replaces files in the data directory;
every ``interval_s`` the watcher compares their inode, size and mtime with what it loaded
and, when one changed, loads the key ring again off the loop. A running Bootstrap so signs
with the new key within ``interval_s`` (the ``refresh_s`` setting) of the rotation, without
a restart, and every worker process does so by itself. A key ring that does not load is
logged and the last good one kept.
"""

from __future__ import annotations

import asyncio
import logging

from kaa_wire import KaaWireError
from servers import logs
from servers.keyring import KeyFiles, Keyring, KeyringError, load_keyring
from servers.tasks import cancel_and_wait

__all__ = ["KeyringWatcher"]


class KeyringWatcher:
    def __init__(self, files: KeyFiles, *, interval_s: float, log: logging.Logger) -> None:
        self._files = files
        self._interval_s = interval_s
        self._log = log
        self._stamp = files.stamp()
        #: The key ring answers are signed with now; read it once per answer.
        self.current: Keyring = load_keyring(files)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    async def reload_if_changed(self) -> bool:
        """Load the key ring again if a file changed; whether the current one was replaced."""
        stamp = self._files.stamp()
        if stamp == self._stamp:
            return False
        self._stamp = stamp  # a broken state is reported once, not every interval
        try:
            keyring = await asyncio.to_thread(load_keyring, self._files)
        except (KeyringError, KaaWireError, OSError) as exc:
            logs.event(
                self._log,
                logging.WARNING,
                "bootstrap key reload failed",
                error=str(exc),
                generation=self.current.generation,
            )
            return False
        if (keyring.generation, keyring.public_key_der) == (
            self.current.generation,
            self.current.public_key_der,
        ):
            return False
        self.current = keyring
        logs.event(
            self._log,
            logging.INFO,
            "bootstrap key loaded",
            generation=keyring.generation,
            key=keyring.fingerprint[:16],  # short: the logs hold nothing like key bytes
        )
        return True

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.reload_if_changed()
            except Exception as exc:  # keep signing with the last good key ring
                logs.event(self._log, logging.WARNING, "bootstrap key check failed", error=str(exc))
