"""Credentials per service, refreshed before they expire.

A connector asks its :class:`Credentials` for the current :class:`Credential` before each call;
static keys never change, while :class:`RefreshingCredentials` calls a fetch function (an OAuth
token endpoint, a vault) when the token is within ``refresh_margin_s`` of expiry. Only ``key_id``
may leave the connector (in events and logs); the secret stays a ``SecretStr``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from pydantic import SecretStr

from connectors.errors import CredentialsError


@dataclass(frozen=True)
class Credential:
    key_id: str
    secret: SecretStr
    #: Monotonic time after which the secret must not be used (None: does not expire).
    expires_at: float | None = None


class Credentials(Protocol):
    async def current(self) -> Credential: ...


class StaticCredentials:
    def __init__(self, key_id: str, secret: SecretStr | None) -> None:
        self._credential = Credential(key_id, secret) if secret is not None else None
        self._key_id = key_id

    async def current(self) -> Credential:
        if self._credential is None:
            raise CredentialsError(f"no credential configured (key id {self._key_id!r})")
        return self._credential


class RefreshingCredentials:
    def __init__(
        self,
        fetch: Callable[[], Awaitable[Credential]],
        *,
        refresh_margin_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._margin = refresh_margin_s
        self._clock = clock
        self._credential: Credential | None = None
        self._lock = asyncio.Lock()

    async def current(self) -> Credential:
        async with self._lock:  # one refresh at a time; concurrent callers reuse its result
            cred = self._credential
            if cred is None or (
                cred.expires_at is not None and self._clock() >= cred.expires_at - self._margin
            ):
                try:
                    cred = await self._fetch()
                except CredentialsError:
                    raise
                except Exception as exc:  # whatever the token endpoint raised
                    raise CredentialsError(
                        f"refreshing credentials failed: {type(exc).__name__}"
                    ) from exc
                self._credential = cred
            return cred
