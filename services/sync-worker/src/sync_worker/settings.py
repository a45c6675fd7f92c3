"""sync-worker settings: provider access for sync sessions and enrichment."""

from __future__ import annotations

from syncplane_common.settings import DatabaseSettings, ProviderEndpoints


class SyncWorkerSettings(DatabaseSettings, ProviderEndpoints):
    pass
