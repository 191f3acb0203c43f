"""Group commit of webhook deliveries against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import asyncpg
import pytest

from bot.store.db import apply_migrations, create_pool
from bot.store.inbox import InboxWriter


@pytest.fixture
async def pool(database_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    await apply_migrations(database_dsn)
    pool = await create_pool(database_dsn)
    try:
        yield pool
    finally:
        await pool.close()


def _body(n: int) -> str:
    return json.dumps({"version": "4", "groupKey": f"g{n}", "n": n})


async def test_concurrent_deliveries_share_commits_and_each_gets_its_own_row(pool: asyncpg.Pool) -> None:
    writer = InboxWriter(pool, parallel=2, max_rows=16)
    ids = await asyncio.gather(*(writer.insert("alertmanager", _body(n)) for n in range(100)))
    assert len(set(ids)) == 100 and None not in ids
    rows = await pool.fetch("SELECT id, body FROM webhook_inbox")
    by_id = {r["id"]: r["body"] for r in rows}
    # Every caller's id points at exactly the body it sent.
    assert [by_id[i]["n"] for i in ids] == list(range(100))
    # A row's xmin is the transaction that inserted it: 100 rows, batches of at most 16.
    transactions = await pool.fetchval("SELECT count(DISTINCT xmin::text) FROM webhook_inbox")
    assert 7 <= transactions <= 20


async def test_a_replayed_delivery_id_is_stored_once_even_within_one_batch(pool: asyncpg.Pool) -> None:
    writer = InboxWriter(pool)
    first, again, other = await asyncio.gather(
        writer.insert("pagerduty", _body(1), "W1"),
        writer.insert("pagerduty", _body(1), "W1"),
        writer.insert("pagerduty", _body(2), "W2"),
    )
    assert first is not None and other is not None and again is None
    assert await writer.insert("pagerduty", _body(1), "W1") is None
    assert await pool.fetchval("SELECT count(*) FROM webhook_inbox") == 2


async def test_a_body_postgres_rejects_fails_alone(pool: asyncpg.Pool) -> None:
    writer = InboxWriter(pool)
    bad = '{"version": "4", "note": "nul \\u0000 byte"}'  # valid JSON, but jsonb refuses \u0000
    results = await asyncio.gather(
        writer.insert("alertmanager", _body(1)),
        writer.insert("alertmanager", bad),
        writer.insert("alertmanager", _body(2)),
        return_exceptions=True,
    )
    assert isinstance(results[1], asyncpg.DataError)
    assert isinstance(results[0], int) and isinstance(results[2], int)
    stored = [r["body"]["groupKey"] for r in await pool.fetch("SELECT body FROM webhook_inbox ORDER BY id")]
    assert stored == ["g1", "g2"]


async def test_storage_errors_reach_every_waiting_request(pool: asyncpg.Pool) -> None:
    writer = InboxWriter(pool)
    await pool.execute("ALTER TABLE webhook_inbox RENAME TO webhook_inbox_gone")
    results = await asyncio.gather(
        *(writer.insert("alertmanager", _body(n)) for n in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, asyncpg.UndefinedTableError) for r in results)
