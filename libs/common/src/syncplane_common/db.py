"""The asyncpg pool every service uses: pinned to the service's schema, jsonb as Python values.

Built once, in each service's composition root; ``check`` backs ``/readyz``; ``reading``
lends a connection for plain reads without the reset round trip on its return.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

if TYPE_CHECKING:
    _BaseConnection = asyncpg.Connection[asyncpg.Record]
else:  # asyncpg's classes are generic only to the type checker
    _BaseConnection = asyncpg.Connection


class Connection(_BaseConnection):
    """A pooled connection whose session reset can be skipped once, after a use that
    could not have changed the session (see :func:`reading`)."""

    _keep_session = False

    def keep_session(self) -> None:
        self._keep_session = True

    def get_reset_query(self) -> str:
        if self._keep_session:
            self._keep_session = False
            return ""
        query: str = super().get_reset_query()
        return query


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
        connection_class=Connection,
        **kw,
    )
    return pool


@asynccontextmanager
async def reading(
    pool: asyncpg.Pool[asyncpg.Record],
) -> AsyncIterator[PoolConnectionProxy[asyncpg.Record]]:
    """A pooled connection for statements that only read (plain SELECTs: no SET, no
    locks, no LISTEN, no cursor left open). On release the pool normally resets the
    session (``RESET ALL``, ``pg_advisory_unlock_all()``, ...), a round trip that costs a
    cached read as much as the read itself; after such a use there is nothing to reset.
    An open transaction is still rolled back. If the block raises, the reset runs."""
    async with pool.acquire() as conn:
        yield conn
        # Through the pool's proxy; a pool not made by create_pool resets as usual.
        keep = getattr(conn, "keep_session", None)
        if keep is not None:
            keep()


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
