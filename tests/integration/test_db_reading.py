"""db.reading: a connection lent for plain reads goes back without the session reset (a
round trip per read); any other use, or a read that failed, is still reset."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from syncplane_common import db

pytestmark = pytest.mark.integration

RESET = "RESET ALL"


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool[asyncpg.Record]]:
    pool = await db.create_pool(database_url, "public", min_size=1, max_size=1)
    yield pool
    await pool.close()


async def _sent(pool: asyncpg.Pool[asyncpg.Record]) -> list[str]:
    seen: list[str] = []
    async with pool.acquire() as conn:
        conn.add_query_logger(lambda record: seen.append(record.query))
    seen.clear()  # the reset of the acquire above
    return seen


async def test_a_read_only_use_skips_the_reset_and_the_next_use_does_not(
    pool: asyncpg.Pool[asyncpg.Record],
) -> None:
    sent = await _sent(pool)
    async with db.reading(pool) as conn:
        assert await conn.fetchval("SELECT 1") == 1
    assert not any(RESET in q for q in sent)
    async with pool.acquire() as conn:
        await conn.execute("SET statement_timeout = 1234")
    assert any(RESET in q for q in sent)  # the skip was for that one release only
    async with db.reading(pool) as conn:
        assert await conn.fetchval("SHOW statement_timeout") == "0"  # reset held


async def test_a_failed_read_is_reset_and_a_transaction_rolled_back(
    pool: asyncpg.Pool[asyncpg.Record],
) -> None:
    sent = await _sent(pool)
    with pytest.raises(asyncpg.UndefinedTableError):
        async with db.reading(pool) as conn:
            await conn.fetch("SELECT * FROM no_such_table")
    assert any(RESET in q for q in sent)
    sent.clear()
    async with db.reading(pool) as conn:
        transaction = conn.transaction()
        await transaction.start()
        await conn.fetchval("SELECT 1")
    assert "ROLLBACK" in sent
    assert not any(RESET in q for q in sent)
    async with db.reading(pool) as conn:
        assert not conn.is_in_transaction()
