"""Deliveries about one subject are applied in arrival order, whatever the number of workers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bot.store.db import apply_migrations, create_pool
from bot.store.inbox import Inbox


@pytest.fixture
async def inbox(database_dsn: str) -> AsyncIterator[Inbox]:
    await apply_migrations(database_dsn)
    pool = await create_pool(database_dsn)
    try:
        yield Inbox(pool)
    finally:
        await pool.close()


async def test_a_newer_delivery_waits_while_an_older_one_of_its_subject_is_being_applied(
    inbox: Inbox,
) -> None:
    ack = await inbox.insert_delivery("pagerduty", '{"n": "ack"}', "W1", subject="PI1")
    resolve = await inbox.insert_delivery("pagerduty", '{"n": "resolve"}', "W2", subject="PI1")
    other = await inbox.insert_delivery("pagerduty", '{"n": "other"}', "W3", subject="PI2")
    unkeyed = await inbox.insert_delivery("alertmanager", '{"n": "unkeyed"}')
    first_claimed = asyncio.Event()
    release_first = asyncio.Event()
    seen: list[int | None] = []

    async def first_worker() -> None:
        async with inbox.claim_delivery() as claimed:
            assert claimed is not None
            seen.append(claimed[0].id)
            first_claimed.set()
            await release_first.wait()

    async def claim_and_finish() -> int | None:
        async with inbox.claim_delivery() as claimed:
            return claimed[0].id if claimed else None

    holder = asyncio.create_task(first_worker())
    await first_claimed.wait()
    assert seen == [ack]
    # While "ack" is being applied, other workers take other subjects, never "resolve".
    assert await claim_and_finish() == other
    assert await claim_and_finish() == unkeyed
    assert await claim_and_finish() is None
    release_first.set()
    await holder
    assert await claim_and_finish() == resolve


async def test_a_failing_delivery_holds_back_its_subject_until_it_succeeds_or_is_given_up(
    inbox: Inbox,
) -> None:
    first = await inbox.insert_delivery("alertmanager", '{"n": 1}', subject="group-a")
    second = await inbox.insert_delivery("alertmanager", '{"n": 2}', subject="group-a")
    assert first is not None
    await inbox.record_delivery_failure(first, "boom", give_up=False)  # backing off
    async with inbox.claim_delivery() as claimed:
        assert claimed is None
    await inbox.record_delivery_failure(first, "boom", give_up=True)
    async with inbox.claim_delivery() as claimed:
        assert claimed is not None and claimed[0].id == second


async def test_long_group_keys_fit(inbox: Inbox) -> None:
    key = '{}:{alertname="' + "x" * 4000 + '"}'
    assert await inbox.insert_delivery("alertmanager", '{"n": 1}', subject=key) is not None
