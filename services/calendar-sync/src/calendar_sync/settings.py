"""calendar-sync settings: Google Calendar access."""

from __future__ import annotations

from syncplane_common.settings import DatabaseSettings, ProviderEndpoints


class CalendarSyncSettings(DatabaseSettings, ProviderEndpoints):
    pass
