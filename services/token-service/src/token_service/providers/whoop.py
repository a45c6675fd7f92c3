"""WHOOP OAuth (PROVIDERS.md §7.1): exchange, refresh (always rotates: the old refresh
token and every earlier access token die at once), the user id from the basic profile,
and revocation through ``DELETE /v2/user/access``.

WHOOP runs ORY Hydra: errors are RFC 6749 bodies; branch on ``error`` only.
"""

from __future__ import annotations

from datetime import datetime
from typing import NoReturn

import aiohttp
from syncplane_common.clock import Clock
from syncplane_common.errors import PermanentError, ReauthRequiredError, RetryableError
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

NAME = "whoop"


def raise_for_answer(answer: Answer, during: During, now: datetime) -> NoReturn:
    """WHOOP's error answers as the error tree."""
    retry = transient(answer, now, what=f"whoop {during}")
    if retry is not None:
        if answer.status == 429 and retry.retry_after is None:
            # WHOOP sends no Retry-After; X-RateLimit-Reset is the seconds to wait (§7.2).
            reset = answer.header("X-RateLimit-Reset")
            if reset is not None and reset.strip().isdigit():
                retry.retry_after = float(reset.strip())
        raise retry
    error = str_field(answer.body, "error") or "no error code"
    if during == "refresh" and answer.status == 400 and error == "invalid_grant":
        raise ReauthRequiredError("whoop refused the refresh token (invalid_grant)")
    if during == "revoke" and answer.status == 401:
        raise ReauthRequiredError("whoop no longer accepts the access token")
    if during == "identify" and answer.status == 401:
        raise PermanentError("whoop refused the profile read: the read:profile scope is needed")
    raise PermanentError(f"whoop {during} answered {answer.status} ({error})")


class WhoopOAuth:
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
    ) -> None:
        self.http = Http(session, clock, raise_for_answer, NAME)
        self.oauth_base = oauth_base.rstrip("/")
        self.api_base = api_base.rstrip("/")
        self.client_id = client_id
        self.client_secret = client_secret

    async def _token(self, form: dict[str, str], during: During) -> TokenGrant:
        form = {**form, "client_id": self.client_id, "client_secret": self.client_secret}
        answer = await self.http.call("POST", f"{self.oauth_base}/token", during=during, form=form)
        body = answer.body
        return TokenGrant(
            access_token=require_access_token(body, f"whoop {during}"),
            refresh_token=str_field(body, "refresh_token"),
            expires_in=number_field(body, "expires_in"),
            scopes=parse_scopes(str_field(body, "scope")),
        )

    async def exchange(self, code: str, redirect_uri: str, code_verifier: str | None) -> TokenGrant:
        form = {"code": code, "redirect_uri": redirect_uri, "grant_type": "authorization_code"}
        if code_verifier:
            form["code_verifier"] = code_verifier
        return await self._token(form, "exchange")

    async def refresh(self, refresh_token: str) -> TokenGrant:
        # ``scope=offline`` keeps a refresh token coming in the answer (§7.1).
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "scope": "offline"}
        return await self._token(form, "refresh")

    async def identify(self, grant: TokenGrant) -> str | None:
        answer = await self.http.call(
            "GET",
            f"{self.api_base}/v2/user/profile/basic",
            during="identify",
            bearer=grant.access_token,
        )
        user_id = answer.body.get("user_id") if isinstance(answer.body, dict) else None
        if not isinstance(user_id, int | str) or isinstance(user_id, bool):
            raise RetryableError("whoop profile answered without a user_id")
        return str(user_id)

    async def revoke(self, access_token: str | None, refresh_token: str | None) -> None:
        del refresh_token
        if access_token is None:
            raise ReauthRequiredError("no whoop access token to revoke with")
        await self.http.call(
            "DELETE", f"{self.api_base}/v2/user/access", during="revoke", bearer=access_token
        )
