"""What an Operations node looks up per registration, cached in front of the store.

* SDK tokens by SHA-256, and applications: cached for ``refresh_s`` (new tokens and
  configuration changes show within that), unknown ones for ``refresh_s`` as well.
* Endpoint keys by endpoint id, with the application each endpoint belongs to: an id is
  the SHA-1 of its key and an endpoint never changes application, so the mapping never
  changes and is cached without expiry (bounded, least recently used first out). A
  miss is read at once where the store can (SQLite: ``endpoint_key_now``, on the loop
  thread), else awaited from the store. A reconnect finds a key only within its SDK
  token's application, so a token of one application cannot probe which ids (or key
  types) another application has.
  Revocation is not cached anywhere: it is checked inside the write transaction.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from servers.caching import MISS, LookupCache, Miss
from servers.store.base import Application, EndpointKey, RegistryStore, SdkToken

__all__ = ["Directory", "Found"]


class Found(NamedTuple):
    """What one registration needs looked up; None where the store has nothing."""

    sdk: SdkToken | None
    application: Application | None
    #: The stored key of a reconnect, None for a registration carrying its key or when
    #: the id is not a registered endpoint *of the token's application*.
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
        self._store = store
        self._tokens: LookupCache[bytes, SdkToken] = LookupCache(
            store.find_sdk_token, ttl_s=refresh_s, negative_ttl_s=refresh_s, max_entries=max_tokens
        )
        self._apps: LookupCache[str, Application] = LookupCache(
            store.get_application, ttl_s=refresh_s, negative_ttl_s=refresh_s, max_entries=max_apps
        )
        self._keys: LookupCache[bytes, EndpointKey] = LookupCache(
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
        known = None if endpoint_id is None else self._keys.cached(endpoint_id)
        if known is MISS:
            if sdk is None:  # refused whatever the key: no store read for it
                return Found(None, app, None)
            assert endpoint_id is not None
            # SQLite answers at once, with no task and no thread hand-off: the cost of a
            # miss stays near a hit's when a whole fleet reconnects (benchmarks/README.md).
            known = self._store.endpoint_key_now(endpoint_id)
            if known is MISS:
                return MISS
            self._keys.remember(endpoint_id, known)
        return Found(sdk, app, _key_of(known, sdk))

    async def lookup(self, token_hash: bytes, endpoint_id: bytes | None) -> Found:
        """:meth:`cached`, loading what is missing from the store."""
        sdk = await self._tokens.get(token_hash)
        app = None if sdk is None else await self._apps.get(sdk.application)
        known = None if endpoint_id is None else await self._keys.get(endpoint_id)
        return Found(sdk, app, _key_of(known, sdk))

    def remember_key(self, endpoint_id: bytes, key_der: bytes, application: str) -> None:
        self._keys.put(endpoint_id, EndpointKey(key_der, application))


def _key_of(known: EndpointKey | None, sdk: SdkToken | None) -> bytes | None:
    """The stored key if the endpoint belongs to the token's application, else None: an id
    of another application answers exactly as an id nobody registered."""
    if known is None or sdk is None or known.application != sdk.application:
        return None
    return known.public_key
