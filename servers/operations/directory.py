"""What an Operations node looks up per registration, cached in front of the store.

* SDK tokens by SHA-256, and applications: cached for ``refresh_s`` (new tokens and
  configuration changes show within that), unknown ones for ``refresh_s`` as well.
* Endpoint keys by endpoint id: an id is the SHA-1 of its key, so the mapping never
  changes and is cached without expiry (bounded, least recently used first out).
  Revocation is not cached anywhere: it is checked inside the write transaction.
"""

from __future__ import annotations

import math

from servers.caching import LookupCache
from servers.store.base import Application, RegistryStore, SdkToken

__all__ = ["Directory"]


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
            self._load_key(store), ttl_s=math.inf, negative_ttl_s=refresh_s, max_entries=max_keys
        )

    @staticmethod
    def _load_key(store: RegistryStore):  # type: ignore[no-untyped-def]
        async def load(endpoint_id: bytes) -> bytes | None:
            endpoint = await store.get_endpoint(endpoint_id)
            return None if endpoint is None else endpoint.public_key

        return load

    async def sdk_token(self, token_hash: bytes) -> SdkToken | None:
        return await self._tokens.get(token_hash)

    async def application(self, token: str) -> Application | None:
        return await self._apps.get(token)

    async def endpoint_key(self, endpoint_id: bytes) -> bytes | None:
        return await self._keys.get(endpoint_id)

    def remember_key(self, endpoint_id: bytes, key_der: bytes) -> None:
        self._keys.put(endpoint_id, key_der)
