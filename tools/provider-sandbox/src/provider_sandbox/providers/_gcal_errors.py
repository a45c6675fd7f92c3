"""Google's JSON error envelope for Calendar v3 (PROVIDERS.md §5.1): every error body the
Calendar emulation serves is built here, field by field from the documented wording."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

JSON_TYPE = "application/json"


class GoogleError(Exception):
    """Raised anywhere below a handler; the API wrapper turns it into the response."""

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        *,
        domain: str = "global",
        location: str | None = None,
        location_type: str | None = None,
        top_message: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.domain = domain
        self.location = location
        self.location_type = location_type
        self.top_message = top_message

    def body(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "domain": self.domain,
            "reason": self.reason,
            "message": self.message,
        }
        if self.location_type is not None:
            entry["locationType"] = self.location_type
        if self.location is not None:
            entry["location"] = self.location
        return {
            "error": {
                "errors": [entry],
                "code": self.status,
                "message": self.top_message or self.message,
            }
        }

    def response(self) -> web.Response:
        return web.json_response(self.body(), status=self.status, content_type=JSON_TYPE)


def auth_error() -> GoogleError:
    return GoogleError(
        401,
        "authError",
        "Invalid Credentials",
        location_type="header",
        location="Authorization",
    )


def rate_limited(status: int) -> GoogleError:
    return GoogleError(status, "rateLimitExceeded", "Rate Limit Exceeded", domain="usageLimits")


def user_rate_limited() -> GoogleError:
    return GoogleError(
        403, "userRateLimitExceeded", "User Rate Limit Exceeded", domain="usageLimits"
    )


def quota_exceeded() -> GoogleError:
    return GoogleError(
        403, "quotaExceeded", "Calendar usage limits exceeded.", domain="usageLimits"
    )


def backend_error() -> GoogleError:
    return GoogleError(500, "backendError", "Backend Error")


def not_found() -> GoogleError:
    return GoogleError(404, "notFound", "Not Found")


def full_sync_required() -> GoogleError:
    return GoogleError(
        410,
        "fullSyncRequired",
        "Sync token is no longer valid, a full sync is required.",
        domain="calendar",
        location_type="parameter",
        location="syncToken",
    )


def updated_min_too_old() -> GoogleError:
    return GoogleError(
        410,
        "updatedMinTooLongAgo",
        "The requested minimum modification time lies too far in the past.",
        domain="calendar",
        location_type="parameter",
        location="updatedMin",
    )


def deleted() -> GoogleError:
    return GoogleError(410, "deleted", "Resource has been deleted")


def precondition_failed() -> GoogleError:
    return GoogleError(
        412,
        "conditionNotMet",
        "Precondition Failed",
        location_type="header",
        location="If-Match",
    )


def duplicate() -> GoogleError:
    return GoogleError(409, "duplicate", "The requested identifier already exists.")


def parse_error() -> GoogleError:
    return GoogleError(400, "parseError", "Parse Error")


def invalid_parameter(name: str, message: str = "Invalid Value") -> GoogleError:
    return GoogleError(400, "invalid", message, location_type="parameter", location=name)


def bad_request(message: str = "Bad Request") -> GoogleError:
    return GoogleError(400, "badRequest", message)


def invalid(message: str, reason: str = "invalid") -> GoogleError:
    return GoogleError(400, reason, message)


def required(message: str) -> GoogleError:
    return GoogleError(400, "required", message)


def time_range_empty(location: str) -> GoogleError:
    return GoogleError(
        400,
        "timeRangeEmpty",
        "The specified time range is empty.",
        location_type="parameter",
        location=location,
    )


_BY_STATUS: dict[int, Callable[[], GoogleError]] = {
    400: lambda: bad_request(),
    401: auth_error,
    403: lambda: rate_limited(403),
    404: not_found,
    409: duplicate,
    410: full_sync_required,
    412: precondition_failed,
    429: lambda: rate_limited(429),
    500: backend_error,
    503: lambda: GoogleError(503, "backendError", "Backend Error"),
}


class GcalErrors:
    """Renders an injected fault's status in Google's envelope; 403 and 429 become the
    quota errors clients back off on, 410 the sync-token expiry."""

    def error_response(self, status: int) -> web.Response:
        make = _BY_STATUS.get(status)
        error = make() if make else GoogleError(status, "backendError", "Backend Error")
        return error.response()


_NAMED: dict[str, Callable[[], GoogleError]] = {
    "rateLimitExceeded": lambda: rate_limited(403),
    "rateLimitExceeded429": lambda: rate_limited(429),
    "userRateLimitExceeded": user_rate_limited,
    "quotaExceeded": quota_exceeded,
    "backendError": backend_error,
}

INJECTABLE = frozenset(_NAMED)


def named_error(reason: str) -> GoogleError:
    return _NAMED[reason]()
