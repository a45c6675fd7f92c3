"""The record fields a caller may set through the control routes (PROVIDERS.md §7.3),
checked and normalized before anything is created or changed."""

from __future__ import annotations

from typing import Any

from provider_sandbox.providers import _whoop_values as values
from provider_sandbox.providers._whoop_records import SCORE_STATES

_SPAN = {"start", "end", "timezone_offset", "score_state", "score"}
EDITABLE: dict[str, set[str]] = {
    "cycle": _SPAN,
    "sleep": _SPAN | {"nap"},
    "recovery": {"score_state", "score"},
    "workout": _SPAN | {"sport_name", "sport_id"},
}
LINKS: dict[str, set[str]] = {
    "cycle": set(),
    "sleep": {"cycle_id"},
    "recovery": {"sleep_id"},
    "workout": set(),
}


def parse_fields(kind: str, fields: dict[str, Any], allowed: set[str]) -> dict[str, Any]:
    """Fields as the data layer takes them (instants as epoch ms); ``ValueError`` names
    the first field WHOOP would not have."""
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise ValueError(f"fields not settable on a {kind}: {unknown}")
    given: dict[str, Any] = {}
    for name, value in fields.items():
        if name in ("start", "end"):
            if value is None and name == "end" and kind == "cycle":
                given[name] = None
                continue
            instant = values.parse_instant(value) if isinstance(value, str) else None
            if instant is None:
                raise ValueError(f"{name} must be an RFC 3339 date-time with an offset")
            given[name] = instant
        elif name == "timezone_offset":
            if not isinstance(value, str) or not values.TZ_DESIGNATOR.match(value):
                raise ValueError("timezone_offset must be '+hh:mm', '-hh:mm' or 'Z'")
            given[name] = value
        elif name == "score_state":
            if value not in SCORE_STATES:
                raise ValueError(f"score_state must be one of {list(SCORE_STATES)}")
            given[name] = value
        elif name == "score":
            if not isinstance(value, dict):
                raise ValueError("score must be an object")
            given[name] = value
        elif name == "nap":
            if not isinstance(value, bool):
                raise ValueError("nap must be a boolean")
            given[name] = value
        elif name in ("sport_id", "cycle_id"):
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{name} must be an integer")
            given[name] = value
        else:  # sport_name, sleep_id
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a non-empty string")
            given[name] = value.lower() if name == "sleep_id" else value
    if given.get("end") is not None and "start" in given and given["end"] <= given["start"]:
        raise ValueError("end must be after start")
    return given
