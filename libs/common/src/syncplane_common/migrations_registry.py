"""Where each service with a database keeps its migrations, for ``syncplane migrate``."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from syncplane_common.migrations import MigrationError

SERVICES: tuple[tuple[str, str], ...] = (
    ("token-service", "token_service"),
    ("sync-worker", "sync_worker"),
    ("calendar-sync", "calendar_sync"),
)


def service_migrations() -> list[tuple[str, Path]]:
    """``(service, migrations directory)`` for every service that owns a schema."""
    return [(service, _package_dir(package) / "migrations") for service, package in SERVICES]


def _package_dir(package: str) -> Path:
    # find_spec locates a top-level package without executing it, so the migrate job does
    # not pay for (or fail on) a service's imports.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MigrationError(f"package {package} is not installed; cannot find its migrations")
    return Path(next(iter(spec.submodule_search_locations)))
