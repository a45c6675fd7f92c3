"""What every provider's OAuth client offers, and the one HTTP call path they share.

A provider module holds only what differs: its URLs, parameters, response fields, and
one function that turns its error answers into the error tree (``raise_for_answer``).
Transport failures (connection refused, reset, timeouts) become ``RetryableError`` here,
once, through :func:`syncplane_common.http.raise_for_transport`.

Secrets travel in form bodies, never in URLs: URLs end up in error messages, logs and
trace spans, bodies do not.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Literal, NoReturn, Protocol

import aiohttp
from syncplane_common import http
from syncplane_common.clock import Clock
from syncplane_common.errors import PermanentError, RetryableError
from syncplane_common.http import Answer, parse_retry_after

from token_service.domain import TokenGrant

During = Literal["exchange", "refresh", "revoke", "identify", "subscription"]


ErrorMapper = Callable[[Answer, During, datetime], NoReturn]


class OAuthProvider(Protocol):
    """One provider's OAuth endpoints, in the terms token-service needs."""

    name: str
    # Strava and WHOOP revoke with the access token itself, so an expired one must be
    # refreshed first; Google revokes by refresh token.
    revoke_needs_live_access_token: bool

    async def exchange(
        self, code: str, redirect_uri: str, code_verifier: str | None
    ) -> TokenGrant: ...

    async def refresh(self, refresh_token: str) -> TokenGrant: ...

    async def identify(self, grant: TokenGrant) -> str | None:
        """The provider's id of the account that granted access."""
        ...

    async def revoke(self, access_token: str | None, refresh_token: str | None) -> None:
        """Withdraw the grant; ``ReauthRequiredError`` means it was already dead."""
        ...


def transient(answer: Answer, now: datetime, *, what: str) -> RetryableError | None:
    """5xx and 429 are always worth retrying later, never a verdict on the credentials."""
    if answer.status == 429 or answer.status >= 500:
        retry_after = parse_retry_after(answer.header("Retry-After"), now)
        return RetryableError(f"{what} answered {answer.status}", retry_after=retry_after)
    return None


def unexpected(what: str, answer: Answer) -> PermanentError:
    return PermanentError(f"{what} answered {answer.status}")


def str_field(body: Any, key: str) -> str | None:
    value = body.get(key) if isinstance(body, dict) else None
    return value if isinstance(value, str) and value else None


def number_field(body: Any, key: str) -> float | None:
    value = body.get(key) if isinstance(body, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


class Http:
    """The one way provider clients call out: JSON in, error tree out."""

    def __init__(
        self, session: aiohttp.ClientSession, clock: Clock, raise_for: ErrorMapper, provider: str
    ):
        self.session = session
        self.clock = clock
        self.raise_for = raise_for
        self.provider = provider

    async def call(
        self,
        method: str,
        url: str,
        *,
        during: During,
        form: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        bearer: str | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> Answer:
        headers = {"Accept": "application/json"} if bearer is None else http.bearer(bearer)
        answer = await http.call(
            session or self.session,
            method,
            url,
            provider=self.provider,
            operation=during,
            headers=headers,
            params=params,
            form=form,
            allow_redirects=False,
        )
        if answer.status >= 300:
            self.raise_for(answer, during, self.clock.now())
        return answer


def require_access_token(body: Any, what: str) -> str:
    token = str_field(body, "access_token")
    if token is None:
        # A 2xx without a token is a provider hiccup, not a verdict on the grant.
        raise RetryableError(f"{what} answered without an access token")
    return token
