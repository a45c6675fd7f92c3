"""The gateway's one error shape: ``{"error": {"code", "message"}}`` with the right status
(ARCHITECTURE §8), and the mapping of the error tree to HTTP statuses."""

from __future__ import annotations

from typing import NoReturn

from aiohttp import web
from syncplane_common.errors import (
    NotConnectedError,
    NotFoundError,
    PermanentError,
    ProviderUnavailableError,
    ReauthRequiredError,
    RetryableError,
    RevokedError,
    SyncplaneError,
)


def error_response(
    status: int, code: str, message: str, *, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(
        {"error": {"code": code, "message": message}}, status=status, headers=headers
    )


def fail(
    status: int, code: str, message: str, *, headers: dict[str, str] | None = None
) -> NoReturn:
    """Stop handling with our JSON error body (for use deep inside a handler)."""
    exc = web.HTTPException(
        text=error_response(status, code, message).text,
        content_type="application/json",
        headers=headers,
    )
    exc.set_status(status)
    raise exc


def from_error(err: SyncplaneError) -> web.Response:
    """An error from a service (via rpc) as the app API answers it."""
    if isinstance(err, ProviderUnavailableError):
        # The provider failed, not us: 502, so the app can tell "WHOOP is down" apart.
        retry = {"Retry-After": str(max(1, round(err.retry_after or 1)))}
        return error_response(502, "provider_unavailable", err.message, headers=retry)
    if isinstance(err, RetryableError):
        retry = {"Retry-After": str(max(1, round(err.retry_after or 1)))}
        return error_response(503, "unavailable", err.message, headers=retry)
    if isinstance(err, ReauthRequiredError):
        return error_response(409, "reauth_required", err.message)
    if isinstance(err, NotConnectedError):
        return error_response(404, "not_connected", err.message)
    if isinstance(err, RevokedError):
        return error_response(409, "revoked", err.message)
    if isinstance(err, NotFoundError):
        return error_response(404, "not_found", err.message)
    if isinstance(err, PermanentError):
        return error_response(400, "bad_request", err.message)
    return error_response(500, "internal", "internal error")
