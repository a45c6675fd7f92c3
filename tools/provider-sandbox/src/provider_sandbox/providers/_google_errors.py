"""Google's error bodies for the OAuth endpoints (PROVIDERS.md §4.3) and the googleapis.com
JSON envelope the Fit API answers with (§5.1, §6.1): one place builds each shape."""

from __future__ import annotations

from html import escape
from typing import Any

from aiohttp import web

from provider_sandbox.core import Sandbox

# google.rpc.Code names that googleapis.com puts in ``error.status`` beside the HTTP code.
RPC_STATUS: dict[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    410: "NOT_FOUND",
    412: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

AUTH_REALM = 'Bearer realm="https://accounts.google.com/"'
_SEE_DOCS = (
    "Expected OAuth 2 access token, login cookie or other valid authentication credential. "
    "See https://developers.google.com/identity/sign-in/web/devconsole-project."
)


def api_error(
    status: int,
    message: str,
    reason: str,
    *,
    domain: str = "global",
    item_message: str | None = None,
    location: str | None = None,
    location_type: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """The googleapis.com envelope: ``error.code`` equals the HTTP status, ``errors[]``
    carries the legacy domain/reason pair, ``status`` the RPC code name."""
    item: dict[str, Any] = {
        "message": item_message or message,
        "domain": domain,
        "reason": reason,
    }
    if location_type is not None:
        item["locationType"] = location_type
    if location is not None:
        item["location"] = location
    body = {
        "error": {
            "code": status,
            "message": message,
            "errors": [item],
            "status": RPC_STATUS.get(status, "UNKNOWN"),
        }
    }
    return web.json_response(body, status=status, headers=headers)


def unauthenticated(*, missing: bool = False) -> web.Response:
    """401 for a missing, unknown, expired or revoked access token."""
    if missing:
        return api_error(
            401,
            f"Request is missing required authentication credential. {_SEE_DOCS}",
            "required",
            item_message="Login Required.",
            location="Authorization",
            location_type="header",
            headers={"WWW-Authenticate": AUTH_REALM},
        )
    return api_error(
        401,
        f"Request had invalid authentication credentials. {_SEE_DOCS}",
        "authError",
        item_message="Invalid Credentials",
        location="Authorization",
        location_type="header",
        headers={"WWW-Authenticate": f'{AUTH_REALM}, error="invalid_token"'},
    )


def insufficient_scope(required: frozenset[str]) -> web.Response:
    challenge = f'{AUTH_REALM}, error="insufficient_scope", scope="{" ".join(sorted(required))}"'
    return api_error(
        403,
        "Request had insufficient authentication scopes.",
        "insufficientPermissions",
        item_message="Insufficient Permission",
        headers={"WWW-Authenticate": challenge},
    )


def rate_limit_exceeded(status: int) -> web.Response:
    return api_error(status, "Rate Limit Exceeded", "rateLimitExceeded", domain="usageLimits")


class ApiErrors:
    """Renders an injected status for one googleapis.com endpoint; rate-limit answers are
    counted under the endpoint's stats key like the ones the emulation serves itself."""

    def __init__(self, sandbox: Sandbox, key: str) -> None:
        self.sandbox = sandbox
        self.key = key

    def error_response(self, status: int) -> web.Response:
        if status in (403, 429):
            self.sandbox.stats.rate_limited[self.key] += 1
            return rate_limit_exceeded(status)
        if status == 401:
            return unauthenticated()
        if status == 400:
            return api_error(400, "Bad Request", "badRequest")
        if status == 404:
            return api_error(404, "Not Found", "notFound")
        if status >= 500:
            return api_error(status, "Backend Error", "backendError")
        return api_error(status, "Error", "unknown")


def oauth_error(status: int, error: str, description: str) -> web.Response:
    """The token and revoke endpoints' flat OAuth body (§4.3): ``error`` plus
    ``error_description``; clients must branch on ``error`` only."""
    return web.json_response(
        {"error": error, "error_description": description},
        status=status,
        headers={"Cache-Control": "no-cache, no-store, max-age=0, must-revalidate"},
    )


def invalid_grant(description: str = "Token has been expired or revoked.") -> web.Response:
    return oauth_error(400, "invalid_grant", description)


class OAuthErrors:
    """Injected statuses on the token and revoke endpoints, in the OAuth body shape."""

    def __init__(self, sandbox: Sandbox, key: str) -> None:
        self.sandbox = sandbox
        self.key = key

    def error_response(self, status: int) -> web.Response:
        if status == 429:
            self.sandbox.stats.rate_limited[self.key] += 1
            return oauth_error(429, "rate_limit_exceeded", "Rate Limit Exceeded")
        if status == 401:
            return oauth_error(401, "invalid_client", "Unauthorized")
        if status == 400:
            return oauth_error(400, "invalid_request", "Bad Request")
        if status >= 500:
            return oauth_error(status, "internal_failure", "Backend Error")
        return oauth_error(status, "invalid_request", "Bad Request")


def error_page(status: int, error: str, description: str) -> web.Response:
    """accounts.google.com shows an HTML error page (no redirect) when the client or the
    redirect URI cannot be trusted, or the request is malformed."""
    html = (
        "<!doctype html><html><head><title>Error</title></head><body>"
        f"<h1>Access blocked: authorization error</h1><p>Error {status}: {escape(error)}</p>"
        f"<p>{escape(description)}</p></body></html>"
    )
    return web.Response(status=status, text=html, content_type="text/html")


class PageErrors:
    """Injected statuses on the authorize endpoint, as error pages."""

    def error_response(self, status: int) -> web.Response:
        return error_page(status, "server_error", "Something went wrong. Try again later.")


# -- the sandbox's own control API ----------------------------------------------------------


def control_error(message: str, status: int = 400) -> web.Response:
    """Control-API errors use the sandbox's own shape (ARCHITECTURE §8), not Google's."""
    code = {400: "bad_request", 404: "not_found"}.get(status, "error")
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


async def control_body(request: web.Request) -> dict[str, Any] | web.Response:
    """A control call's JSON object body (an empty body counts as ``{}``)."""
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        return control_error("body is not JSON")
    if not isinstance(body, dict):
        return control_error("expected a JSON object")
    return body
