"""Logs: structured, with context on every line, and never a secret — checked on a full run."""

from __future__ import annotations

import io
import json
import logging

import aiohttp

from bot.obs.logs import JsonFormatter
from sandbox.pagerduty import DEFAULT_API_TOKEN, DEFAULT_WEBHOOK_SECRET, PagerDutySandbox
from sandbox.slack import SlackDriver, SlackSandbox
from tests.integration.rig import (
    AM_TOKEN,
    SIGNING_SECRET,
    bot_settings,
    bot_url,
    group_payload,
    incident_channel,
    post_alert,
    running_bot,
)


async def test_a_full_run_logs_context_and_no_secrets(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str
) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        async with PagerDutySandbox() as pd:
            settings = bot_settings(
                slack,
                database_dsn,
                redis_url,
                pagerduty_api_token=DEFAULT_API_TOKEN,
                pagerduty_api_url=pd.base_url,
                pagerduty_from_email="alice@example.com",
                pagerduty_webhook_secret=DEFAULT_WEBHOOK_SECRET,
                pagerduty_ca_bundle=str(pd.ca_path),
                log_format="json",
            )
            async with running_bot(settings) as bot:
                await post_alert(http, bot, group_payload("ops", [("o1", "firing")]))
                channel = await incident_channel(slack)
                driver = SlackDriver(slack, bot_url(bot) + "/slack/events", SIGNING_SECRET, http)
                await driver.slash_command(
                    "/incident", "status looking", user_id="U0BOB", channel_id=channel.id
                )
                await driver.slash_command("/incident", "bogus", user_id="U0BOB", channel_id=channel.id)
                incident = pd.create_incident("PD side")
                await pd.send_webhook(bot_url(bot) + "/webhooks/pagerduty", "incident.triggered", incident.id)
                await slack.wait_for(lambda s: len(s.channels_with_prefix("inc-")) == 2)
                await slack.wait_for(lambda s: sum("Unknown subcommand" in r.text for r in s.responses) == 1)
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
    text = stream.getvalue()
    assert text.count("\n") > 20
    for secret in (slack.bot_token, SIGNING_SECRET, AM_TOKEN, DEFAULT_API_TOKEN, DEFAULT_WEBHOOK_SECRET):
        assert secret not in text, "a secret reached the logs"
    ours = [json.loads(line) for line in text.splitlines() if '"logger": "incidentbot' in line]
    assert any(e["event"] == "incident.opened" and "incident_id" in e for e in ours)
    published = [e for e in ours if e["logger"] == "incidentbot.publish"]
    assert published and all("incident_id" in e for e in published)
    requests = [e for e in ours if e["event"] == "http.request"]
    assert requests and all("request_id" in e and "status" in e for e in requests)
