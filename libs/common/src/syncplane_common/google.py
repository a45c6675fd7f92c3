"""Google APIs' JSON error body (PROVIDERS.md §5.1, §6.5), read the same way by every
client of a Google API (Calendar in calendar-sync, Fit in sync-worker)::

    {"error": {"code": 403, "message": "...",
               "errors": [{"domain": "usageLimits", "reason": "rateLimitExceeded", ...}]}}

Only the reading is shared; what a reason means stays in each provider module.
"""

from __future__ import annotations

from typing import Any

__all__ = ["google_error"]


def google_error(body: Any) -> tuple[str, list[dict[str, str]]]:
    """``(message, errors)``; each error as ``domain`` / ``reason`` / ``message`` strings.
    A body of another shape reads as ``("", [])``."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "", []
    message = error.get("message")
    items = error.get("errors")
    errors = [
        {k: str(e.get(k, "")) for k in ("domain", "reason", "message")}
        for e in (items if isinstance(items, list) else [])
        if isinstance(e, dict)
    ]
    return (message if isinstance(message, str) else ""), errors
