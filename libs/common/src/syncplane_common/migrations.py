"""Applies each service's numbered SQL files (``0001_init.sql``, ...) once, in order.

Runs as ``syncplane migrate`` and as the compose/Kubernetes one-shot job (ARCHITECTURE.md §5).

Rules a migration file lives by:

* its name matches ``NNNN_lower_snake.sql``; versions are unique within a service;
* it runs in one transaction together with its ``public.schema_migrations`` row, so it
  must not ``BEGIN``/``COMMIT`` itself (and cannot ``CREATE INDEX CONCURRENTLY``);
* once applied it is never edited: its sha256 is recorded and checked on every run.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from syncplane_common.errors import PermanentError

FILE_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

# One key for every service: runners of different services then also queue behind each
# other, which keeps concurrent CREATE ROLE / GRANT statements out of each other's way.
# The value only has to be constant; these are the bytes of "syncplan".
LOCK_KEY = int.from_bytes(b"syncplan", "big")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS public.schema_migrations (
    service    text        NOT NULL,
    version    int         NOT NULL,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (service, version)
)
"""


class MigrationError(PermanentError):
    """The migrations cannot be applied as they are; a person has to fix files or data."""

    code = "migration_error"


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    path: Path
    checksum: str


def discover(directory: Path) -> list[Migration]:
    """The migration files in ``directory``, by version; refuses bad names and duplicates.

    Dotfiles and subdirectories are skipped; any other file must be a migration, so a
    typo such as ``0002_add.sq`` fails loudly instead of being silently left out.
    """
    if not directory.is_dir():
        raise MigrationError(f"migrations directory {directory} does not exist")
    files = sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith("."))
    migrations = [_load(path) for path in files]
    _refuse_duplicates(migrations)
    return sorted(migrations, key=lambda m: m.version)


def _load(path: Path) -> Migration:
    match = FILE_NAME.match(path.name)
    if match is None:
        raise MigrationError(
            f"{path}: migration files must be named NNNN_lower_snake.sql, e.g. 0002_add_users.sql"
        )
    checksum = hashlib.sha256(path.read_bytes()).hexdigest()
    return Migration(int(match.group(1)), path.name, path, checksum)


def _refuse_duplicates(migrations: Sequence[Migration]) -> None:
    by_version: dict[int, str] = {}
    for m in migrations:
        if m.version in by_version:
            raise MigrationError(
                f"{m.path.parent}: {by_version[m.version]} and {m.name} share version {m.version}"
            )
        by_version[m.version] = m.name


def pending(
    service: str, migrations: Sequence[Migration], applied: Mapping[int, str]
) -> list[Migration]:
    """The migrations still to apply, given ``applied`` (version -> recorded checksum).

    Versions recorded but absent from ``migrations`` are ignored: that is an older image
    running against a newer database, as in a rollback, and must not block it.
    """
    for m in migrations:
        recorded = applied.get(m.version)
        if recorded is not None and recorded != m.checksum:
            raise MigrationError(
                f"{service}: {m.name} was edited after being applied "
                f"(recorded sha256 {recorded[:12]}, file now {m.checksum[:12]}); "
                "restore it and add a new numbered file instead"
            )
    return [m for m in migrations if m.version not in applied]


async def migrate(dsn: str, service: str, directory: Path) -> list[str]:
    """Applies ``service``'s pending files in ``directory``; returns their names in order."""
    migrations = discover(directory)
    conn = await asyncpg.connect(dsn, server_settings={"application_name": "syncplane-migrate"})
    try:
        # Session-level and on this one connection for the whole run: every other runner
        # waits here, then sees what this one recorded, so each file runs exactly once.
        await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
        await conn.execute(_CREATE_TABLE)
        todo = pending(service, migrations, await _applied(conn, service))
        for m in todo:
            await _apply(conn, service, m)
        return [m.name for m in todo]
    finally:
        # Ending the session is what releases the advisory lock, on error paths too.
        await conn.close()


async def migrate_all(dsn: str, targets: Sequence[tuple[str, Path]]) -> dict[str, list[str]]:
    """Runs :func:`migrate` for each ``(service, directory)`` in turn; names applied per service."""
    return {service: await migrate(dsn, service, directory) for service, directory in targets}


async def _applied(conn: asyncpg.Connection, service: str) -> dict[int, str]:
    rows = await conn.fetch(
        "SELECT version, checksum FROM public.schema_migrations WHERE service = $1", service
    )
    return {row["version"]: row["checksum"] for row in rows}


async def _apply(conn: asyncpg.Connection, service: str, m: Migration) -> None:
    sql = m.path.read_text(encoding="utf-8")
    try:
        async with conn.transaction():
            await conn.execute(sql)
            await conn.execute(
                "INSERT INTO public.schema_migrations (service, version, name, checksum)"
                " VALUES ($1, $2, $3, $4)",
                service,
                m.version,
                m.name,
                m.checksum,
            )
    except asyncpg.PostgresError as err:
        raise MigrationError(
            f"{service}: {m.name} failed and was rolled back: {type(err).__name__}: {err}"
        ) from err
    # A plain SET in one file must not change how the next file resolves names.
    await conn.execute("RESET ALL")
