"""Postgres as deployed: deploy/postgres/roles.sql, then the real migrations, on a cluster
that checks passwords (scram-sha-256), as production does.

Each service role logs in with its own password, owns its schema, and is refused every
other service's tables; ``syncplane up`` connects as these same roles.
"""

from __future__ import annotations

import importlib.util
import os
import re
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from syncplane_common.migrations import migrate_all
from syncplane_common.migrations_registry import service_migrations
from syncplane_devstack.embedded import EmbeddedPostgres, _pg_bin
from syncplane_devstack.stack import SERVICES, role_dsn

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ROLES_SQL = ROOT / "deploy" / "postgres" / "roles.sql"
DATABASE = "syncplane"


def _schema_of(module: str) -> str:
    """The SCHEMA constant of a service's composition root, read without importing it."""
    spec = importlib.util.find_spec(module)
    assert spec is not None
    assert spec.submodule_search_locations
    source = (Path(next(iter(spec.submodule_search_locations))) / "app.py").read_text()
    found = re.search(r'^SCHEMA\b[^=\n]*= "(\w+)"', source, re.M)
    assert found, f"{module}.app has no SCHEMA constant"
    return found.group(1)


# role -> the schema its service runs in
SCHEMAS = {spec.db_role: _schema_of(spec.module) for spec in SERVICES if spec.db_role is not None}


@dataclass
class Cluster:
    server: EmbeddedPostgres
    passwords: dict[str, str]

    @property
    def admin(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.server.port}/{DATABASE}"

    def dsn(self, role: str, password: str | None = None) -> str:
        secret = self.passwords[role] if password is None else password
        return f"postgresql://{role}:{secret}@127.0.0.1:{self.server.port}/{DATABASE}"

    def run_roles_sql(self, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(_pg_bin("psql")), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(ROLES_SQL)],
            env={
                "PATH": os.environ.get("PATH", ""),
                "PGHOST": "127.0.0.1",
                "PGPORT": str(self.server.port),
                "PGUSER": "postgres",
                "PGDATABASE": DATABASE,
                **env,
            },
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    def password_env(self) -> dict[str, str]:
        return {f"PG_PASSWORD_{role.upper()}": pw for role, pw in self.passwords.items()}


def _require_passwords(data: Path) -> None:
    # The admin keeps trust on loopback (the harness' superuser); every other role must
    # present its password, as in a deployment.
    (data / "pg_hba.conf").write_text(
        "local all all trust\n"
        "host all postgres 127.0.0.1/32 trust\n"
        "host all all 127.0.0.1/32 scram-sha-256\n"
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg-scram")).start()
    try:
        _require_passwords(server.workdir / "data")
        server.stop()
        server.start()
        subprocess.run(
            [
                str(_pg_bin("createdb")),
                "-h",
                "127.0.0.1",
                "-p",
                str(server.port),
                "-U",
                "postgres",
                DATABASE,
            ],
            check=True,
            capture_output=True,
        )
        passwords = {role: secrets.token_hex(16) for role in SCHEMAS}
        yield Cluster(server, passwords)
    finally:
        server.stop()


@pytest.fixture(scope="module")
async def deployed(cluster: Cluster) -> Cluster:
    """roles.sql then the migrations, in the order the compose and Kubernetes jobs run them;
    then each role creates a table in its own schema and writes a row."""
    done = cluster.run_roles_sql(cluster.password_env())
    assert done.returncode == 0, done.stderr
    await migrate_all(cluster.admin, service_migrations())
    for role, schema in SCHEMAS.items():
        conn = await asyncpg.connect(cluster.dsn(role))
        try:
            await conn.execute(f"CREATE TABLE {schema}.probe (id int PRIMARY KEY, secret text)")
            await conn.execute(
                f"INSERT INTO {schema}.probe VALUES (1, $1)",  # noqa: S608 - our own names
                f"owned by {role}",
            )
        finally:
            await conn.close()
    return cluster


def test_roles_sql_refuses_to_run_without_passwords(cluster: Cluster) -> None:
    env = cluster.password_env()
    del env["PG_PASSWORD_SYNC_WORKER"]
    done = cluster.run_roles_sql(env)
    assert done.returncode != 0
    assert "PG_PASSWORD_SYNC_WORKER is not set" in done.stderr


async def test_each_role_owns_the_schema_its_service_runs_in(deployed: Cluster) -> None:
    conn = await asyncpg.connect(deployed.admin)
    try:
        rows = await conn.fetch(
            "SELECT nspname, nspowner::regrole::text AS owner FROM pg_namespace"
            " WHERE nspname = ANY($1)",
            list(SCHEMAS.values()),
        )
        owners = {row["nspname"]: row["owner"] for row in rows}
        flags = await conn.fetch(
            "SELECT rolname, rolsuper, rolcreatedb, rolcreaterole FROM pg_roles"
            " WHERE rolname = ANY($1)",
            list(SCHEMAS),
        )
    finally:
        await conn.close()
    assert owners == {schema: role for role, schema in SCHEMAS.items()}
    assert all(not (r["rolsuper"] or r["rolcreatedb"] or r["rolcreaterole"]) for r in flags)
    # `syncplane up` hands each service a DSN of this same role.
    for spec in SERVICES:
        if spec.db_role is not None:
            assert role_dsn(deployed.admin, spec.db_role).startswith(
                f"postgresql://{spec.db_role}:"
            )


async def test_each_role_logs_in_with_its_password_only(deployed: Cluster) -> None:
    for role, schema in SCHEMAS.items():
        conn = await asyncpg.connect(deployed.dsn(role))
        try:
            # the role's search_path (set by its migration) finds its own tables
            assert await conn.fetchval("SELECT secret FROM probe") == f"owned by {role}"
            assert await conn.fetchval("SELECT current_schema()") == schema
        finally:
            await conn.close()
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(deployed.dsn(role, password="wrong"))


CROSS = [(role, other) for role in SCHEMAS for other in SCHEMAS.values() if SCHEMAS[role] != other]


@pytest.mark.parametrize(("role", "schema"), CROSS)
async def test_no_role_reads_or_writes_another_services_schema(
    deployed: Cluster, role: str, schema: str
) -> None:
    conn = await asyncpg.connect(deployed.dsn(role))
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch(f"SELECT * FROM {schema}.probe")  # noqa: S608 - our own names
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(f"INSERT INTO {schema}.probe VALUES (2, 'x')")  # noqa: S608
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(f"CREATE TABLE {schema}.planted (id int)")
    finally:
        await conn.close()


async def test_the_issue_cases_sync_cannot_read_tokens_calendar_cannot_write_sync(
    deployed: Cluster,
) -> None:
    sync = await asyncpg.connect(deployed.dsn("sync_worker"))
    calendar = await asyncpg.connect(deployed.dsn("calendar_sync"))
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="schema tokens"):
            await sync.fetch("SELECT * FROM tokens.probe")
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="schema sync"):
            await calendar.execute("UPDATE sync.probe SET secret = 'overwritten'")
    finally:
        await sync.close()
        await calendar.close()


@pytest.mark.parametrize("role", sorted(SCHEMAS))
async def test_roles_create_nothing_outside_their_schema(deployed: Cluster, role: str) -> None:
    conn = await asyncpg.connect(deployed.dsn(role))
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CREATE TABLE public.planted (id int)")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CREATE SCHEMA planted")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch("SELECT * FROM public.schema_migrations")
    finally:
        await conn.close()


async def test_rerunning_roles_sql_rotates_passwords(deployed: Cluster) -> None:
    old = deployed.passwords["calendar_sync"]
    rotated = Cluster(
        deployed.server, {**deployed.passwords, "calendar_sync": secrets.token_hex(16)}
    )
    done = rotated.run_roles_sql(rotated.password_env())
    assert done.returncode == 0, done.stderr
    await migrate_all(rotated.admin, service_migrations())  # re-running keeps the new one
    conn = await asyncpg.connect(rotated.dsn("calendar_sync"))
    await conn.close()
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(rotated.dsn("calendar_sync", password=old))
    deployed.passwords.update(rotated.passwords)
