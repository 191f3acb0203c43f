"""The responder at 3 a.m.: free text as typed, ad hoc graphs over the range asked for, and
times that stay true. Through signed Slack requests, against a real Prometheus behind the
recording pass-through of test_promql_limits (it tells exactly which queries reached it)."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from sandbox.services import PrometheusServer
from sandbox.slack import SlackDriver, SlackSandbox
from sandbox.slack.models import Message
from tests.integration import test_promql_limits as promql_limits
from tests.integration.rig import (
    SIGNING_SECRET,
    bot_settings,
    bot_url,
    notification_channel,
    playbooks_with_roles,
    post_alert,
    running_bot,
)
from tests.integration.test_promql_limits import (
    PrometheusRecorder,
    alert_group,
    command,
    new_incident_channel,
    prometheus_query_count,
    texts,
)

pytestmark = pytest.mark.timeout(180)

# The fixtures of test_promql_limits.
exporter, prometheus, recorder = promql_limits.exporter, promql_limits.prometheus, promql_limits.recorder

STATUS = "We're rolling back; seeing \"connection refused\" on {api} [eu-1] — it's the customer's payments"
QUERY = 'sum(rate(adhoc_gauge{service=~"a.."}[1m]))'
DATE = re.compile(r"<!date\^(\d+)\^[^|>]+\|[^>]+ UTC>")


def captions(slack: SlackSandbox, channel: str) -> list[Message]:
    """The comments posted with graph uploads."""
    return [m for m in slack.messages(channel) if m.text.startswith("📈")]


async def incident_row(dsn: str, channel: str) -> asyncpg.Record:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow("SELECT * FROM incidents WHERE channel_id = $1", channel)
        assert row is not None
        return row
    finally:
        await conn.close()


async def test_free_text_reaches_the_incident_as_typed(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str, tmp_path: Path
) -> None:
    settings = bot_settings(
        slack, database_dsn, redis_url, playbooks_dir=playbooks_with_roles(tmp_path / "pb")
    )
    async with running_bot(settings) as bot:
        driver = SlackDriver(slack, bot_url(bot) + "/slack/events", SIGNING_SECRET, http)
        home = notification_channel(slack).id
        # An apostrophe in an unquoted title (shlex: "No closing quotation").
        opened = await command(slack, driver, "U0CAROL", home, "open We're down: checkout's 5xx sev=P2")
        assert "declared incident" in opened.text, opened.text
        channel = await new_incident_channel(slack, 0)
        row = await incident_row(database_dsn, channel)
        assert row["title"] == "We're down: checkout's 5xx" and row["severity"] == "P2"

        # Quotes, braces, brackets and apostrophes reach the incident exactly as typed.
        update = await command(slack, driver, "U0CAROL", channel, f"status {STATUS}")
        assert update.response_type == "in_channel" and "Status update" in update.text
        row = await incident_row(database_dsn, channel)
        assert row["last_status_update"] == STATUS
        # Quoted as a whole (the old way): the quotes are dropped, nothing else.
        await command(slack, driver, "U0CAROL", channel, 'status "it\'s stable now"')
        assert (await incident_row(database_dsn, channel))["last_status_update"] == "it's stable now"
        # Free text that starts with a number is not an incident reference.
        await command(slack, driver, "U0CAROL", channel, "status 3 pods still crashlooping")
        assert (await incident_row(database_dsn, channel))[
            "last_status_update"
        ] == "3 pods still crashlooping"

        # Malformed commands get usage or a reason, never a traceback; nothing changes.
        for text, wanted in [
            ('sev "P2', "is not a severity"),
            ("assign 'bob", "is not a user"),
            ("silence 2h 'alertname", "is not a matcher"),
            ("graph", "Usage"),
            ("graph ''", "Usage"),
            ("run scale", "Usage"),
            ("status", "Usage"),
            ('status ""', "Usage"),
        ]:
            refused = await command(slack, driver, "U0CAROL", channel, text)
            assert refused.response_type == "ephemeral"
            assert wanted in refused.text, (text, refused.text)
            assert "went wrong" not in refused.text
        assert (await incident_row(database_dsn, channel))[
            "last_status_update"
        ] == "3 pods still crashlooping"

        # The resolution summary keeps its apostrophes too.
        ref = f"#{row['id']}"
        done = await command(
            slack, driver, "U0CAROL", home, f"resolve {ref} the customer's payments are back"
        )
        assert "resolved" in done.text, done.text
        row = await incident_row(database_dsn, channel)
        assert row["status"] == "resolved" and row["resolution_summary"] == "the customer's payments are back"


async def test_ad_hoc_graph_uses_the_range_given_and_marks_only_a_real_alert_start(
    slack: SlackSandbox,
    http: aiohttp.ClientSession,
    database_dsn: str,
    redis_url: str,
    prometheus: PrometheusServer,
    recorder: PrometheusRecorder,
    tmp_path: Path,
) -> None:
    settings = bot_settings(
        slack,
        database_dsn,
        redis_url,
        prometheus_url=recorder.url,
        playbooks_dir=playbooks_with_roles(tmp_path / "pb"),
    )
    async with running_bot(settings) as bot:
        driver = SlackDriver(slack, bot_url(bot) + "/slack/events", SIGNING_SECRET, http)
        # 1. A declared incident: no alert started it, so no alert start is marked.
        await command(slack, driver, "U0CAROL", notification_channel(slack).id, "open Checkout slow sev=P3")
        declared = await new_incident_channel(slack, 0)
        began = time.time()
        drawing = await command(slack, driver, "U0CAROL", declared, f"graph {QUERY} 15m")
        assert drawing.text.startswith("Drawing"), drawing.text
        [caption] = await slack.wait_for(lambda s: captions(s, declared) or None, timeout=20)
        [query] = recorder.queries()
        assert query.params["query"] == QUERY  # quotes, braces and brackets intact
        start, end = float(query.params["start"]), float(query.params["end"])
        assert 15 * 60 - 2 <= end - start <= 15 * 60 + 2  # the range asked for, not widened
        assert began - 5 <= end <= time.time() + 5
        assert "alert started" not in caption.text
        # The window is in Slack's date format, not static text.
        stamps = [int(t) for t in DATE.findall(caption.text)]
        assert len(stamps) == 2 and abs(stamps[0] - start) <= 1 and abs(stamps[1] - end) <= 1

        # 2. An alert-born incident whose alert started three hours ago: a 15m graph stays 15 m
        # (not widened to the alert start − 1 h) and says when the alert really started.
        started = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
        body = alert_group("NoPlaybookForThis", "graphs", "")
        body["alerts"][0]["startsAt"] = started.isoformat().replace("+00:00", "Z")
        await post_alert(http, bot, body)
        fired = await new_incident_channel(slack, 1)
        await slack.wait_for(lambda s: any("No playbook matches" in t for t in texts(s, fired)))
        await command(slack, driver, "U0CAROL", fired, f"graph '{QUERY}' 15m")
        [caption] = await slack.wait_for(lambda s: captions(s, fired) or None, timeout=20)
        second = recorder.queries()[-1]
        assert len(recorder.queries()) == 2 and second.params["query"] == QUERY
        assert 15 * 60 - 2 <= float(second.params["end"]) - float(second.params["start"]) <= 15 * 60 + 2
        assert f"alert started <!date^{int(started.timestamp())}^" in caption.text

        # A malformed range is refused before Prometheus (positive control above).
        counted = await prometheus_query_count(http, prometheus)
        refused = await command(slack, driver, "U0CAROL", fired, f"graph {QUERY} 15x")
        assert refused.response_type == "ephemeral" and "is not a duration" in refused.text
        assert len(recorder.queries()) == 2 and await prometheus_query_count(http, prometheus) == counted


async def test_times_in_slack_are_slack_dates_never_static_relative_text(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str, tmp_path: Path
) -> None:
    settings = bot_settings(
        slack, database_dsn, redis_url, playbooks_dir=playbooks_with_roles(tmp_path / "pb")
    )
    async with running_bot(settings) as bot:
        driver = SlackDriver(slack, bot_url(bot) + "/slack/events", SIGNING_SECRET, http)
        home = notification_channel(slack).id
        await command(slack, driver, "U0CAROL", home, "open Search down sev=P2")
        channel = await new_incident_channel(slack, 0)
        row = await incident_row(database_dsn, channel)
        opened = int(row["created_at"].timestamp())
        note = await slack.wait_for(
            lambda s: next((t for t in texts(s, home) if "opened" in t and "Search down" in t), None)
        )
        assert f"opened <!date^{opened}^{{ago}}|" in note
        card = "\n".join(texts(slack, channel))
        assert f"<!date^{opened}^{{ago}}|" in card
        listing = await command(slack, driver, "U0CAROL", home, "list")
        assert f"opened <!date^{opened}^{{ago}}|" in listing.text
        timeline = await command(slack, driver, "U0CAROL", channel, "timeline")
        assert f"<!date^{opened}^" in timeline.text
        for text in [note, card, listing.text, timeline.text]:
            # No static "0s ago", "in 14m", "3m old".
            assert not re.search(r"\b\d+[smhd]( \d+[smh])? (ago|old)\b|\bin \d+[smhd]\b", text), text
            for fallback in re.findall(r"<!date\^\d+\^[^|]+\|([^>]+)>", text):
                assert fallback.endswith(" UTC")
