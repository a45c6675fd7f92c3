"""Calendar v3 Event fields a client may write (PROVIDERS.md §5.2 "Event fields"): which
are kept, which are read-only and silently ignored as Google does, and their checks."""

from __future__ import annotations

from typing import Any

from provider_sandbox.providers._gcal_errors import invalid

# Read-only or server-computed: Google ignores them in request bodies.
READ_ONLY = frozenset(
    {
        "kind",
        "etag",
        "id",
        "htmlLink",
        "created",
        "updated",
        "creator",
        "organizer",
        "hangoutLink",
        "recurringEventId",
        "attendeesOmitted",
        "privateCopy",
        "locked",
    }
)

WRITABLE = frozenset(
    {
        "anyoneCanAddSelf",
        "attachments",
        "attendees",
        "birthdayProperties",
        "colorId",
        "conferenceData",
        "description",
        "end",
        "endTimeUnspecified",
        "eventType",
        "extendedProperties",
        "focusTimeProperties",
        "gadget",
        "guestsCanInviteOthers",
        "guestsCanModify",
        "guestsCanSeeOtherGuests",
        "iCalUID",
        "location",
        "originalStartTime",
        "outOfOfficeProperties",
        "recurrence",
        "reminders",
        "sequence",
        "source",
        "start",
        "status",
        "summary",
        "transparency",
        "visibility",
        "workingLocationProperties",
    }
)

_ENUMS = {
    "status": frozenset({"confirmed", "tentative", "cancelled"}),
    "transparency": frozenset({"opaque", "transparent"}),
    "visibility": frozenset({"default", "public", "private", "confidential"}),
    "eventType": frozenset(
        {"default", "outOfOffice", "focusTime", "workingLocation", "birthday", "fromGmail"}
    ),
}
_STRINGS = frozenset({"summary", "description", "location", "colorId", "iCalUID"})
_BOOLS = frozenset(
    {
        "anyoneCanAddSelf",
        "endTimeUnspecified",
        "guestsCanInviteOthers",
        "guestsCanModify",
        "guestsCanSeeOtherGuests",
    }
)


def _check(name: str, value: Any) -> None:
    if name in _ENUMS and value not in _ENUMS[name]:
        raise invalid(f"Invalid value for: {name}")
    if name in _STRINGS and not isinstance(value, str):
        raise invalid(f"Invalid value for: {name}")
    if name in _BOOLS and not isinstance(value, bool):
        raise invalid(f"Invalid value for: {name}")
    if name == "sequence" and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        raise invalid("Invalid sequence value.")
    if name in ("attendees", "attachments", "recurrence") and not isinstance(value, list):
        raise invalid(f"Invalid value for: {name}")
    if name == "extendedProperties":
        _check_properties(value)


def _check_properties(value: Any) -> None:
    if not isinstance(value, dict) or set(value) - {"private", "shared"}:
        raise invalid("Invalid value for: extendedProperties")
    for scope in value.values():
        if scope is None:
            continue
        if not isinstance(scope, dict) or not all(
            isinstance(k, str) and (isinstance(v, str) or v is None) for k, v in scope.items()
        ):
            raise invalid("Invalid value for: extendedProperties")


def validate_fields(body: dict[str, Any], *, partial: bool = False) -> dict[str, Any]:
    """The writable fields of a request body; unknown and read-only ones are dropped.
    With ``partial`` (patch), ``null`` survives to mean "clear this field"."""
    out: dict[str, Any] = {}
    for name, value in body.items():
        if name not in WRITABLE:
            continue
        if value is None:
            if partial:
                out[name] = None
            continue
        _check(name, value)
        out[name] = value
    return out


def matches_properties(
    data: dict[str, Any], scope: str, wanted: tuple[tuple[str, str], ...]
) -> bool:
    props = (data.get("extendedProperties") or {}).get(scope) or {}
    return all(props.get(k) == v for k, v in wanted)


def matches_text(data: dict[str, Any], needle: str) -> bool:
    haystack = " ".join(
        str(data.get(k, "")) for k in ("summary", "description", "location")
    ).casefold()
    return all(word in haystack for word in needle.casefold().split())
