"""Timers exactly once in effect: a fire repeated after its holder died adds no second
reminder, and a fire slower than its lease keeps it (a heartbeat) instead of being fired again
by another replica. Real Postgres, Redis and sandbox Slack (behind the fault proxy for the slow
call); time is a controlled clock for due times, Postgres's own for leases."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import asyncpg

from sandbox.slack import SlackDriver, SlackSandbox
from tests.faults.proxy import Fault, FaultProxy
from tests.integration.rig import (
    SIGNING_SECRET,
    FakeClock,
    bot_settings,
    bot_url,
    group_payload,
    incident_channel,
    playbooks_with_roles,
    post_alert,
    running_bot_with_clock,
)

REMINDER = "not been acknowledged"
LEASE_S = 15.0  # the default claim lease
SWEEP_S = 0.5


async def _fetch(dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        rows: list[asyncpg.Record] = await conn.fetch(sql, *args)
        return rows
    finally:
        await conn.close()


async def _until(dsn: str, sql: str, *args: object, timeout: float) -> asyncpg.Record:
    """The first row of `sql` once it returns one (polls Postgres: there is no event to wait on)."""
    async with asyncio.timeout(timeout):
        while not (rows := await _fetch(dsn, sql, *args)):
            await asyncio.sleep(0.05)
    return rows[0]


async def test_a_timer_whose_holder_died_mid_fire_fires_again_after_the_short_lease_and_reminds_once(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str
) -> None:
    clock = FakeClock()
    settings = bot_settings(slack, database_dsn, redis_url, sweep_interval_seconds=SWEEP_S)
    async with running_bot_with_clock(settings, clock) as bot:
        await post_alert(http, bot, group_payload("pay", [("p1", "firing")], severity="critical"))
        channel = await incident_channel(slack)
        # A replica claimed the reminder 13 s ago, wrote (and announced) its reminder, and died
        # before finishing: the claim is still its own for 2 more seconds.
        timer = (
            await _fetch(
                database_dsn,
                "UPDATE timers SET claimed_by = 'dead-replica', claim = claim + 1,"
                " claimed_at = clock_timestamp() - make_interval(secs => $1::float8)"
                " WHERE kind = 'ack_reminder' RETURNING id, incident_id",
                LEASE_S - 2,
            )
        )[0]
        conn = await asyncpg.connect(database_dsn)
        try:
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO timeline_events (incident_id, at, kind, text, announce, idempotency_key)"
                    " VALUES ($1, now(), 'ack_reminder', $2, true, $3)",
                    timer["incident_id"],
                    f"⏰ This P1 incident has {REMINDER} for 15 min",
                    f"timer:{timer['id']}",
                )
                await conn.execute(
                    "UPDATE incidents SET version = version + 1 WHERE id = $1", timer["incident_id"]
                )
        finally:
            await conn.close()
        await slack.wait_for(lambda s: any(REMINDER in m.text for m in s.messages(channel.id)))
        clock.advance(minutes=15, seconds=1)
        started = time.monotonic()
        done = await _until(
            database_dsn,
            "SELECT claimed_by, claim, outcome FROM timers WHERE id = $1 AND done_at IS NOT NULL",
            timer["id"],
            timeout=LEASE_S,
        )
        took = time.monotonic() - started
        # Taken over by the live replica as soon as the dead one's lease lapsed.
        assert (done["claimed_by"], done["claim"], done["outcome"]) == (bot.parts.owner, 2, "reminded")
        assert took <= 2 + SWEEP_S + 2.0, f"re-fired {took:.1f} s after the clock moved"
        escalations = await _fetch(database_dsn, "SELECT id FROM timers WHERE kind = 'escalate'")
        assert len(escalations) == 1  # the follow-up is scheduled once
        await bot.parts.supervisor.drain(5.0)
        events = await _fetch(database_dsn, "SELECT id FROM timeline_events WHERE kind = 'ack_reminder'")
    assert len(events) == 1
    assert sum(REMINDER in m.text for m in slack.messages(channel.id)) == 1


async def test_a_reminder_fires_once_without_a_dead_holder(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str
) -> None:
    """Positive control for the test above: the live replica's own fire posts the reminder."""
    clock = FakeClock()
    settings = bot_settings(slack, database_dsn, redis_url, sweep_interval_seconds=SWEEP_S)
    async with running_bot_with_clock(settings, clock) as bot:
        await post_alert(http, bot, group_payload("pay", [("p1", "firing")], severity="critical"))
        channel = await incident_channel(slack)
        clock.advance(minutes=15, seconds=1)
        await slack.wait_for(lambda s: any(REMINDER in m.text for m in s.messages(channel.id)))
        await bot.parts.supervisor.drain(5.0)
        keys = await _fetch(
            database_dsn, "SELECT idempotency_key FROM timeline_events WHERE kind = 'ack_reminder'"
        )
    assert [k["idempotency_key"] for k in keys] == [await _timer_key(database_dsn, "ack_reminder")]
    assert sum(REMINDER in m.text for m in slack.messages(channel.id)) == 1


async def _timer_key(dsn: str, kind: str) -> str:
    rows = await _fetch(dsn, "SELECT id FROM timers WHERE kind = $1", kind)
    return f"timer:{rows[0]['id']}"


async def test_a_fire_slower_than_its_lease_keeps_it_and_a_second_replica_does_not_fire_it(
    slack: SlackSandbox,
    faulty_slack: FaultProxy,
    http: aiohttp.ClientSession,
    database_dsn: str,
    redis_url: str,
    tmp_path: Path,
) -> None:
    """Archiving takes 4 s at the HTTP level (the fault proxy holds conversations.archive);
    the lease is 1.5 s. Two replicas sweep every 0.5 s: the channel is archived by one call."""
    clock = FakeClock()
    lease = 1.5
    faulty_slack.delay_s = 4.0
    faulty_slack.fail_next("conversations.archive", Fault.SLOW)
    settings = bot_settings(
        slack,
        database_dsn,
        redis_url,
        slack_api_url=faulty_slack.api_url,
        archive_after_seconds=3600,
        claim_lease_seconds=lease,
        sweep_interval_seconds=SWEEP_S,
        playbooks_dir=playbooks_with_roles(tmp_path / "playbooks"),
    )
    async with (
        running_bot_with_clock(settings, clock) as one,
        running_bot_with_clock(settings.model_copy(update={"replica_name": "second"}), clock),
    ):
        driver = SlackDriver(slack, bot_url(one) + "/slack/events", SIGNING_SECRET, http)
        await driver.slash_command(
            "/incident", 'open "checkout errors" sev=P2', user_id="U0ALICE", channel_id="C0INCIDENTS"
        )
        channel = await incident_channel(slack)
        await driver.slash_command("/incident", "resolve fixed", user_id="U0ALICE", channel_id=channel.id)
        await slack.wait_for(lambda s: next((r for r in s.responses if "resolved by" in r.text), None))
        clock.advance(minutes=61)
        await slack.wait_for(lambda s: s.channels[channel.id].is_archived, timeout=15)
        done = await _until(
            database_dsn,
            "SELECT claim, outcome FROM timers WHERE kind = 'archive' AND done_at IS NOT NULL",
            timeout=10,
        )
        events = await _fetch(database_dsn, "SELECT id FROM timeline_events WHERE kind = 'archived'")
    archives = faulty_slack.calls("conversations.archive")
    assert [a.fault for a in archives] == [Fault.SLOW]  # one call, and it was the slow one
    assert faulty_slack.delay_s > lease
    assert (done["claim"], done["outcome"]) == (1, "archived")  # claimed once, never taken over
    assert len(events) == 1
