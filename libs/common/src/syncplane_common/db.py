"""The asyncpg pool every service uses: pinned to the service's schema, jsonb as Python values.

Built once, in each service's composition root; ``check`` backs ``/readyz``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg


async def create_pool(
    dsn: str,
    schema: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    application_name: str | None = None,
    **kw: Any,
) -> asyncpg.Pool:
    """A pool whose every connection resolves unqualified names in ``schema``.

    The search path goes in the startup packet, not a ``SET``: the pool runs ``RESET ALL``
    when a connection is released, which would silently drop a ``SET`` but falls back
    to startup values. Extra ``kw`` go to :func:`asyncpg.create_pool`.
    """
    settings = {
        **kw.pop("server_settings", {}),
        "search_path": schema,
        "application_name": application_name or f"syncplane-{schema}",
    }
    pool: asyncpg.Pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        server_settings=settings,
        init=_init_connection,
        **kw,
    )
    return pool


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", schema="pg_catalog", encoder=json.dumps, decoder=json.loads)


async def check(pool: asyncpg.Pool, *, within: float = 2.0) -> bool:
    """Whether the database answers ``SELECT 1`` within ``within`` seconds, never raising.

    The deadline covers acquiring a connection too: an exhausted pool is not ready either.
    """
    try:
        async with asyncio.timeout(within):
            return bool(await pool.fetchval("SELECT 1") == 1)
    except Exception:
        return False
