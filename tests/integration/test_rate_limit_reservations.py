"""Shared Slack rate limits and locks when a process dies (kill -9): what it left in Redis must
not hold up the process that replaces it, or the other replicas, for longer than a small bound.

Real Redis, the real slack_sdk client against the sandbox Slack (limits 50x faster on both
sides, as in tests/faults/test_crash_recovery.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from bot.clients.slack import RESERVE_HORIZON_S, TIER_2, SlackChat, build_client
from bot.obs.metrics import Metrics
from bot.store.coordination import Coordination, connect
from sandbox.slack import SlackSandbox

RATE_SCALE = 50.0
QUEUED = 200
# conversations.list is Tier 2: 17 at once, then 18 a minute (x RATE_SCALE).
RATE_PER_S = TIER_2[0] * RATE_SCALE / 60
BURST = TIER_2[1]
# Timing noise on a shared machine (Redis and HTTP round trips, the event loop).
SLACK_S = 0.5
# What a dead process's queued calls may cost the next caller: one horizon of reservations
# (1 s) and the next token's interval.
MAX_DELAY_S = 1.0 + 1 / RATE_PER_S + SLACK_S


@pytest.fixture
async def fast_slack() -> AsyncIterator[SlackSandbox]:
    sandbox = SlackSandbox(rate_scale=RATE_SCALE)
    await sandbox.start()
    try:
        yield sandbox
    finally:
        await sandbox.stop()


def chat(slack: SlackSandbox, coord: Coordination) -> SlackChat:
    metrics = Metrics()
    return SlackChat(build_client(slack.bot_token, slack.api_url, metrics), coord, metrics, RATE_SCALE)


async def dying_process_queues_calls(slack: SlackSandbox, redis_url: str) -> None:
    """A process with QUEUED calls of one rate-limited method waiting; it dies (its tasks end
    without a word, its connection closes) once it has spent the burst and waited half a second
    for more (time for every queued call to have reserved a token, were reservations unbounded)."""
    coord = Coordination(connect(redis_url))
    doomed = chat(slack, coord)
    calls = [asyncio.create_task(doomed.call("conversations.list")) for _ in range(QUEUED)]
    await slack.wait_for(
        lambda s: len(s.calls_to("conversations.list")) >= BURST + RATE_PER_S / 2 or None, timeout=10
    )
    for call in calls:
        call.cancel()
    await asyncio.gather(*calls, return_exceptions=True)
    await coord.aclose()


async def test_calls_a_dead_process_had_queued_delay_the_next_process_by_at_most_the_horizon(
    fast_slack: SlackSandbox, redis_url: str
) -> None:
    await dying_process_queues_calls(fast_slack, redis_url)
    survivor_coord = Coordination(connect(redis_url))
    try:
        survivor = chat(fast_slack, survivor_coord)
        started = time.monotonic()
        await survivor.call("conversations.list")
        took = time.monotonic() - started
    finally:
        await survivor_coord.aclose()
    # Without the horizon the dead process's reservations alone would be (QUEUED - BURST) /
    # RATE_PER_S = 12 s of debt.
    assert took <= MAX_DELAY_S, f"{took:.2f} s"
    # No call beyond Slack's limit: nothing was answered 429.
    assert [c for c in fast_slack.calls if c.status == 429] == []


async def test_unbounded_reservations_of_a_dead_process_would_delay_the_next_one(redis_url: str) -> None:
    """Positive control: reservations made without a horizon (as the bucket did before) put
    the bucket in debt that the next reserver sees."""
    dead = Coordination(connect(redis_url))
    for _ in range(QUEUED):
        await dead.take_token("slack:conversations.list", RATE_PER_S, BURST)
    await dead.aclose()
    survivor = Coordination(connect(redis_url))
    try:
        answer = await survivor.reserve_token(
            "slack:conversations.list", RATE_PER_S, BURST, RESERVE_HORIZON_S
        )
    finally:
        await survivor.aclose()
    assert not answer.granted
    assert answer.wait_s >= (QUEUED - BURST) / RATE_PER_S - RESERVE_HORIZON_S - SLACK_S


async def test_a_reservation_is_granted_within_the_horizon_and_never_beyond(redis_url: str) -> None:
    coord = Coordination(connect(redis_url))
    try:
        answers = [await coord.reserve_token("bucket", 10.0, 3, 0.5) for _ in range(12)]
    finally:
        await coord.aclose()
    granted = [a for a in answers if a.granted]
    # 3 at once, then at most 0.5 s x 10/s ahead (one more may fit as time passes).
    assert 3 + 5 <= len(granted) <= 3 + 6
    assert all(a.wait_s <= 0.5 for a in granted)
    refused = answers[len(granted) :]
    assert refused and all(not a.granted and 0 < a.wait_s <= 0.2 for a in refused)


async def test_a_restarted_replica_takes_over_its_earlier_process_locks_at_once(redis_url: str) -> None:
    earlier = Coordination(connect(redis_url), "bot-0")
    assert await earlier.try_lock("publish:1", 60_000) is not None
    await earlier.aclose()  # killed: the lock stays for its 60 s
    other = Coordination(connect(redis_url), "bot-1")
    unnamed = Coordination(connect(redis_url))
    restarted = Coordination(connect(redis_url), "bot-0")
    try:
        # Another replica, or one without a stable name, waits for the lock to lapse.
        assert await other.try_lock("publish:1", 60_000) is None
        assert await unnamed.try_lock("publish:1", 60_000) is None
        # The same replica's next process takes it at once, and then holds it like any lock.
        token = await restarted.try_lock("publish:1", 60_000)
        assert token is not None
        assert await restarted.try_lock("publish:1", 60_000) is None
        assert await other.try_lock("publish:1", 60_000) is None
        await restarted.release("publish:1", token)
        assert await other.try_lock("publish:1", 60_000) is not None
    finally:
        for coord in (other, unnamed, restarted):
            await coord.aclose()
