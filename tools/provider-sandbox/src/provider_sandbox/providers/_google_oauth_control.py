"""Control routes of the Google OAuth emulation (ARCHITECTURE §8, PROVIDERS.md §4.4): the
consent-screen mode, settings, accounts, minted tokens, user revocation, password change."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from provider_sandbox.providers._google_errors import control_body, control_error
from provider_sandbox.providers._google_oauth_state import AuthorizeMode, is_gmail

if TYPE_CHECKING:
    from provider_sandbox.providers.google_oauth import GoogleOAuth

CONTROL = "/_sandbox/google"
PROVIDER = "google"


class OAuthControl:
    def __init__(self, part: GoogleOAuth) -> None:
        self.part = part

    def setup(self, app: web.Application) -> None:
        app.router.add_post(f"{CONTROL}/authorize_mode", self.authorize_mode)
        app.router.add_get(f"{CONTROL}/settings", self.settings)
        app.router.add_post(f"{CONTROL}/settings", self.settings)
        app.router.add_post(f"{CONTROL}/accounts", self.create_account)
        app.router.add_post(f"{CONTROL}/accounts/{{account_id}}/tokens", self.tokens)
        app.router.add_post(f"{CONTROL}/accounts/{{account_id}}/revoke", self.revoke)
        app.router.add_post(
            f"{CONTROL}/accounts/{{account_id}}/password_change", self.password_change
        )

    async def authorize_mode(self, request: web.Request) -> web.Response:
        body = await control_body(request)
        if isinstance(body, web.Response):
            return body
        try:
            self.part.state.mode = AuthorizeMode.from_json(body)
        except ValueError as err:
            return control_error(str(err))
        return web.json_response(self.part.state.mode.as_dict())

    async def settings(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            body = await control_body(request)
            if isinstance(body, web.Response):
                return body
            try:
                self.part.settings.update(body)
            except ValueError as err:
                return control_error(str(err))
        return web.json_response(self.part.settings.as_dict())

    async def create_account(self, request: web.Request) -> web.Response:
        body = await control_body(request)
        if isinstance(body, web.Response):
            return body
        hint = body.get("login_hint")
        if hint is not None and not isinstance(hint, str):
            return control_error("login_hint must be a string")
        account = self.part.sandbox.accounts.get_or_create(PROVIDER, hint or None)
        return web.json_response(account.as_dict(), status=201)

    async def tokens(self, request: web.Request) -> web.Response:
        account_id = request.match_info["account_id"]
        if self.part.sandbox.accounts.get(PROVIDER, account_id) is None:
            return control_error(f"no Google account {account_id}", 404)
        body = await control_body(request)
        if isinstance(body, web.Response):
            return body
        raw = body.get("scopes")
        if not isinstance(raw, list) or not raw or not all(isinstance(s, str) for s in raw):
            return control_error("scopes must be a non-empty list of strings")
        offline = body.get("offline", True)
        limit = body.get("refresh_token_expires_in")
        if not isinstance(offline, bool) or not (
            limit is None or (isinstance(limit, int) and not isinstance(limit, bool) and limit > 0)
        ):
            return control_error("offline must be a boolean, refresh_token_expires_in > 0")
        try:
            response = self.part.mint(
                account_id, raw, offline=offline, refresh_token_expires_in=limit
            )
        except ValueError as err:
            return control_error(str(err))
        return web.json_response(response, status=201)

    async def revoke(self, request: web.Request) -> web.Response:
        account_id = request.match_info["account_id"]
        if self.part.sandbox.accounts.get(PROVIDER, account_id) is None:
            return control_error(f"no Google account {account_id}", 404)
        return web.json_response({"revoked": self.part.revoke_grants(account_id, None)})

    async def password_change(self, request: web.Request) -> web.Response:
        """Only refresh tokens carrying Gmail scopes die on a password change (§4.2)."""
        account_id = request.match_info["account_id"]
        if self.part.sandbox.accounts.get(PROVIDER, account_id) is None:
            return control_error(f"no Google account {account_id}", 404)
        killed = 0
        for record in self.part.state.pair_records(account_id, None):
            if any(is_gmail(scope) for scope in record.scopes):
                self.part.state.drop(record.token)
                self.part.sandbox.tokens.refresh.pop(record.token, None)
                killed += 1
        return web.json_response({"revoked": killed})
