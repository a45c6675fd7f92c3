"""Strava's error envelope and the sandbox's Strava knobs (PROVIDERS.md §3.1, §3.2, §3.5).

Strava never sends RFC 6749 ``error`` fields: every error is ``{"message", "errors":
[{"resource", "field", "code"}]}``, and callers must decide on the ``errors`` entry.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from aiohttp import web

from provider_sandbox.config import PREFIXES

PROVIDER = "strava"
API_PREFIX = PREFIXES["STRAVA_API_BASE"]
OAUTH_PREFIX = PREFIXES["STRAVA_OAUTH_BASE"]
# OAuth routes hang off here with templates "/oauth/...", so their stats keys and fault
# endpoints read like the real paths ("strava POST /oauth/token") on both token URLs.
OAUTH_ROOT = OAUTH_PREFIX.removesuffix("/oauth")

SCOPES = frozenset(
    {
        "read",
        "read_all",
        "profile:read_all",
        "profile:write",
        "activity:read",
        "activity:read_all",
        "activity:write",
    }
)
ROTATIONS = ("always", "never", "random")

MESSAGES = {
    400: "Bad Request",
    401: "Authorization Error",
    403: "Forbidden",
    404: "Record Not Found",
    429: "Rate Limit Exceeded",
}


def error_body(message: str, resource: str, field_name: str, code: str) -> dict[str, Any]:
    return {
        "message": message,
        "errors": [{"resource": resource, "field": field_name, "code": code}],
    }


def error(status: int, resource: str, field_name: str, code: str) -> web.Response:
    return web.json_response(
        error_body(MESSAGES.get(status, "Error"), resource, field_name, code), status=status
    )


def bad_request(resource: str, field_name: str, code: str = "invalid") -> web.Response:
    return error(400, resource, field_name, code)


def authorization_error() -> web.Response:
    return error(401, "Athlete", "access_token", "invalid")


def missing_permission(scope: str) -> web.Response:
    # What Strava answers a valid token that lacks the scope, e.g. activity:read.
    return error(401, "AccessToken", f"{scope}_permission", "missing")


def rate_limit_exceeded() -> web.Response:
    return error(429, "Application", "rate limit", "exceeded")


def not_found(resource: str) -> web.Response:
    return error(404, resource, "id", "invalid")


class StravaErrors:
    """Injected faults spelled as Strava would; API responses also carry the limit
    headers, which Strava sends on every API response."""

    def __init__(self, headers: Callable[[], Mapping[str, str]] | None = None) -> None:
        self.headers = headers

    def error_response(self, status: int) -> web.Response:
        if status == 429:
            response = rate_limit_exceeded()
        elif status == 401:
            response = authorization_error()
        elif status == 404:
            response = not_found("Activity")
        elif status < 500:
            response = error(status, "Application", "", "invalid")
        else:
            response = web.json_response(
                {
                    "message": "Internal Server Error" if status == 500 else "Service Unavailable",
                    "errors": [],
                },
                status=status,
            )
        if self.headers is not None:
            response.headers.update(self.headers())
        return response


def control_error(status: int, message: str) -> web.Response:
    code = {400: "bad_request", 404: "not_found", 409: "conflict"}.get(status, "error")
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


async def control_body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise web.HTTPBadRequest(
            text=json.dumps({"error": {"code": "bad_request", "message": "body is not JSON"}}),
            content_type="application/json",
        ) from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(
            text=json.dumps({"error": {"code": "bad_request", "message": "expected an object"}}),
            content_type="application/json",
        )
    return body


def _pair(value: object, name: str) -> tuple[int, int]:
    if isinstance(value, str):
        value = value.split(",")
    if (
        isinstance(value, list | tuple)
        and len(value) == 2
        and all(isinstance(v, int | str) and not isinstance(v, bool) for v in value)
    ):
        try:
            fifteen, daily = (int(v) for v in value)
        except ValueError:
            pass
        else:
            if fifteen > 0 and daily > 0:
                return fifteen, daily
    raise ValueError(f"{name} must be [<15-min limit>, <daily limit>], both positive")


@dataclass
class Settings:
    """Behaviour knobs, changed at run time by ``POST /_sandbox/strava/config``.

    ``authorize_mode`` / ``authorize_scopes`` are set by
    ``POST /_sandbox/strava/authorize_mode``; the rest by the config route.
    """

    rotation: str = "random"
    rotation_probability: float = 0.5
    rate_limit: tuple[int, int] = (200, 2000)
    read_rate_limit: tuple[int, int] = (100, 1000)
    code_ttl_seconds: float = 600.0
    callback_domain: str = "localhost"
    short_pages: int = 0
    big_ids: bool = False
    after_ascending: bool = False
    retry_gap_seconds: float = 1.0
    delivery_timeout_seconds: float = 2.0
    validation_timeout_seconds: float = 2.0
    duplicate_rate: float = 0.0
    deauthorize_event: bool = True
    private_switch_as_delete: bool = False
    events_require_authorization: bool = True
    authorize_mode: str = "approve"
    authorize_scopes: frozenset[str] | None = None

    @classmethod
    def from_env(cls, extra: Mapping[str, str]) -> Settings:
        settings = cls()
        names = {
            "SANDBOX_STRAVA_ROTATION": "rotation",
            "SANDBOX_STRAVA_RATE_LIMIT": "rate_limit",
            "SANDBOX_STRAVA_READ_RATE_LIMIT": "read_rate_limit",
            "SANDBOX_STRAVA_CALLBACK_DOMAIN": "callback_domain",
            "SANDBOX_STRAVA_BIG_IDS": "big_ids",
            "SANDBOX_STRAVA_RETRY_GAP_SECONDS": "retry_gap_seconds",
        }
        changes: dict[str, Any] = {}
        for env_name, key in names.items():
            if env_name in extra:
                raw = extra[env_name]
                default = getattr(settings, key)
                if isinstance(default, bool):
                    changes[key] = raw.lower() in ("1", "true", "yes")
                elif isinstance(default, float):
                    changes[key] = float(raw)
                else:
                    changes[key] = raw
        settings.apply(changes)
        return settings

    def copy(self) -> Settings:
        return replace(self)

    def restore(self, defaults: Settings) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(defaults, f.name))

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, frozenset):
                value = sorted(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    def apply(self, changes: Mapping[str, Any]) -> None:
        """Validate every change first, then apply them all (or none)."""
        known = {f.name for f in fields(self)} - {"authorize_mode", "authorize_scopes"}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown Strava settings: {sorted(unknown)}")
        staged: dict[str, Any] = {}
        for key, value in changes.items():
            staged[key] = self._validated(key, value)
        for key, value in staged.items():
            setattr(self, key, value)

    def _validated(self, key: str, value: Any) -> Any:
        default = getattr(Settings, key, None)
        if key == "rotation":
            if value not in ROTATIONS:
                raise ValueError(f"rotation must be one of {list(ROTATIONS)}")
            return value
        if key in ("rate_limit", "read_rate_limit"):
            return _pair(value, key)
        if key in ("rotation_probability", "duplicate_rate"):
            if not _is_number(value) or not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{key} must be within [0, 1]")
            return float(value)
        if key == "short_pages":
            if not isinstance(value, int) or isinstance(value, bool) or value == 1 or value < 0:
                raise ValueError("short_pages is a period >= 2 (one hole every N slots), or 0")
            return value
        if key == "callback_domain":
            if not isinstance(value, str) or not value:
                raise ValueError("callback_domain must be a host name")
            return value.lower()
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ValueError(f"{key} must be a boolean")
            return value
        if isinstance(default, float):
            if not _is_number(value) or float(value) < 0:
                raise ValueError(f"{key} must be a non-negative number")
            return float(value)
        raise ValueError(f"cannot set {key}")  # pragma: no cover

    def set_authorize_mode(self, body: Mapping[str, Any]) -> None:
        mode = body.get("mode", "approve")
        if mode not in ("approve", "deny"):
            raise ValueError("mode must be 'approve' or 'deny'")
        scopes = body.get("scopes")
        if scopes is not None:
            if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
                raise ValueError("scopes must be a list of scope names, or null")
            if set(scopes) - SCOPES:
                raise ValueError(f"unknown scopes: {sorted(set(scopes) - SCOPES)}")
        self.authorize_mode = mode
        self.authorize_scopes = None if scopes is None else frozenset(scopes)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
