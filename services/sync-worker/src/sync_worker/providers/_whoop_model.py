"""WHOOP API v2 records as wire models (PROVIDERS.md §7.3; payloads/whoop_*.json).

Field names are WHOOP's. Ids: a cycle's is an int64; a sleep's and a workout's are UUIDs
(v2), with the old integer ``v1_id`` beside them, documented as going away, so it is kept
but never used as a key; a recovery has no id of its own and is keyed by its sleep's UUID,
as WHOOP's ``recovery.*`` webhooks do. ``score`` is present only when ``score_state`` is
``SCORED`` and a cycle still in progress has no ``end``, so both are optional. ``raw``
keeps the decoded object as WHOOP sent it for the jsonb payload (decoded with
``json.loads``: integers stay exact).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal, TypeAlias

from pydantic import AwareDatetime, BaseModel, ConfigDict, StrictInt, field_validator

from sync_worker.providers._records import content_hash

__all__ = [
    "KINDS",
    "Cycle",
    "CycleScore",
    "Kind",
    "Recovery",
    "RecoveryScore",
    "Sleep",
    "SleepNeeded",
    "SleepScore",
    "StageSummary",
    "WhoopRecord",
    "Workout",
    "WorkoutScore",
    "ZoneDurations",
    "parse_record",
]

Kind = Literal["recovery", "sleep", "cycle", "workout"]
KINDS: tuple[Kind, ...] = ("recovery", "sleep", "cycle", "workout")
SCORED = "SCORED"


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class CycleScore(_Wire):
    strain: float | None = None
    kilojoule: float | None = None
    average_heart_rate: int | None = None
    max_heart_rate: int | None = None


class RecoveryScore(_Wire):
    user_calibrating: bool | None = None
    recovery_score: float | None = None
    resting_heart_rate: float | None = None
    hrv_rmssd_milli: float | None = None
    # WHOOP 4.0 and later only.
    spo2_percentage: float | None = None
    skin_temp_celsius: float | None = None


class StageSummary(_Wire):
    total_in_bed_time_milli: int | None = None
    total_awake_time_milli: int | None = None
    total_no_data_time_milli: int | None = None
    total_light_sleep_time_milli: int | None = None
    total_slow_wave_sleep_time_milli: int | None = None
    total_rem_sleep_time_milli: int | None = None
    sleep_cycle_count: int | None = None
    disturbance_count: int | None = None


class SleepNeeded(_Wire):
    baseline_milli: int | None = None
    need_from_sleep_debt_milli: int | None = None
    need_from_recent_strain_milli: int | None = None
    need_from_recent_nap_milli: int | None = None


class SleepScore(_Wire):
    stage_summary: StageSummary | None = None
    sleep_needed: SleepNeeded | None = None
    respiratory_rate: float | None = None
    sleep_performance_percentage: float | None = None
    sleep_consistency_percentage: float | None = None
    sleep_efficiency_percentage: float | None = None


class ZoneDurations(_Wire):
    zone_zero_milli: int | None = None
    zone_one_milli: int | None = None
    zone_two_milli: int | None = None
    zone_three_milli: int | None = None
    zone_four_milli: int | None = None
    zone_five_milli: int | None = None


class WorkoutScore(_Wire):
    strain: float | None = None
    average_heart_rate: int | None = None
    max_heart_rate: int | None = None
    kilojoule: float | None = None
    percent_recorded: float | None = None
    distance_meter: float | None = None
    altitude_gain_meter: float | None = None
    altitude_change_meter: float | None = None
    zone_durations: ZoneDurations | None = None


class _Record(_Wire):
    user_id: StrictInt
    created_at: AwareDatetime
    updated_at: AwareDatetime
    score_state: str
    raw: dict[str, Any]

    @field_validator("created_at", "updated_at", "start", "end", mode="after", check_fields=False)
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else value.astimezone(UTC)

    @property
    def scored(self) -> bool:
        return self.score_state == SCORED

    @property
    def content_hash(self) -> str:
        return content_hash(self.raw)


class _Span(_Record):
    """A record over a stretch of time (cycle, sleep, workout): keyed by its own id
    (narrowed by each kind), ordered by its start."""

    id: StrictInt | uuid.UUID
    start: AwareDatetime
    end: AwareDatetime | None = None
    timezone_offset: str | None = None

    @property
    def key(self) -> str:
        return str(self.id)

    @property
    def at(self) -> datetime:
        return self.start


class Cycle(_Span):
    """``end`` is missing while the cycle is still in progress."""

    kind: Literal["cycle"] = "cycle"
    id: StrictInt
    score: CycleScore | None = None


class Recovery(_Record):
    kind: Literal["recovery"] = "recovery"
    cycle_id: StrictInt
    sleep_id: uuid.UUID
    score: RecoveryScore | None = None

    @property
    def key(self) -> str:
        return str(self.sleep_id)

    @property
    def at(self) -> datetime:
        # WHOOP orders recoveries by their sleep's start, which a recovery does not carry;
        # it is created when that sleep ends, so its creation keeps the same order.
        return self.created_at


class _Activity(_Span):
    """A sleep or a workout (WHOOP's "activities"): a v2 UUID, the old integer id beside
    it, and always an end."""

    id: uuid.UUID
    v1_id: StrictInt | None = None
    end: AwareDatetime


class Sleep(_Activity):
    kind: Literal["sleep"] = "sleep"
    cycle_id: StrictInt | None = None
    nap: bool = False
    score: SleepScore | None = None


class Workout(_Activity):
    kind: Literal["workout"] = "workout"
    sport_name: str | None = None
    sport_id: StrictInt | None = None
    score: WorkoutScore | None = None


WhoopRecord: TypeAlias = Cycle | Recovery | Sleep | Workout

_MODELS: dict[Kind, type[Cycle] | type[Recovery] | type[Sleep] | type[Workout]] = {
    "cycle": Cycle,
    "recovery": Recovery,
    "sleep": Sleep,
    "workout": Workout,
}


def parse_record(kind: Kind, raw: dict[str, Any]) -> WhoopRecord:
    """One decoded record of ``kind``; ``pydantic.ValidationError`` if it does not fit."""
    model = _MODELS[kind]
    # ``kind`` is ours, not WHOOP's: a stray "kind" key in the payload must not override it.
    record: WhoopRecord = model.model_validate({**raw, "raw": raw, "kind": kind})
    return record
