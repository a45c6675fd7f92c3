"""Strava's SummaryActivity / DetailedActivity as a wire model (PROVIDERS.md §3.3).

Field names are Strava's. Ids must stay exact: the body is decoded with ``json.loads``
(Python ints are arbitrary precision) and ids are strict ints, so nothing ever passes
through a float; ``raw`` keeps the decoded object untouched for the jsonb payload, where
``upload_id`` (past int64 in Strava's own example) survives as written.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, StrictInt, field_validator

__all__ = ["Activity", "iana_timezone", "parse_local_datetime"]

# "(GMT-08:00) America/Los_Angeles": Strava prints the *standard* offset even in summer,
# so the offset prefix is useless; the IANA name after it is what we keep.
_STRAVA_TZ = re.compile(r"^\(GMT[+-]\d{1,2}:\d{2}\)\s*(?P<name>\S+)\s*$")


def iana_timezone(value: str | None) -> str | None:
    """The IANA name out of Strava's ``timezone`` field; a bare name passes through."""
    if value is None or not value.strip():
        return None
    found = _STRAVA_TZ.match(value.strip())
    if found is not None:
        return found["name"]
    return None if value.strip().startswith("(") else value.strip()


def parse_local_datetime(value: str) -> datetime:
    """``start_date_local`` is wall-clock time serialized with a misleading ``Z``: drop
    any zone designator and keep a naive datetime, never convert it."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1]
    return datetime.fromisoformat(text).replace(tzinfo=None)


def _latlng(value: Any) -> tuple[float, float] | None:
    # Strava sends null or [] for activities without GPS.
    if value is None or value == []:
        return None
    if isinstance(value, list | tuple) and len(value) == 2:
        lat, lng = value
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in (lat, lng)):
            return float(lat), float(lng)
    raise ValueError(f"expected [lat, lng], got {value!r}")


class Activity(BaseModel):
    """One Strava activity: the typed fields sync stores in columns, plus ``raw``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: StrictInt
    athlete_id: StrictInt | None = None
    name: str = ""
    sport_type: str
    type: str | None = None
    distance: float = 0.0
    moving_time: int = 0
    elapsed_time: int = 0
    total_elevation_gain: float | None = None
    start_date: AwareDatetime
    start_date_local: datetime
    timezone: str | None = None
    utc_offset: int | None = None
    start_latlng: tuple[float, float] | None = None
    end_latlng: tuple[float, float] | None = None
    average_speed: float | None = None
    max_speed: float | None = None
    average_heartrate: float | None = None
    max_heartrate: float | None = None
    private: bool = False
    trainer: bool = False
    commute: bool = False
    manual: bool = False
    upload_id: StrictInt | None = None
    external_id: str | None = None
    raw: dict[str, Any]

    @classmethod
    def from_raw(cls, raw: dict[str, Any]) -> Activity:
        """Validate a decoded activity object; ``raw`` is kept as given, not re-encoded."""
        athlete = raw.get("athlete")
        fields: dict[str, Any] = dict(raw)
        fields["athlete_id"] = athlete.get("id") if isinstance(athlete, dict) else None
        if fields.get("sport_type") is None:
            # ``type`` is deprecated but older payloads may carry only it.
            fields["sport_type"] = raw.get("type")
        fields["raw"] = raw
        return cls.model_validate(fields)

    @field_validator("start_date", mode="after")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    @field_validator("start_date_local", mode="before")
    @classmethod
    def _wall_clock(cls, value: Any) -> Any:
        return parse_local_datetime(value) if isinstance(value, str) else value

    @field_validator("timezone", mode="before")
    @classmethod
    def _iana(cls, value: Any) -> Any:
        return iana_timezone(value) if isinstance(value, str) or value is None else value

    @field_validator("start_latlng", "end_latlng", mode="before")
    @classmethod
    def _point(cls, value: Any) -> tuple[float, float] | None:
        return _latlng(value)

    @field_validator("utc_offset", mode="before")
    @classmethod
    def _seconds(cls, value: Any) -> Any:
        # Seen as -25200.0 in some payloads; an offset is whole seconds.
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value
