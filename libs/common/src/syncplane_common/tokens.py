"""Where services that call provider APIs get access tokens: token-service's
``token.get`` (ARCHITECTURE §4 "Just-in-time token"; ADR 0003). No other service
refreshes or stores a token.

:class:`TokenLease` is the one place the "provider refused the token → ask for a new one
by fingerprint → retry once" rule lives, so neither sync-worker's providers nor
calendar-sync repeat it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol, TypeVar

from faststream.nats import NatsBroker

from syncplane_common import rpc, subjects
from syncplane_common.clock import Clock, SystemClock
from syncplane_common.contracts import TokenGet, TokenGetReply, token_fingerprint
from syncplane_common.errors import NotConnectedError, ReauthRequiredError, TokenRejectedError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class AccessToken:
    value: str
    provider_account_id: str | None
    # token-service refreshed it to answer this request (never true for a reused answer).
    refreshed: bool = False

    def __repr__(self) -> str:  # never print the token itself
        return f"AccessToken(fingerprint={token_fingerprint(self.value)[:12]}...)"


class TokenSource(Protocol):
    async def get(
        self, user_id: str, provider: str, *, rejected_fingerprint: str | None = None
    ) -> AccessToken:
        """A token valid for a while; with ``rejected_fingerprint``, a token other than
        that one (token-service refreshes if it still holds it)."""
        ...


class NatsTokenSource:
    """``token.get`` with a short memory: a token answered a moment ago is reused while it
    stays valid for ``min_valid_seconds`` and is younger than ``cache_seconds``, so a
    burst of webhooks for one athlete costs one request. A refused token is never
    reused: the force-refresh request replaces it."""

    def __init__(
        self,
        broker: NatsBroker,
        *,
        timeout: float = rpc.DEFAULT_TIMEOUT,
        min_valid_seconds: int = 300,
        cache_seconds: float = 30.0,
        clock: Clock | None = None,
    ) -> None:
        self._broker = broker
        self._timeout = timeout
        self._min_valid = min_valid_seconds
        self._cache_seconds = cache_seconds
        self._clock = clock or SystemClock()
        self._cache: dict[tuple[str, str], tuple[AccessToken, datetime, float]] = {}

    async def get(
        self, user_id: str, provider: str, *, rejected_fingerprint: str | None = None
    ) -> AccessToken:
        key = (user_id, provider)
        if rejected_fingerprint is None and self._cache_seconds > 0:
            cached = self._cache.get(key)
            if cached is not None:
                token, expires_at, fetched = cached
                fresh = self._clock.monotonic() - fetched < self._cache_seconds
                valid = (expires_at - self._clock.now()).total_seconds() > self._min_valid
                if fresh and valid:
                    return replace(token, refreshed=False)
        answer, expiry = await self._ask(user_id, provider, rejected_fingerprint)
        if expiry is not None and self._cache_seconds > 0:
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[key] = (answer, expiry, self._clock.monotonic())
        return answer

    async def _ask(
        self, user_id: str, provider: str, rejected_fingerprint: str | None
    ) -> tuple[AccessToken, datetime | None]:
        ask = TokenGet(
            user_id=user_id,
            provider=provider,
            min_valid_seconds=self._min_valid,
            force_refresh=rejected_fingerprint is not None,
            rejected_token_fingerprint=rejected_fingerprint,
        )
        reply = await rpc.request(
            self._broker, subjects.TOKEN_GET, ask, TokenGetReply, wait=self._timeout
        )
        if not reply.access_token:
            raise NotConnectedError(f"token.get gave no token for {user_id}/{provider}")
        token = AccessToken(reply.access_token, reply.provider_account_id, reply.refreshed)
        return token, reply.expires_at


class MemoryTokenSource:
    """Tokens handed out from a dict: for unit tests of code that needs a TokenSource."""

    def __init__(self, tokens: dict[tuple[str, str], list[str]]) -> None:
        # Each key's list is the sequence of tokens a refresh walks through.
        self._tokens = tokens
        self.calls: list[tuple[str, str, str | None]] = []

    async def get(
        self, user_id: str, provider: str, *, rejected_fingerprint: str | None = None
    ) -> AccessToken:
        self.calls.append((user_id, provider, rejected_fingerprint))
        chain = self._tokens.get((user_id, provider))
        if not chain:
            raise NotConnectedError(f"no connection {user_id}/{provider}")
        refreshed = False
        if rejected_fingerprint is not None and token_fingerprint(chain[0]) == rejected_fingerprint:
            if len(chain) == 1:
                raise ReauthRequiredError(f"{user_id}/{provider}: no newer token")
            chain.pop(0)
            refreshed = True
        return AccessToken(chain[0], None, refreshed)


class TokenLease:
    """One user's token for the length of a session: asked for once, reused for every
    page, and replaced only when the provider refuses it.

    :meth:`call` is the one place the "provider refused the token → ask for a new one by
    fingerprint → retry once" rule lives, so no provider module repeats it. A second
    refusal is left to the caller's retry policy (it is retryable): if the grant is really
    gone, token-service learns it on its next refresh or from the provider's
    deauthorization, and ``token.get`` then answers revoked / reauth required.
    """

    def __init__(self, tokens: TokenSource, user_id: str, provider: str) -> None:
        self._tokens = tokens
        self.user_id = user_id
        self.provider = provider
        self._token: AccessToken | None = None
        # Whether any token this lease was given had just been refreshed for it.
        self.refreshed = False

    def _took(self, token: AccessToken) -> AccessToken:
        self._token = token
        self.refreshed = self.refreshed or token.refreshed
        return token

    async def current(self) -> AccessToken:
        if self._token is None:
            return self._took(await self._tokens.get(self.user_id, self.provider))
        return self._token

    async def call(self, fn: Callable[[str], Awaitable[T]]) -> T:
        token = await self.current()
        try:
            return await fn(token.value)
        except TokenRejectedError as first:
            self._token = None
            token = await self._tokens.get(
                self.user_id, self.provider, rejected_fingerprint=first.fingerprint
            )
            return await fn(self._took(token).value)


__all__ = [
    "AccessToken",
    "MemoryTokenSource",
    "NatsTokenSource",
    "TokenLease",
    "TokenSource",
]
