"""Composition root of calendar-sync: bidirectional Google Calendar sync."""

from __future__ import annotations

from syncplane_common.runtime import ServiceRuntime
from syncplane_common.settings import load_settings

from calendar_sync.settings import CalendarSyncSettings

SERVICE = "calendar-sync"
SCHEMA: str | None = "calendar"


def build(settings: CalendarSyncSettings | None = None) -> ServiceRuntime:
    settings = settings or load_settings(CalendarSyncSettings, SERVICE)
    return ServiceRuntime(SERVICE, settings, SCHEMA)
