"""The storm role in Postgres (bot.store.storms): decided once per incident under a per-team
lock, so that however many replicas publish in whatever order, exactly `incidents` of a storm's
incidents keep their own notifications — even one whose opening transaction committed after
the storm began although its opening time is earlier (two replicas open incidents at once)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from bot.core.catalog import StormPolicy
from bot.core.incident import Severity
from bot.core.storms import StormRole
from bot.store.db import apply_migrations, create_pool
from bot.store.storms import StormStore, TeamRef

TEAM = TeamRef("skillquest", "platform")
POLICY = StormPolicy(incidents=5, window_seconds=60, channels_for=[Severity.P1, Severity.P2])
T0 = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)


@pytest.fixture
async def pool(database_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    await apply_migrations(database_dsn)
    created = await create_pool(database_dsn)
    try:
        yield created
    finally:
        await created.close()


async def opened(pool: asyncpg.Pool, n: int, *, severity: Severity = Severity.P4) -> int:
    """An alert-born SkillQuest incident opened n seconds after T0 (committed now)."""
    found: int = await pool.fetchval(
        "INSERT INTO incidents (group_key, status, severity, title, source, created_at, team)"
        " VALUES ($1, 'triggered', $2, $3, 'alertmanager', $4, $5) RETURNING id",
        f"group-{n}",
        severity.value,
        f"Alert{n}",
        T0 + timedelta(seconds=n),
        TEAM.name,
    )
    return found


async def roles(pool: asyncpg.Pool) -> dict[str, str | None]:
    found = await pool.fetch("SELECT title, storm_role FROM incidents ORDER BY created_at")
    return {r["title"]: r["storm_role"] for r in found}


async def test_an_incident_committed_after_the_storm_began_does_not_get_a_sixth_notification(
    pool: asyncpg.Pool,
) -> None:
    store = StormStore(pool)
    ids = {n: await opened(pool, n) for n in (1, 2, 3, 4, 5, 7)}
    now = T0 + timedelta(seconds=8)
    # The 7th is published first: with six visible incidents it starts the storm.
    first = await store.admit(ids[7], TEAM, POLICY, now)
    assert first.started and first.role is StormRole.WAITING
    # The 6th opened before it, on another replica, whose transaction committed only now.
    ids[6] = await opened(pool, 6)
    for n in (6, 1, 2, 3, 4, 5):
        await store.admit(ids[n], TEAM, POLICY, now)
    decided = await roles(pool)
    own = [title for title, role in decided.items() if role == StormRole.OWN.value]
    assert own == ["Alert1", "Alert2", "Alert3", "Alert4", "Alert5"], decided
    assert decided["Alert6"] == StormRole.WAITING.value
    assert await pool.fetchval("SELECT count(*) FROM storms") == 1
    assert await pool.fetchval("SELECT count(DISTINCT storm_id) FROM incidents") == 1


async def test_in_opening_order_the_first_five_keep_their_notifications(pool: asyncpg.Pool) -> None:
    """Positive control: published in opening order, the sixth starts the storm and a P1
    during it gets its channel at once."""
    store = StormStore(pool)
    ids = {n: await opened(pool, n) for n in range(1, 7)}
    ids[7] = await opened(pool, 7, severity=Severity.P1)
    now = T0 + timedelta(seconds=8)
    admissions = {n: await store.admit(ids[n], TEAM, POLICY, now) for n in range(1, 8)}
    assert [admissions[n].role for n in range(1, 6)] == [StormRole.OWN] * 5
    assert admissions[6].started and admissions[6].role is StormRole.WAITING
    assert admissions[7].role is StormRole.DIGEST
    # Decided once: asking again changes nothing.
    assert (await store.admit(ids[1], TEAM, POLICY, now)).role is StormRole.OWN


async def test_one_decided_before_the_storm_was_counted_still_leaves_five_in_all(pool: asyncpg.Pool) -> None:
    """Three openings commit late: the 7th, decided while only four were visible, kept its own
    notification, so only four of the earlier ones can."""
    store = StormStore(pool)
    ids = {n: await opened(pool, n) for n in (1, 2, 3, 7)}
    now = T0 + timedelta(seconds=8)
    assert (await store.admit(ids[7], TEAM, POLICY, now)).role is StormRole.OWN
    ids |= {n: await opened(pool, n) for n in (4, 5, 6)}
    assert (await store.admit(ids[6], TEAM, POLICY, now)).started
    for n in (5, 4, 3, 2, 1):
        await store.admit(ids[n], TEAM, POLICY, now)
    decided = await roles(pool)
    own = [title for title, role in decided.items() if role == StormRole.OWN.value]
    assert own == ["Alert1", "Alert2", "Alert3", "Alert4", "Alert7"], decided
    assert decided["Alert5"] == decided["Alert6"] == StormRole.WAITING.value


async def test_one_committed_late_with_an_earlier_opening_than_those_decided_starts_the_storm(
    pool: asyncpg.Pool,
) -> None:
    """Five incidents were given their own notifications; the 3rd, opened before the 4th to 6th
    but committed after they were decided, counts only two before it and must still not be
    a sixth."""
    store = StormStore(pool)
    ids = {n: await opened(pool, n) for n in (1, 2, 4, 5, 6)}
    now = T0 + timedelta(seconds=8)
    for n in (1, 2, 4, 5, 6):
        assert (await store.admit(ids[n], TEAM, POLICY, now)).role is StormRole.OWN
    ids[3] = await opened(pool, 3)
    late = await store.admit(ids[3], TEAM, POLICY, now)
    assert late.started and late.role is StormRole.WAITING
    ids[7] = await opened(pool, 7)
    assert (await store.admit(ids[7], TEAM, POLICY, now)).role is StormRole.WAITING
    assert await pool.fetchval("SELECT count(*) FROM incidents WHERE storm_id = $1", late.storm_id) == 7
    decided = await roles(pool)
    assert [t for t, r in decided.items() if r == StormRole.OWN.value] == [
        "Alert1",
        "Alert2",
        "Alert4",
        "Alert5",
        "Alert6",
    ]
