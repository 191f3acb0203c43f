"""`incidentbot sandbox` shows an investigation end to end on its scripted fake model: a demo
alert opens an incident, `/incident investigate` (a signed request) runs the read-only tools,
the thread lists them and the result cites them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sandbox.runner import SANDBOX_SIGNING_SECRET, SandboxStack, sandbox_stack
from sandbox.slack import SlackDriver, SlackSandbox

WAIT = 30.0


@pytest.fixture
async def sandbox(tmp_path: Path, database_dsn: str, redis_url: str) -> AsyncIterator[SandboxStack]:
    async with sandbox_stack(
        tmp_path,
        web_port=None,
        env={"database_url": database_dsn, "redis_url": redis_url},
        overrides={"log_format": "console", "sweep_interval_seconds": 0.5},
    ) as started:
        yield started


def _result(slack: SlackSandbox, channel: str) -> str | None:
    found = [m for m in slack.messages(channel) if m.text.startswith("Investigation of")]
    return json.dumps(found[0].blocks) if found else None


async def test_the_sandbox_demo_investigates_with_the_fake_model(sandbox: SandboxStack) -> None:
    slack = sandbox.slack
    assert await sandbox.fire(0) == 200
    channel = await slack.wait_for(
        lambda s: next(
            (c.id for c in s.channels.values() if c.name.startswith("inc-") and s.messages(c.id)), None
        ),
        timeout=WAIT,
    )
    driver = SlackDriver(slack, sandbox.bot_url + "/slack/events", SANDBOX_SIGNING_SECRET, sandbox.session)
    resp = await driver.slash_command("/incident", "investigate", user_id="U0ALICE", channel_id=channel)
    assert resp.status == 200
    shown = await slack.wait_for(lambda s: _result(s, channel), timeout=WAIT)
    assert "`c1` incident_alerts" in shown and "`c2` playbook" in shown
    started = next(m for m in slack.messages(channel) if m.text.startswith("🔎 Investigating"))
    assert len(slack.thread(channel, started.ts)) == 3
