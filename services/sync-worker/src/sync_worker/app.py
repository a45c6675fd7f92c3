"""Composition root of sync-worker: sync sessions and provider data."""

from __future__ import annotations

from syncplane_common.runtime import ServiceRuntime
from syncplane_common.settings import load_settings

from sync_worker.settings import SyncWorkerSettings

SERVICE = "sync-worker"
SCHEMA: str | None = "sync"


def build(settings: SyncWorkerSettings | None = None) -> ServiceRuntime:
    settings = settings or load_settings(SyncWorkerSettings, SERVICE)
    return ServiceRuntime(SERVICE, settings, SCHEMA)
