"""Google OAuth 2.0 (PROVIDERS.md §4), shared by the Google Fit and Google Calendar
connections: code exchange with PKCE, refresh (never rotated, no refresh token in the
answer), revoke.

Errors are RFC 6749 bodies; branch on ``error`` only, its description varies (§4.3).
"""

from __future__ import annotations

from datetime import datetime
from typing import NoReturn

import aiohttp
from syncplane_common.clock import Clock
from syncplane_common.errors import PermanentError, ReauthRequiredError
from syncplane_common.http import Answer

from token_service.domain import TokenGrant, id_token_subject, parse_scopes
from token_service.providers.base import (
    During,
    Http,
    number_field,
    require_access_token,
    str_field,
    transient,
)

# Definitive refusals of a refresh: the grant is dead, or an admin restricted a scope it
# holds (§4.2). Either way only the user, reconnecting, can fix it.
REFUSALS = frozenset({"invalid_grant", "admin_policy_enforced"})


def raise_for_answer(answer: Answer, during: During, now: datetime) -> NoReturn:
    """Google's OAuth error answers as the error tree."""
    retry = transient(answer, now, what=f"google {during}")
    if retry is not None:
        raise retry
    error = str_field(answer.body, "error") or "no error code"
    if during == "refresh" and answer.status == 400 and error in REFUSALS:
        raise ReauthRequiredError(f"google refused the refresh token ({error})")
    if during == "revoke" and answer.status == 400 and error == "invalid_token":
        raise ReauthRequiredError("google no longer knows the token (already revoked)")
    if during == "exchange" and error == "invalid_grant":
        raise PermanentError("google refused the authorization code: invalid, expired or used")
    raise PermanentError(f"google {during} answered {answer.status} ({error})")


class GoogleOAuth:
    revoke_needs_live_access_token = False

    def __init__(
        self,
        session: aiohttp.ClientSession,
        clock: Clock,
        *,
        name: str,
        token_url: str,
        revoke_url: str,
        client_id: str,
        client_secret: str,
    ) -> None:
        self.name = name
        self.http = Http(session, clock, raise_for_answer, name)
        self.token_url = token_url
        self.revoke_url = revoke_url
        self.client_id = client_id
        self.client_secret = client_secret

    async def _token(self, form: dict[str, str], during: During) -> TokenGrant:
        form = {**form, "client_id": self.client_id, "client_secret": self.client_secret}
        answer = await self.http.call("POST", self.token_url, during=during, form=form)
        body = answer.body
        id_token = str_field(body, "id_token")
        return TokenGrant(
            access_token=require_access_token(body, f"google {during}"),
            refresh_token=str_field(body, "refresh_token"),
            expires_in=number_field(body, "expires_in"),
            scopes=parse_scopes(str_field(body, "scope")),
            account_id=id_token_subject(id_token),
            id_token=id_token,
        )

    async def exchange(self, code: str, redirect_uri: str, code_verifier: str | None) -> TokenGrant:
        form = {"code": code, "redirect_uri": redirect_uri, "grant_type": "authorization_code"}
        if code_verifier:
            form["code_verifier"] = code_verifier
        return await self._token(form, "exchange")

    async def refresh(self, refresh_token: str) -> TokenGrant:
        return await self._token(
            {"refresh_token": refresh_token, "grant_type": "refresh_token"}, "refresh"
        )

    async def identify(self, grant: TokenGrant) -> str | None:
        # The subject comes from the ID token, present when ``openid`` was granted (the
        # gateway asks for it); a userinfo call would be the fallback, not needed here.
        return grant.account_id

    async def revoke(self, access_token: str | None, refresh_token: str | None) -> None:
        # Revoking the refresh token takes its access tokens with it (§4.3). In the body:
        # Google's doc shows ?token= in the URL, which would put the token in logs.
        token = refresh_token or access_token
        if token is None:
            raise ReauthRequiredError("no google token to revoke")
        await self.http.call("POST", self.revoke_url, during="revoke", form={"token": token})
