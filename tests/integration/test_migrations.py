"""The migration runner and the pool factory against a real Postgres."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from syncplane_common.db import check, create_pool
from syncplane_common.migrations import MigrationError, migrate, migrate_all
from syncplane_common.migrations_registry import service_migrations
from syncplane_devstack.embedded import EmbeddedPostgres

pytestmark = pytest.mark.integration

SERVICE = "svc"


@pytest.fixture
async def dsn(pg_server: EmbeddedPostgres) -> AsyncIterator[str]:
    """A database of its own for each test, so schema_migrations starts empty."""
    name = f"m_{uuid.uuid4().hex[:12]}"
    await _admin(pg_server, f'CREATE DATABASE "{name}"')
    yield pg_server.url.rsplit("/", 1)[0] + f"/{name}"
    await _admin(pg_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _admin(pg_server: EmbeddedPostgres, statement: str) -> None:
    admin = await asyncpg.connect(pg_server.url)
    try:
        await admin.execute(statement)
    finally:
        await admin.close()


def write(directory: Path, name: str, sql: str) -> Path:
    path = directory / name
    path.write_text(sql, encoding="utf-8")
    return path


async def fetch(dsn: str, query: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(query)
    finally:
        await conn.close()


async def scalar(dsn: str, query: str) -> object:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(query)
    finally:
        await conn.close()


async def recorded(dsn: str) -> list[tuple[str, int, str]]:
    rows = await fetch(
        dsn, "SELECT service, version, name FROM public.schema_migrations ORDER BY version"
    )
    return [(r["service"], r["version"], r["name"]) for r in rows]


async def test_concurrent_runners_apply_each_file_exactly_once(dsn: str, tmp_path: Path) -> None:
    write(tmp_path, "0001_create.sql", "CREATE TABLE t (x int); SELECT pg_sleep(0.2);")
    write(tmp_path, "0002_insert.sql", "INSERT INTO t VALUES (1);")

    results = await asyncio.gather(*(migrate(dsn, SERVICE, tmp_path) for _ in range(5)))

    assert sorted(name for applied in results for name in applied) == [
        "0001_create.sql",
        "0002_insert.sql",
    ]
    assert await recorded(dsn) == [
        (SERVICE, 1, "0001_create.sql"),
        (SERVICE, 2, "0002_insert.sql"),
    ]
    assert [r["x"] for r in await fetch(dsn, "SELECT x FROM t")] == [1]


async def test_edited_applied_file_is_refused(dsn: str, tmp_path: Path) -> None:
    path = write(tmp_path, "0001_create.sql", "CREATE TABLE t (x int);")
    await migrate(dsn, SERVICE, tmp_path)
    path.write_text("CREATE TABLE t (x bigint);", encoding="utf-8")

    with pytest.raises(MigrationError, match=r"0001_create\.sql was edited after being applied"):
        await migrate(dsn, SERVICE, tmp_path)


async def test_rerun_applies_only_new_files(dsn: str, tmp_path: Path) -> None:
    write(tmp_path, "0001_create.sql", "CREATE TABLE t (x int);")
    assert await migrate(dsn, SERVICE, tmp_path) == ["0001_create.sql"]
    assert await migrate(dsn, SERVICE, tmp_path) == []

    write(tmp_path, "0002_insert.sql", "INSERT INTO t VALUES (2);")
    assert await migrate(dsn, SERVICE, tmp_path) == ["0002_insert.sql"]
    assert await migrate(dsn, SERVICE, tmp_path) == []
    assert [r["x"] for r in await fetch(dsn, "SELECT x FROM t")] == [2]


async def test_services_are_tracked_separately(dsn: str, tmp_path: Path) -> None:
    write(tmp_path, "0001_create.sql", "CREATE TABLE IF NOT EXISTS t (x int);")
    assert await migrate(dsn, "one", tmp_path) == ["0001_create.sql"]
    assert await migrate(dsn, "two", tmp_path) == ["0001_create.sql"]


async def test_failing_file_rolls_back_and_earlier_files_stay(dsn: str, tmp_path: Path) -> None:
    write(tmp_path, "0001_create.sql", "CREATE TABLE a (x int);")
    bad = write(tmp_path, "0002_broken.sql", "CREATE TABLE b (x int); SELECT 1 / 0;")

    with pytest.raises(MigrationError, match=r"0002_broken\.sql failed") as info:
        await migrate(dsn, SERVICE, tmp_path)

    assert isinstance(info.value.__cause__, asyncpg.DivisionByZeroError)
    assert await recorded(dsn) == [(SERVICE, 1, "0001_create.sql")]
    assert await scalar(dsn, "SELECT to_regclass('public.b')") is None

    bad.write_text("CREATE TABLE b (x int);", encoding="utf-8")
    assert await migrate(dsn, SERVICE, tmp_path) == ["0002_broken.sql"]


@pytest.mark.parametrize(
    "names",
    [["0001_init.sql", "init.sql"], ["0001_init.sql", "0001_again.sql"]],
    ids=["bad-name", "duplicate-version"],
)
async def test_bad_directory_is_refused_before_anything_runs(
    dsn: str, tmp_path: Path, names: list[str]
) -> None:
    for name in names:
        write(tmp_path, name, "CREATE TABLE t (x int);")

    with pytest.raises(MigrationError):
        await migrate(dsn, SERVICE, tmp_path)

    assert await scalar(dsn, "SELECT to_regclass('public.schema_migrations')") is None


async def test_a_file_setting_search_path_does_not_leak_into_the_next(
    dsn: str, tmp_path: Path
) -> None:
    write(tmp_path, "0001_elsewhere.sql", "CREATE SCHEMA s; SET search_path = s;")
    write(tmp_path, "0002_create.sql", "CREATE TABLE t (x int);")

    await migrate(dsn, SERVICE, tmp_path)

    assert await scalar(dsn, "SELECT to_regclass('public.t') IS NOT NULL") is True


async def test_service_migrations_create_roles_and_schemas(dsn: str) -> None:
    applied = await migrate_all(dsn, service_migrations())

    # Every service's history starts with the file that creates its schema and role.
    assert set(applied) == {"token-service", "sync-worker", "calendar-sync"}
    assert all(names[0] == "0001_init.sql" for names in applied.values()), applied
    owners = await fetch(
        dsn,
        "SELECT nspname, pg_get_userbyid(nspowner) AS owner FROM pg_namespace"
        " WHERE nspname IN ('tokens', 'sync', 'calendar') ORDER BY nspname",
    )
    assert [tuple(r) for r in owners] == [
        ("calendar", "calendar_sync"),
        ("sync", "sync_worker"),
        ("tokens", "token_service"),
    ]


async def test_service_migrations_are_idempotent_across_databases(
    database_url: str, dsn: str
) -> None:
    # Roles are cluster-wide, so a second database meets roles that already exist.
    await migrate_all(database_url, service_migrations())
    await migrate_all(dsn, service_migrations())

    assert await migrate_all(dsn, service_migrations()) == {
        "token-service": [],
        "sync-worker": [],
        "calendar-sync": [],
    }


async def test_service_role_lands_in_its_schema_and_only_there(database_url: str) -> None:
    await migrate_all(database_url, service_migrations())
    conn = await asyncpg.connect(database_url, user="sync_worker", password="sync_worker")
    try:
        assert await conn.fetchval("SELECT current_schema()") == "sync"
        await conn.execute("CREATE TABLE mine (x int)")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CREATE TABLE tokens.theirs (x int)")
    finally:
        await conn.close()


async def test_pool_keeps_its_schema_across_release(database_url: str) -> None:
    await migrate_all(database_url, service_migrations())
    # One connection, so the second acquire gets the very connection the pool reset.
    pool = await create_pool(database_url, "sync", min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT current_schema()") == "sync"
            first = await conn.fetchval("SELECT pg_backend_pid()")
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT pg_backend_pid()") == first
            assert await conn.fetchval("SELECT current_schema()") == "sync"
            assert await conn.fetchval("SHOW application_name") == "syncplane-sync"
    finally:
        await pool.close()


async def test_pool_decodes_jsonb(database_url: str) -> None:
    pool = await create_pool(database_url, "public")
    try:
        assert await pool.fetchval("""SELECT '{"a": [1, 2]}'::jsonb""") == {"a": [1, 2]}
        assert await pool.fetchval("SELECT $1::jsonb", {"b": None}) == {"b": None}
    finally:
        await pool.close()


async def test_check_reports_live_and_closed_pools(database_url: str) -> None:
    pool = await create_pool(database_url, "public")
    assert await check(pool) is True
    await pool.close()
    assert await check(pool) is False
