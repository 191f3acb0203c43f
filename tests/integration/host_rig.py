"""What the host-action tests (SSH and Docker transports) share: driving the bot through signed
Slack requests and reading what it posted about a run."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any, Protocol

from bot.app import BotServer, build
from bot.config.settings import Settings
from bot.core.incident import Incident
from bot.core.runs import ActionRun, AuditEvent
from sandbox.slack import SlackDriver, SlackSandbox


class Env(Protocol):
    """A test environment: the sandbox workspace, and a driver signing requests to a bot."""

    @property
    def slack(self) -> SlackSandbox: ...

    def driver(self, bot: BotServer) -> SlackDriver: ...


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[BotServer]:
    server = await build(settings)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def alert_body(labels: dict[str, str]) -> dict[str, Any]:
    return {
        "receiver": "incidentbot",
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": labels,
                "annotations": {"summary": f"{labels['alertname']} firing"},
                "startsAt": "2026-11-22T16:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "",
                "fingerprint": "e" * 16,
            }
        ],
        "groupLabels": {"alertname": labels["alertname"]},
        "commonLabels": labels,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{labels["alertname"]}"}}',
        "truncatedAlerts": 0,
    }


async def playbook_run(env: Env, bot: BotServer, incident: Incident, title: str) -> ActionRun:
    """The run the playbook proposed (by enrichment), with its message as Slack has it."""
    channel = incident.channel_id or ""

    def posted(s: SlackSandbox) -> str | None:
        for m in s.messages(channel):
            if title in json.dumps(m.blocks or []) and "approve_action" in json.dumps(m.blocks or []):
                return m.ts
        return None

    ts = await env.slack.wait_for(posted, timeout=20)
    runs = await bot.parts.remediation_store.for_incident(incident.id)
    run = next(r for r in runs if r.title == title)
    return replace(run, channel_id=channel, message_ts=ts)


async def wait_message(env: Env, run: ActionRun, *needles: str, timeout: float = 20) -> str:
    def shows(s: SlackSandbox) -> str | None:
        msg = s.channels[run.channel_id or ""].message(run.message_ts or "")
        text = json.dumps(msg.blocks, ensure_ascii=False) if msg is not None and msg.blocks else ""
        return text if all(n in text for n in needles) else None

    return await env.slack.wait_for(shows, timeout=timeout)


async def wait_thread(env: Env, run: ActionRun, needle: str, timeout: float = 20) -> str:
    def found(s: SlackSandbox) -> str | None:
        for m in s.thread(run.channel_id or "", run.message_ts or ""):
            if needle in m.text:
                return m.text
        return None

    return await env.slack.wait_for(found, timeout=timeout)


async def approve(env: Env, bot: BotServer, run: ActionRun, user: str) -> int:
    resp = await env.driver(bot).click(
        "approve_action", user_id=user, channel_id=run.channel_id, message_ts=run.message_ts
    )
    return resp.status


async def audit_events(bot: BotServer, run_id: int) -> list[AuditEvent]:
    return [e.event for e in await bot.parts.remediation_store.audit_entries(run_id=run_id)]


async def slash(env: Env, bot: BotServer, user: str, channel: str, text: str) -> str:
    """`/incident <text>` as Slack sends it; the reply the user sees."""
    seen = len(env.slack.responses)
    resp = await env.driver(bot).slash_command("/incident", text, user_id=user, channel_id=channel)
    assert resp.status == 200

    def reply(s: SlackSandbox) -> str | None:
        return next((r.text for r in s.responses[seen:] if r.user_id == user), None)

    return await env.slack.wait_for(reply)
