"""Calendar v3 times (PROVIDERS.md §5.2): RFC3339 parameters, EventDateTime values and the
documented subset of RRULE expansion used by ``singleEvents``.

Recurrence subset: ``RRULE`` with FREQ DAILY/WEEKLY/MONTHLY/YEARLY, INTERVAL, COUNT, UNTIL,
BYDAY (plain weekdays, WEEKLY only) and BYMONTHDAY (MONTHLY only); ``RDATE`` and
``EXDATE`` values. Other rule parts are accepted and ignored, ``EXRULE`` is ignored.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from provider_sandbox.providers._gcal_errors import invalid, required, time_range_empty

WEEKDAYS = {"MO": 0, "TU": 1, "WE": 2, "TH": 3, "FR": 4, "SA": 5, "SU": 6}
FREQS = frozenset({"DAILY", "WEEKLY", "MONTHLY", "YEARLY"})
MAX_INSTANCES = 1000
_MAX_STEPS = 20_000


@functools.lru_cache(maxsize=512)
def zone(name: str) -> tzinfo | None:
    if name == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def to_us(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def format_ms(stamp_us: int) -> str:
    """``updated``/``created`` as Google writes them: UTC with milliseconds and ``Z``."""
    moment = datetime.fromtimestamp(stamp_us / 1_000_000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_rfc3339(value: str) -> datetime | None:
    """A timestamp with a mandatory offset, as ``timeMin``/``timeMax``/``updatedMin``."""
    if "T" not in value and "t" not in value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


@dataclass(frozen=True)
class When:
    """One parsed EventDateTime: ``local`` is aware, in the zone the value is expressed in."""

    all_day: bool
    local: datetime
    tz_name: str | None

    @functools.cached_property
    def us(self) -> int:
        return to_us(self.local)

    @property
    def day(self) -> date:
        return self.local.date()

    def render(self) -> dict[str, Any]:
        if self.all_day:
            return {"date": self.day.isoformat()}
        out: dict[str, Any] = {"dateTime": self.local.isoformat(timespec="seconds")}
        if self.tz_name:
            out["timeZone"] = self.tz_name
        return out


def parse_when(value: Any, which: str, calendar_tz: str) -> When:
    """An event's ``start``/``end``; errors carry Google's wording for that field."""
    if not isinstance(value, dict) or not (value.get("date") or value.get("dateTime")):
        raise required(f"Missing {which} time.")
    tz_name = value.get("timeZone")
    if tz_name is not None and (not isinstance(tz_name, str) or zone(tz_name) is None):
        raise invalid(f"Invalid time zone definition for {which} time.")
    if value.get("date") and value.get("dateTime"):
        raise invalid(f"Invalid {which} time.")
    if value.get("date"):
        raw = value["date"]
        try:
            day = date.fromisoformat(raw) if isinstance(raw, str) and len(raw) == 10 else None
        except ValueError:
            day = None
        if day is None:
            raise invalid(f"Invalid {which} time.")
        tz = zone(tz_name or calendar_tz) or UTC
        return When(True, datetime(day.year, day.month, day.day, tzinfo=tz), None)
    raw = value["dateTime"]
    try:
        moment = datetime.fromisoformat(raw) if isinstance(raw, str) and "T" in raw else None
    except ValueError:
        moment = None
    if moment is None:
        raise invalid(f"Invalid {which} time.")
    if tz_name:
        tz = zone(tz_name) or UTC
        moment = moment.replace(tzinfo=tz) if moment.tzinfo is None else moment.astimezone(tz)
    elif moment.tzinfo is None:
        raise required(f"Missing time zone definition for {which} time.")
    else:
        # Google answers dateTime values in the calendar's zone when the event names none.
        moment = moment.astimezone(zone(calendar_tz) or UTC)
    return When(False, moment, tz_name)


# -- recurrence -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    freq: str
    interval: int
    count: int | None
    until_us: int | None
    byday: tuple[int, ...]
    bymonthday: tuple[int, ...]


@dataclass(frozen=True)
class Recurrence:
    rules: tuple[Rule, ...]
    rdates: tuple[datetime, ...]
    exdates: frozenset[int]  # UTC microseconds (all-day: local midnight)


def _ical_moment(raw: str, params: dict[str, str], default_tz: tzinfo) -> datetime:
    raw = raw.strip()
    if len(raw) == 8 and raw.isdigit():
        return datetime(int(raw[:4]), int(raw[4:6]), int(raw[6:8]), tzinfo=default_tz)
    utc = raw.endswith("Z")
    moment = datetime.strptime(raw.rstrip("Z"), "%Y%m%dT%H%M%S")
    if utc:
        return moment.replace(tzinfo=UTC)
    tz = zone(params["TZID"]) if "TZID" in params else default_tz
    if tz is None:
        raise ValueError(params["TZID"])
    return moment.replace(tzinfo=tz)


def _split_line(line: str) -> tuple[str, dict[str, str], str]:
    head, _, value = line.partition(":")
    name, *raw_params = head.split(";")
    params = dict(p.split("=", 1) for p in raw_params if "=" in p)
    return name.upper(), {k.upper(): v for k, v in params.items()}, value


def _parse_rule(value: str, default_tz: tzinfo) -> Rule:
    parts = dict(p.split("=", 1) for p in value.split(";") if "=" in p)
    parts = {k.upper(): v.upper() for k, v in parts.items()}
    freq = parts.get("FREQ", "")
    if freq not in FREQS:
        raise ValueError(freq)
    interval = int(parts.get("INTERVAL", "1"))
    count = int(parts["COUNT"]) if "COUNT" in parts else None
    if interval < 1 or (count is not None and count < 1):
        raise ValueError(value)
    until = to_us(_ical_moment(parts["UNTIL"], {}, default_tz)) if "UNTIL" in parts else None
    byday = (
        tuple(sorted(WEEKDAYS[d] for d in parts["BYDAY"].split(",")))
        if (freq == "WEEKLY" and "BYDAY" in parts)
        else ()
    )
    bymonthday = (
        tuple(int(d) for d in parts["BYMONTHDAY"].split(","))
        if (freq == "MONTHLY" and "BYMONTHDAY" in parts)
        else ()
    )
    return Rule(freq, interval, count, until, byday, bymonthday)


def parse_recurrence(lines: Any, start: When) -> Recurrence:
    if not isinstance(lines, list) or not all(isinstance(x, str) for x in lines):
        raise invalid("Invalid recurrence rule.")
    default_tz = start.local.tzinfo or UTC
    rules: list[Rule] = []
    rdates: list[datetime] = []
    exdates: set[int] = set()
    try:
        for line in lines:
            name, params, value = _split_line(line.strip())
            if name == "RRULE":
                rules.append(_parse_rule(value, default_tz))
            elif name in ("RDATE", "EXDATE"):
                moments = [_ical_moment(v, params, default_tz) for v in value.split(",")]
                if name == "RDATE":
                    rdates.extend(moments)
                else:
                    exdates.update(to_us(m) for m in moments)
            elif name != "EXRULE":
                raise ValueError(name)
    except (ValueError, KeyError) as err:
        raise invalid("Invalid recurrence rule.") from err
    if not rules and not rdates:
        raise invalid("Invalid recurrence rule.")
    return Recurrence(tuple(rules), tuple(rdates), frozenset(exdates))


def _add_months(day: date, months: int, day_of_month: int) -> date | None:
    total = day.month - 1 + months
    year, month = day.year + total // 12, total % 12 + 1
    if day_of_month < 0:
        nxt = date(year + month // 12, month % 12 + 1, 1)
        last = (nxt - timedelta(days=1)).day
        day_of_month = last + 1 + day_of_month
    try:
        return date(year, month, day_of_month)
    except ValueError:
        return None


def _rule_days(rule: Rule, first: date) -> Iterator[date]:
    """Candidate local dates of one rule, in order, from the series' first date."""
    step = 0
    while step < _MAX_STEPS:
        if rule.freq == "DAILY":
            yield first + timedelta(days=step * rule.interval)
        elif rule.freq == "WEEKLY":
            if not rule.byday:
                yield first + timedelta(weeks=step * rule.interval)
            else:
                monday = first - timedelta(days=first.weekday())
                week = monday + timedelta(weeks=step * rule.interval)
                for weekday in rule.byday:
                    candidate = week + timedelta(days=weekday)
                    if candidate >= first:
                        yield candidate
        elif rule.freq == "MONTHLY":
            in_month = (
                _add_months(first, step * rule.interval, dom)
                for dom in rule.bymonthday or (first.day,)
            )
            yield from sorted(d for d in in_month if d is not None and d >= first)
        else:
            yearly = _add_months(first, 12 * step * rule.interval, first.day)
            if yearly is not None:
                yield yearly
        step += 1


def occurrences(
    start: When, recurrence: Recurrence, until_us: int | None, open_us: int
) -> list[When]:
    """Instance starts of a series before ``until_us`` (exclusive; None: to the series'
    end). Rules without COUNT or UNTIL stop at ``open_us``; at most MAX_INSTANCES."""
    tz = start.local.tzinfo or UTC
    wall = start.local.timetz().replace(tzinfo=None)
    found: dict[int, When] = {}
    for rule in recurrence.rules:
        limit = until_us
        if rule.count is None and rule.until_us is None:
            limit = open_us if limit is None else min(limit, open_us)
        for produced, day in enumerate(_rule_days(rule, start.local.date())):
            moment = datetime.combine(day, wall, tz)
            stamp = to_us(moment)
            if rule.until_us is not None and stamp > rule.until_us:
                break
            if rule.count is not None and produced >= rule.count:
                break
            if (limit is not None and stamp >= limit) or len(found) >= MAX_INSTANCES:
                break
            found[stamp] = When(start.all_day, moment, start.tz_name)
    for extra in recurrence.rdates:
        stamp = to_us(extra)
        if until_us is None or stamp < until_us:
            found[stamp] = When(start.all_day, extra.astimezone(tz), start.tz_name)
    return [found[s] for s in sorted(found) if s not in recurrence.exdates]


def instance_suffix(when: When) -> str:
    """The part Google appends to a series id to name one instance."""
    if when.all_day:
        return when.day.strftime("%Y%m%d")
    return when.local.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def check_range(lower: int | None, upper: int | None, location: str) -> None:
    if lower is not None and upper is not None and upper <= lower:
        raise time_range_empty(location)
