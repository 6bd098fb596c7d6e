"""The application's handle on a device: identity, configuration, policy, two APIs."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from client import _blocking
from client._policy import (
    Connected,
    Event,
    Outcome,
    RegistrationPlan,
    RetryPolicy,
    updated_state,
)
from client._state import DeviceState, StateDir
from kaa_wire._connection import Resolved
from kaa_wire.sdk_config import SdkConfig

__all__ = ["Device", "load_sdk_config"]


def load_sdk_config(path: str | os.PathLike[str]) -> SdkConfig:
    """The JSON that ``servers.control sdk export`` writes (kaa_wire.sdk_config)."""
    return SdkConfig.from_json(Path(path).read_bytes())


class Device:
    """One endpoint: its state directory, the SDK configuration, and how it retries.

    Open with :meth:`open` (generates the key pair on first boot), then call
    :meth:`register` (blocking sockets) or ``await`` :meth:`register_async` (asyncio). Both
    run the same :class:`RegistrationPlan`; both return an :data:`Outcome` (``Connected``,
    ``Revoked`` or ``Failed``) and persist what it teaches before returning: the state,
    and any Bootstrap key rotation it followed (client/_trust.py).

    Injectable for tests and special platforms: ``rng`` (server choice and jitter; never
    used for nonces), ``clock`` (monotonic seconds), ``sleep`` / ``async_sleep``, and
    ``on_event``, called with every :class:`Attempt`, :class:`Waiting` and the outcome.
    """

    def __init__(
        self,
        state_dir: StateDir,
        config: SdkConfig,
        *,
        policy: RetryPolicy | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        async_sleep: Callable[[float], Awaitable[object]] | None = None,
        on_event: Callable[[Event], None] | None = None,
    ) -> None:
        self._dir = state_dir
        self.config = config
        # Load the build-time keys once: a bad one is a configuration error, raised here.
        self._anchors = tuple(server.trusted_key() for server in config.bootstrap_servers)
        self.policy = policy or RetryPolicy()
        self._rng = rng or random.Random()
        self._clock = clock
        self._sleep = sleep
        self._async_sleep = async_sleep
        self._on_event = on_event
        self._resolved: Resolved | None = None

    @classmethod
    def open(
        cls,
        state_dir: str | os.PathLike[str],
        config: SdkConfig | str | os.PathLike[str],
        *,
        key_type: str | None = None,
        **options: object,
    ) -> Device:
        """Open the state directory (see client._state) with ``config`` or its JSON path.

        ``key_type`` is the key a first boot generates (client._state.KEY_TYPES; default
        RSA-2048); on a later boot, a type other than the key's is a KeyTypeError.
        Raises :class:`StateError` subclasses when the directory cannot be used as it is.
        """
        if not isinstance(config, SdkConfig):
            config = load_sdk_config(config)
        opened = StateDir.open(state_dir, key_type)
        try:
            return cls(opened, config, **options)  # type: ignore[arg-type]
        except BaseException:
            opened.close()
            raise

    @property
    def endpoint_id(self) -> str:
        """40 hex digits: SHA-1 of the DER SubjectPublicKeyInfo of the device key."""
        return self._dir.endpoint_id

    @property
    def state(self) -> DeviceState:
        """What the device last learned (registered, status, application state, ...)."""
        return self._dir.state

    @property
    def state_dir(self) -> StateDir:
        return self._dir

    def register(self, profile: bytes | None = None) -> Outcome:
        """Register (or reconnect) over blocking sockets; returns when there is an outcome.

        ``profile`` None sends the profile the server last accepted from this device (empty
        on a first boot), so a reconnect that does not mean to change it never wipes it.
        """
        profile = self._profile(profile)
        plan = self._plan(profile)
        outcome = _blocking.run(plan, timeout_s=self.policy.exchange_timeout_s, sleep=self._sleep)
        return self._finish(plan, outcome, profile)

    async def register_async(self, profile: bytes | None = None) -> Outcome:
        """:meth:`register` for asyncio: the same plan over asyncio streams."""
        import asyncio

        from client import _asyncio

        profile = self._profile(profile)
        plan = self._plan(profile)
        outcome = await _asyncio.run(
            plan,
            timeout_s=self.policy.exchange_timeout_s,
            sleep=self._async_sleep or asyncio.sleep,
        )
        # The state write ends in fsync: keep it off the event loop.
        return await asyncio.to_thread(self._finish, plan, outcome, profile)

    def close(self) -> None:
        """Release the state directory."""
        self._dir.close()

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _profile(self, profile: bytes | None) -> bytes:
        return self._dir.last_profile() if profile is None else profile

    def _plan(self, profile: bytes) -> RegistrationPlan:
        return RegistrationPlan(
            self.config,
            self._anchors,
            self._dir.private_key,
            self._dir.state,
            profile,
            policy=self.policy,
            rng=self._rng,
            clock=self._clock,
            on_event=self._on_event,
            resolved=self._resolved,
            trust=self._dir.trust,
        )

    def _finish(self, plan: RegistrationPlan, outcome: Outcome, profile: bytes) -> Outcome:
        self._resolved = plan.resolved
        # Whatever the outcome: a rotation the plan verified is kept (and the retired key
        # is not trusted again, even after a restart).
        if plan.trust.to_json() != self._dir.trust.to_json():
            self._dir.save_trust(plan.trust)
        new_state = updated_state(self._dir.state, outcome, profile)
        if new_state is not None:
            if isinstance(outcome, Connected) and profile != self._dir.last_profile():
                self._dir.save_profile(profile)  # what the server now holds
            self._dir.save(new_state)
        return outcome
