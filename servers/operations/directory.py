"""What an Operations node looks up per registration, cached in front of the store.

* SDK tokens by SHA-256, and applications: cached for ``refresh_s`` (new tokens and
  configuration changes show within that), unknown ones for ``refresh_s`` as well.
* Endpoint keys by endpoint id: an id is the SHA-1 of its key, so the mapping never
  changes and is cached without expiry (bounded, least recently used first out).
  Revocation is not cached anywhere: it is checked inside the write transaction.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from servers.caching import MISS, LookupCache, Miss
from servers.store.base import Application, RegistryStore, SdkToken

__all__ = ["Directory", "Found"]


class Found(NamedTuple):
    """What one registration needs looked up; None where the store has nothing."""

    sdk: SdkToken | None
    application: Application | None
    #: The stored DER key of a reconnect (None for a registration carrying its key).
    key_der: bytes | None


class Directory:
    def __init__(
        self,
        store: RegistryStore,
        *,
        refresh_s: float,
        max_tokens: int = 100_000,
        max_apps: int = 100_000,
        max_keys: int = 50_000,
    ) -> None:
        self._tokens: LookupCache[bytes, SdkToken] = LookupCache(
            store.find_sdk_token, ttl_s=refresh_s, negative_ttl_s=refresh_s, max_entries=max_tokens
        )
        self._apps: LookupCache[str, Application] = LookupCache(
            store.get_application, ttl_s=refresh_s, negative_ttl_s=refresh_s, max_entries=max_apps
        )
        self._keys: LookupCache[bytes, bytes] = LookupCache(
            store.get_endpoint_key, ttl_s=math.inf, negative_ttl_s=refresh_s, max_entries=max_keys
        )

    def cached(self, token_hash: bytes, endpoint_id: bytes | None) -> Found | Miss:
        """Everything from the caches without awaiting, or MISS if any part must be loaded.

        ``endpoint_id``: the id a reconnect sent, None when the request carries its key.
        """
        sdk = self._tokens.cached(token_hash)
        if sdk is MISS:
            return MISS
        app = None if sdk is None else self._apps.cached(sdk.application)
        if app is MISS:
            return MISS
        key_der = None if endpoint_id is None else self._keys.cached(endpoint_id)
        if key_der is MISS:
            return MISS
        return Found(sdk, app, key_der)

    async def lookup(self, token_hash: bytes, endpoint_id: bytes | None) -> Found:
        """:meth:`cached`, loading what is missing from the store."""
        sdk = await self._tokens.get(token_hash)
        app = None if sdk is None else await self._apps.get(sdk.application)
        key_der = None if endpoint_id is None else await self._keys.get(endpoint_id)
        return Found(sdk, app, key_der)

    def remember_key(self, endpoint_id: bytes, key_der: bytes) -> None:
        self._keys.put(endpoint_id, key_der)
