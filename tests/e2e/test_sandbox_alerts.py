"""`incidentbot sandbox` with metrics: an alert fires for real, Prometheus → Alertmanager → bot,
and the incident channel gets the playbook's graph and its evaluated check."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from sandbox.runner import DEMO_ALERTS, SANDBOX_SIGNING_SECRET, SandboxStack, sandbox_stack
from sandbox.slack import SlackDriver, SlackSandbox

WAIT = 60.0


@pytest.fixture
async def metered(tmp_path: Path, database_dsn: str, redis_url: str) -> AsyncIterator[SandboxStack]:
    async with sandbox_stack(
        tmp_path,
        web_port=None,
        env={"database_url": database_dsn, "redis_url": redis_url},
        overrides={"log_format": "console", "sweep_interval_seconds": 0.5},
        metrics=True,
    ) as started:
        yield started


def _incident_channels(slack: SlackSandbox) -> list[str]:
    return [c.id for c in slack.channels.values() if c.name.startswith("inc-")]


def _texts(slack: SlackSandbox, channel: str) -> str:
    return "\n".join(str(m.blocks) + m.text for m in slack.messages(channel))


async def test_a_demo_alert_fires_through_prometheus_with_graph_and_failed_check(
    metered: SandboxStack,
) -> None:
    slack = metered.slack
    assert metered.exporter is not None and metered.prometheus_url is not None
    await slack.wait_for(lambda s: True, timeout=1)  # the workspace is up
    assert _incident_channels(slack) == []  # healthy: nothing fires by itself

    index = next(i for i, (name, _labels, _summary) in enumerate(DEMO_ALERTS) if name == "APIDown")
    assert await metered.fire(index) == 200  # the exporter's fault; no webhook is sent by the sandbox

    await slack.wait_for(lambda s: len(_incident_channels(s)) == 1, timeout=WAIT)
    channel = _incident_channels(slack)[0]
    # the alert came from Alertmanager, so its generatorURL is the sandbox Prometheus
    await slack.wait_for(lambda s: "APIDown" in _texts(s, channel), timeout=WAIT)
    # the graph of up{job="skillquest-api"} is drawn from Prometheus and uploaded
    await slack.wait_for(lambda s: any(f.completed and f.data for f in s.files.values()), timeout=WAIT)
    # the playbook's check was evaluated against the real metrics: the API is down
    await slack.wait_for(lambda s: "every API target is up again" in _texts(s, channel), timeout=WAIT)
    await slack.wait_for(lambda s: "failed" in _texts(s, channel), timeout=WAIT)
    assert "Graphs are off" not in _texts(slack, channel)


async def test_the_demo_remediation_is_verified_by_the_recovery_in_the_metrics_then_silenced(
    metered: SandboxStack,
) -> None:
    """The runbook's restart, approved from Slack, cures the sandbox fault: the verification
    sees the check pass in the real Prometheus ("recovered"); `/incident silence` then creates a
    real silence in the sandbox Alertmanager."""
    slack = metered.slack
    index = next(i for i, (name, _labels, _summary) in enumerate(DEMO_ALERTS) if name == "APIDown")
    assert await metered.fire(index) == 200
    await slack.wait_for(lambda s: len(_incident_channels(s)) == 1, timeout=WAIT)
    channel = _incident_channels(slack)[0]
    await slack.wait_for(lambda s: "approve_action" in _texts(s, channel), timeout=WAIT)
    async with aiohttp.ClientSession() as http:
        driver = SlackDriver(slack, metered.bot_url + "/slack/events", SANDBOX_SIGNING_SECRET, http)
        await driver.click("approve_action", user_id="U0BOB", channel_id=channel)
        verdict = await slack.wait_for(
            lambda s: next((m.text for m in s.messages(channel) if "recovered" in m.text), None), timeout=WAIT
        )
        assert "not recovered" not in verdict, verdict
        assert metered.exporter is not None and "APIDown" not in metered.exporter.failing
        reply = await driver.slash_command("/incident", "silence 30m", user_id="U0ALICE", channel_id=channel)
        assert reply.status == 200
    assert metered.alertmanager_url is not None
    async with (
        aiohttp.ClientSession() as http,
        http.get(metered.alertmanager_url + "/api/v2/silences") as resp,
    ):
        silences = [s for s in await resp.json() if s["status"]["state"] == "active"]
    assert len(silences) == 1
    assert {"name": "alertname", "value": "APIDown", "isRegex": False, "isEqual": True} in silences[0][
        "matchers"
    ]
