"""Strava OAuth (PROVIDERS.md §3.1) and the app's push subscription (§3.4).

Strava's errors are ``{"message", "errors": [{"resource", "field", "code"}]}`` and never
RFC 6749 ``error`` fields: decide on the ``errors`` entry, not on ``message``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, NoReturn

import aiohttp
from syncplane_common.clock import Clock
from syncplane_common.errors import (
    PermanentError,
    ReauthRequiredError,
    RetryableError,
)
from syncplane_common.http import Answer

from token_service.domain import TokenGrant, parse_scopes
from token_service.providers.base import (
    During,
    Http,
    number_field,
    require_access_token,
    str_field,
    transient,
)

NAME = "strava"


def _entries(body: Any) -> list[tuple[str, str, str]]:
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        return []
    return [
        (str(e.get("resource", "")), str(e.get("field", "")), str(e.get("code", "")))
        for e in errors
        if isinstance(e, dict)
    ]


def _next_quarter_hour(now: datetime) -> float:
    # Strava's short window resets on clock quarter-hours (§3.2): probing earlier only
    # spends the daily budget.
    start = now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0)
    return ((start + timedelta(minutes=15)) - now).total_seconds()


def raise_for_answer(answer: Answer, during: During, now: datetime) -> NoReturn:
    """Strava's error answers as the error tree."""
    retry = transient(answer, now, what=f"strava {during}")
    if retry is not None:
        if answer.status == 429 and retry.retry_after is None:
            retry.retry_after = _next_quarter_hour(now)
        raise retry
    entries = _entries(answer.body)
    described = ", ".join("/".join(e) for e in entries) or "no details"
    if during == "refresh" and answer.status == 400:
        refused = any(
            r == "RefreshToken" or (f == "refresh_token" and c == "invalid") for r, f, c in entries
        )
        if refused:
            raise ReauthRequiredError(f"strava refused the refresh token ({described})")
    if during == "revoke" and answer.status == 401:
        raise ReauthRequiredError("strava no longer accepts the access token")
    raise PermanentError(f"strava {during} answered {answer.status} ({described})")


class StravaOAuth:
    name = NAME
    revoke_needs_live_access_token = True

    def __init__(
        self,
        session: aiohttp.ClientSession,
        clock: Clock,
        *,
        oauth_base: str,
        api_base: str,
        client_id: str,
        client_secret: str,
        admin_session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.http = Http(session, clock, raise_for_answer, NAME)
        self.oauth_base = oauth_base.rstrip("/")
        self.api_base = api_base.rstrip("/")
        self.client_id = client_id
        self.client_secret = client_secret
        # Subscription calls carry the client secret in the query string (Strava's view
        # and delete take it there), so they go through a session that is not traced.
        self.admin_session = admin_session

    def _credentials(self) -> dict[str, str]:
        return {"client_id": self.client_id, "client_secret": self.client_secret}

    @staticmethod
    def _grant(body: Any, what: str) -> TokenGrant:
        athlete = body.get("athlete") if isinstance(body, dict) else None
        athlete_id = athlete.get("id") if isinstance(athlete, dict) else None
        return TokenGrant(
            access_token=require_access_token(body, what),
            refresh_token=str_field(body, "refresh_token"),
            expires_in=number_field(body, "expires_in"),
            expires_at_epoch=number_field(body, "expires_at"),
            # Strava's token response does not say what was granted; the callback's
            # ``scope`` parameter does, and the gateway passes it along.
            scopes=parse_scopes(str_field(body, "scope")),
            account_id=str(athlete_id) if isinstance(athlete_id, int | str) else None,
        )

    async def exchange(self, code: str, redirect_uri: str, code_verifier: str | None) -> TokenGrant:
        # Strava has no PKCE (§3.1): the verifier has nothing to be checked against.
        del redirect_uri, code_verifier
        form = {**self._credentials(), "code": code, "grant_type": "authorization_code"}
        answer = await self.http.call(
            "POST", f"{self.oauth_base}/token", during="exchange", form=form
        )
        grant = self._grant(answer.body, "strava exchange")
        if grant.account_id is None:
            raise RetryableError("strava exchange answered without an athlete")
        return grant

    async def refresh(self, refresh_token: str) -> TokenGrant:
        form = {
            **self._credentials(),
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
        }
        answer = await self.http.call(
            "POST", f"{self.oauth_base}/token", during="refresh", form=form
        )
        return self._grant(answer.body, "strava refresh")

    async def identify(self, grant: TokenGrant) -> str | None:
        return grant.account_id

    async def revoke(self, access_token: str | None, refresh_token: str | None) -> None:
        del refresh_token
        if access_token is None:
            raise ReauthRequiredError("no strava access token to deauthorize with")
        await self.http.call(
            "POST",
            f"{self.oauth_base}/deauthorize",
            during="revoke",
            form={"access_token": access_token},
        )

    # -- push subscription (app credentials, not an athlete's) ----------------------------

    async def subscriptions(self) -> list[dict[str, Any]]:
        answer = await self.http.call(
            "GET",
            f"{self.api_base}/push_subscriptions",
            during="subscription",
            params=self._credentials(),
            session=self.admin_session,
        )
        body = answer.body
        return [item for item in body if isinstance(item, dict)] if isinstance(body, list) else []

    async def delete_subscription(self, subscription_id: int) -> None:
        await self.http.call(
            "DELETE",
            f"{self.api_base}/push_subscriptions/{subscription_id}",
            during="subscription",
            form=self._credentials(),
            session=self.admin_session,
        )

    async def create_subscription(self, callback_url: str, verify_token: str) -> int:
        """Strava validates ``callback_url`` synchronously before it answers (§3.4)."""
        answer = await self.http.call(
            "POST",
            f"{self.api_base}/push_subscriptions",
            during="subscription",
            form={
                **self._credentials(),
                "callback_url": callback_url,
                "verify_token": verify_token,
            },
            session=self.admin_session,
        )
        sub_id = number_field(answer.body, "id")
        if sub_id is None:
            raise RetryableError("strava created a subscription without an id")
        return int(sub_id)
