"""The incident lifecycle from Slack: every /incident subcommand through signed requests."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import aiohttp
import asyncpg

from sandbox.slack import Channel, Message, ResponsePost, SlackDriver, SlackSandbox
from tests.integration.rig import (
    SIGNING_SECRET,
    TEST_ROLES,
    FakeClock,
    bot_settings,
    bot_url,
    group_payload,
    incident_channel,
    notification_channel,
    playbooks_with_roles,
    post_alert,
    running_bot,
    running_bot_with_clock,
)


def _note(s: SlackSandbox) -> Message:
    """The bot's notification in #incident (not the in-channel replies to commands)."""
    return next(
        m for m in s.messages(notification_channel(s).id) if m.blocks and "opened" in json.dumps(m.blocks)
    )


def _reply(slack: SlackSandbox, needle: str) -> Callable[[SlackSandbox], ResponsePost | None]:
    return lambda s: next((r for r in s.responses if needle in r.text), None)


async def _declare(
    slack: SlackSandbox,
    driver: SlackDriver,
    title: str = "checkout errors",
    sev: str = "P2",
    user: str = "U0ALICE",
) -> Channel:
    await driver.slash_command(
        "/incident", f'open "{title}" sev={sev}', user_id=user, channel_id="C0INCIDENTS"
    )
    channel = await slack.wait_for(lambda s: s.find_channel("inc-"))
    # The notification itself (the command's reply lands in the same channel).
    await slack.wait_for(
        lambda s: (
            s.messages(channel.id)
            and any(
                m.blocks and "opened" in json.dumps(m.blocks) for m in s.messages(notification_channel(s).id)
            )
        )
    )
    return channel


async def _db(dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        rows: list[asyncpg.Record] = await conn.fetch(sql, *args)
        return rows
    finally:
        await conn.close()


async def test_human_incident_full_lifecycle(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str, tmp_path: Path
) -> None:
    settings = bot_settings(
        slack, database_dsn, redis_url, playbooks_dir=playbooks_with_roles(tmp_path / "pb")
    )
    async with running_bot(settings) as bot:
        driver = SlackDriver(slack, bot_url(bot) + "/slack/events", SIGNING_SECRET, http)
        channel = await _declare(slack, driver)
        assert channel.name.startswith("inc-") and "checkout-errors" in channel.name
        assert "U0ALICE" in channel.members  # the requester is invited and is commander
        card = slack.messages(channel.id)[0]
        assert "<@U0ALICE>" in json.dumps(card.blocks) and "P2" in json.dumps(card.blocks)

        await driver.slash_command(
            "/incident", "status rolled back the payment service", user_id="U0ALICE", channel_id=channel.id
        )
        await slack.wait_for(lambda s: "rolled back the payment service" in json.dumps(_note(s).blocks))
        await driver.slash_command("/incident", "sev P1", user_id="U0BOB", channel_id=channel.id)
        await slack.wait_for(lambda s: s.channels[channel.id].topic.startswith("[P1]"))
        await driver.slash_command(
            "/incident", "assign <@U0CAROL|carol> scribe", user_id="U0ALICE", channel_id=channel.id
        )
        await slack.wait_for(lambda s: "U0CAROL" in s.channels[channel.id].members)
        # The card says who the scribe is, next to the commander.
        await slack.wait_for(lambda s: "*Scribe* <@U0CAROL>" in json.dumps(s.messages(channel.id)[0].blocks))
        await driver.slash_command(
            "/incident", "assign <@U0BOB|bob>", user_id="U0ALICE", channel_id=channel.id
        )
        await slack.wait_for(lambda s: "<@U0BOB>" in json.dumps(s.messages(channel.id)[0].blocks))
        await driver.slash_command("/incident", "ack", user_id="U0BOB", channel_id=channel.id)
        await slack.wait_for(lambda s: "Acknowledged" in json.dumps(s.messages(channel.id)[0].blocks))

        # A pinned message lands on the timeline with its author and text.
        msg = slack.add_message(channel.id, "root cause: expired TLS cert on payments-db", user_id="U0CAROL")
        await driver.reaction_added("pushpin", channel_id=channel.id, ts=msg.ts, user_id="U0BOB")

        await driver.slash_command(
            "/incident", 'resolve "cert renewed"', user_id="U0BOB", channel_id=channel.id
        )
        await slack.wait_for(lambda s: "Resolved" in json.dumps(_note(s).blocks))
        summary = await slack.wait_for(
            lambda s: next(
                (m for m in s.messages(channel.id) if "Duration" in m.text or "duration" in m.text), None
            )
        )
        assert summary is not None
        await driver.slash_command("/incident", "timeline", user_id="U0BOB", channel_id=channel.id)
        timeline = await slack.wait_for(_reply(slack, "Timeline of #1"))
        for needle in (
            "Declared by",
            "set severity to P1",
            "made <@U0CAROL> scribe",
            "Acknowledged by",
            "pinned: root cause: expired TLS cert",
            "Resolved by <@U0BOB>: cert renewed",
        ):
            assert needle in timeline.text, needle

        await driver.slash_command("/incident", "reopen", user_id="U0BOB", channel_id=channel.id)
        await slack.wait_for(_reply(slack, "reopened by"))
        rows = await _db(database_dsn, "SELECT status, severity, commander FROM incidents")
        assert (rows[0]["status"], rows[0]["severity"], rows[0]["commander"]) == ("triggered", "P1", "U0BOB")


async def test_resolve_asks_first_while_alerts_fire(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str, tmp_path: Path
) -> None:
    settings = bot_settings(
        slack, database_dsn, redis_url, playbooks_dir=playbooks_with_roles(tmp_path / "pb")
    )
    async with running_bot(settings) as bot:
        driver = SlackDriver(slack, bot_url(bot) + "/slack/events", SIGNING_SECRET, http)
        await post_alert(http, bot, group_payload("shop", [("a1", "firing")]))
        channel = await incident_channel(slack)
        await driver.slash_command("/incident", "resolve", user_id="U0ALICE", channel_id=channel.id)
        ask = await slack.wait_for(_reply(slack, "still firing"))
        assert "confirm_resolve" in json.dumps(ask.blocks)
        rows = await _db(database_dsn, "SELECT status FROM incidents")
        assert rows[0]["status"] == "triggered"
        # The confirmation button is on the ephemeral reply: click it as Slack would.
        resp = await driver.click("confirm_resolve", user_id="U0ALICE", channel_id=channel.id)
        assert resp.status == 200
        await slack.wait_for(lambda s: "Resolved" in json.dumps(_note(s).blocks))


async def test_bad_input_gets_usage_never_a_traceback(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str
) -> None:
    async with running_bot(bot_settings(slack, database_dsn, redis_url)) as bot:
        driver = SlackDriver(slack, bot_url(bot) + "/slack/events", SIGNING_SECRET, http)
        channel = await _declare(slack, driver)
        cases = [
            ("open sev=P2", "Usage: `/incident open"),  # alone, `open` opens the form instead
            ("open x sev=P9", "is not a severity"),
            ("sev", "Usage: `/incident sev"),
            ("sev high", "is not a severity"),
            ("assign bob", "is not a user"),
            ("assign <@U0BOB|bob> janitor", "Usage: `/incident assign"),
            ("status", "Usage: `/incident status"),
            ("silence", "Usage: `/incident silence"),
            ("silence forever", "is not a duration"),
            ("ack #999", "No incident #999"),
            ("timeline extra words", "Usage: `/incident timeline"),
        ]
        for text, needle in cases:
            await driver.slash_command("/incident", text, user_id="U0ALICE", channel_id=channel.id)
            await slack.wait_for(_reply(slack, needle))
        assert all("Traceback" not in r.text and "reference `" not in r.text for r in slack.responses)


async def test_ack_reminder_then_escalation_fire_once_with_two_replicas(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str, tmp_path: Path
) -> None:
    policy_dir = _policy_with_escalation(tmp_path)
    clock = FakeClock()
    settings = bot_settings(slack, database_dsn, redis_url, playbooks_dir=policy_dir)
    async with running_bot_with_clock(settings, clock) as one, running_bot_with_clock(settings, clock):
        await post_alert(http, one, group_payload("pay", [("p1", "firing")], severity="critical"))
        channel = await slack.wait_for(lambda s: s.find_channel("inc-"))
        clock.advance(minutes=15, seconds=1)
        await slack.wait_for(lambda s: any("not been acknowledged" in m.text for m in s.messages(channel.id)))
        clock.advance(minutes=15, seconds=1)
        await slack.wait_for(lambda s: any("Escalating" in m.text for m in s.messages(channel.id)))
        escalation = next(m for m in slack.messages(channel.id) if "Escalating" in m.text)
        assert "<!subteam^S0SRE>" in json.dumps(escalation.blocks)
        # Both replicas sweep; each timer fired once.
        clock.advance(minutes=1)
        await _wait_timers_done(database_dsn)
        assert sum("not been acknowledged" in m.text for m in slack.messages(channel.id)) == 1
        assert sum("Escalating" in m.text for m in slack.messages(channel.id)) == 1


async def test_acknowledged_incident_is_not_escalated(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str, tmp_path: Path
) -> None:
    clock = FakeClock()
    settings = bot_settings(slack, database_dsn, redis_url, playbooks_dir=_policy_with_escalation(tmp_path))
    async with running_bot_with_clock(settings, clock) as bot:
        driver = SlackDriver(slack, bot_url(bot) + "/slack/events", SIGNING_SECRET, http)
        await post_alert(http, bot, group_payload("pay", [("p1", "firing")], severity="critical"))
        channel = await incident_channel(slack)
        await driver.slash_command("/incident", "ack", user_id="U0BOB", channel_id=channel.id)
        await slack.wait_for(_reply(slack, "acknowledged by"))
        clock.advance(minutes=31)
        await _wait_timers_done(database_dsn, kinds=("ack_reminder",))
        rows = await _db(database_dsn, "SELECT outcome FROM timers WHERE kind = 'ack_reminder'")
        assert [r["outcome"] for r in rows] == ["already acknowledged"]
        assert not any(
            "Escalating" in m.text or "not been acknowledged" in m.text for m in slack.messages(channel.id)
        )


async def test_a_declared_incident_does_not_ask_its_own_commander_to_acknowledge_it(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str, tmp_path: Path
) -> None:
    clock = FakeClock()
    settings = bot_settings(slack, database_dsn, redis_url, playbooks_dir=_policy_with_escalation(tmp_path))
    async with running_bot_with_clock(settings, clock) as bot:
        driver = SlackDriver(slack, bot_url(bot) + "/slack/events", SIGNING_SECRET, http)
        # Declared by @alice, who commands it from the start.
        declared = await _declare(slack, driver, sev="P1")
        # Positive control: an alert-born P1 of the same severity, nobody on it yet.
        await post_alert(http, bot, group_payload("pay", [("p1", "firing")], severity="critical"))
        alerted = await slack.wait_for(
            lambda s: next(
                (c for c in s.channels.values() if c.name.startswith("inc-") and c.id != declared.id), None
            )
        )
        clock.advance(minutes=15, seconds=1)
        await slack.wait_for(lambda s: any("not been acknowledged" in m.text for m in s.messages(alerted.id)))
        clock.advance(minutes=15, seconds=1)
        await slack.wait_for(lambda s: any("Escalating" in m.text for m in s.messages(alerted.id)))
        await _wait_timers_done(database_dsn)
        assert not any(
            "not been acknowledged" in m.text or "Escalating" in m.text for m in slack.messages(declared.id)
        )
        rows = await _db(
            database_dsn,
            "SELECT t.kind FROM timers t JOIN incidents i ON i.id = t.incident_id"
            " WHERE i.channel_id = $1 AND t.kind IN ('ack_reminder', 'escalate')",
            declared.id,
        )
        assert rows == []


async def _wait_timers_done(
    dsn: str, kinds: tuple[str, ...] = ("ack_reminder", "escalate"), timeout: float = 10.0
) -> None:
    import asyncio

    async with asyncio.timeout(timeout):
        while True:
            rows = await _db(
                dsn,
                "SELECT count(*) AS n FROM timers WHERE done_at IS NULL AND kind = ANY($1::text[])",
                list(kinds),
            )
            if rows[0]["n"] == 0:
                return
            await asyncio.sleep(0.05)


def _policy_with_escalation(tmp_path: Path) -> Path:
    escalation = {"users": [], "usergroups": ["S0SRE"]}
    return playbooks_with_roles(tmp_path / "playbooks", {**TEST_ROLES, "escalation": escalation})


async def test_resolved_channel_is_archived_after_the_delay(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str
) -> None:
    clock = FakeClock()
    settings = bot_settings(slack, database_dsn, redis_url, archive_after_seconds=3600)
    async with running_bot_with_clock(settings, clock) as bot:
        driver = SlackDriver(slack, bot_url(bot) + "/slack/events", SIGNING_SECRET, http)
        channel = await _declare(slack, driver)
        await driver.slash_command("/incident", "resolve fixed", user_id="U0ALICE", channel_id=channel.id)
        await slack.wait_for(_reply(slack, "resolved by"))
        clock.advance(minutes=59)
        await _wait_timers_done(database_dsn, kinds=("ack_reminder",))
        assert not slack.channels[channel.id].is_archived
        clock.advance(minutes=2)
        await slack.wait_for(lambda s: s.channels[channel.id].is_archived, timeout=10)
        # Slack's archive lands before the bot records it: wait for the timer to finish.
        await _wait_timers_done(database_dsn, kinds=("archive",))
        rows = await _db(database_dsn, "SELECT archived_at FROM incidents")
        assert rows[0]["archived_at"] is not None


async def test_unacknowledged_p1_pages_through_pagerduty(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str, tmp_path: Path
) -> None:
    from sandbox.pagerduty import DEFAULT_API_TOKEN, PagerDutySandbox

    clock = FakeClock()
    async with PagerDutySandbox() as pd:
        routing_key = next(iter(pd.services.values())).integration_key
        settings = bot_settings(
            slack,
            database_dsn,
            redis_url,
            pagerduty_api_token=DEFAULT_API_TOKEN,
            pagerduty_api_url=pd.base_url,
            pagerduty_events_url=pd.base_url,
            pagerduty_from_email="alice@example.com",
            pagerduty_ca_bundle=str(pd.ca_path),
            pagerduty_routing_key=routing_key,
        )
        async with running_bot_with_clock(settings, clock) as bot:
            await post_alert(http, bot, group_payload("pay", [("p1", "firing")], severity="critical"))
            channel = await slack.wait_for(lambda s: s.find_channel("inc-"))
            clock.advance(minutes=15, seconds=1)
            await slack.wait_for(
                lambda s: any("not been acknowledged" in m.text for m in s.messages(channel.id))
            )
            clock.advance(minutes=15, seconds=1)
            await slack.wait_for(
                lambda s: any("paged the on-call" in m.text for m in s.messages(channel.id)), timeout=15
            )
            await pd.wait_for(lambda: len(pd.events) == 1)
            event = pd.events[0]
            assert event["event_action"] == "trigger" and event["dedup_key"] == "incidentbot-1"
            assert "not acknowledged" in event["payload"]["summary"]


async def test_the_update_reminder_names_comms_else_the_commander(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str, tmp_path: Path
) -> None:
    """Status updates are the comms role's job: the cadence reminder names whoever holds it, and
    the commander when nobody does."""
    clock = FakeClock()
    settings = bot_settings(
        slack, database_dsn, redis_url, playbooks_dir=playbooks_with_roles(tmp_path / "pb")
    )
    async with running_bot_with_clock(settings, clock) as bot:
        driver = SlackDriver(slack, bot_url(bot) + "/slack/events", SIGNING_SECRET, http)
        with_comms = await _declare(slack, driver, title="checkout errors", sev="P1")
        await driver.slash_command(
            "/incident", "assign <@U0CAROL|carol> comms", user_id="U0ALICE", channel_id=with_comms.id
        )
        await slack.wait_for(lambda s: "U0CAROL" in s.channels[with_comms.id].members)
        await driver.slash_command(
            "/incident", 'open "search slow" sev=P1', user_id="U0BOB", channel_id="C0INCIDENTS"
        )
        without = await slack.wait_for(
            lambda s: next((c for c in s.channels_with_prefix("inc-") if c.id != with_comms.id), None)
        )
        clock.advance(minutes=31)
        await slack.wait_for(
            lambda s: any(
                "<@U0CAROL>: no status update for 30 min" in m.text for m in s.messages(with_comms.id)
            )
        )
        await slack.wait_for(
            lambda s: any("<@U0BOB>: no status update for 30 min" in m.text for m in s.messages(without.id))
        )
