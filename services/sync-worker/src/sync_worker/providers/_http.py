"""Query-parameter formatting the cursor-paginated clients (WHOOP, Google Fit) share.
Calling an API is :func:`syncplane_common.http.call`, as in every service.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["utc_millis"]


def utc_millis(value: datetime, what: str) -> str:
    """An instant as a query parameter: RFC 3339 in UTC with milliseconds and ``Z``, the
    form WHOOP and Google document. A naive ``value`` has no instant: ValueError."""
    if value.tzinfo is None:
        raise ValueError(f"{what} must be timezone-aware")
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
