"""What the responder needs first comes first in the incident channel: the card, the runbook,
then the remediation proposals with their buttons; diagnostics after them, filtered (warnings
and errors first, at most a screenful, the full output in a thread reply); diagnostics with
nothing to say are not posted. Through the Alertmanager webhook, the sandbox Slack and the
sandbox Kubernetes cluster."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bot.render.diagnostics import MAX_SHOWN_DIAGNOSTIC_LINES
from bot.render.proposals import APPROVE_ACTION
from sandbox.kubernetes import KubeSandbox
from sandbox.slack import SlackSandbox
from sandbox.slack.models import Message
from tests.integration.rig import (
    bot_settings,
    group_payload,
    incident_channel,
    playbooks_with_roles,
    post_alert,
    quiet,
    running_bot,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def kube() -> AsyncIterator[KubeSandbox]:
    sandbox = KubeSandbox()
    sandbox.seed_demo()
    await sandbox.start()
    try:
        yield sandbox
    finally:
        await sandbox.stop()


def _text(m: Message) -> str:
    return json.dumps(m.blocks, ensure_ascii=False) + m.text


def _code_lines(m: Message) -> list[str]:
    """The lines inside the message's code blocks."""
    lines: list[str] = []
    for block in m.blocks or []:
        text = (block.get("text") or {}).get("text", "")
        for piece in text.split("```")[1::2]:
            lines += [line for line in piece.strip("\n").split("\n") if line.strip()]
    return lines


async def test_proposals_follow_the_runbook_and_diagnostics_are_filtered(
    slack: SlackSandbox,
    http: aiohttp.ClientSession,
    database_dsn: str,
    redis_url: str,
    kube: KubeSandbox,
    tmp_path: Path,
) -> None:
    settings = bot_settings(
        slack,
        database_dsn,
        redis_url,
        kubeconfig=str(kube.write_kubeconfig(tmp_path / "kc")),
        playbooks_dir=playbooks_with_roles(tmp_path / "pb"),
    )
    async with running_bot(settings) as bot:
        # Runbook: rollout history and a 200-line log tail, then a restart proposal.
        body = group_payload("skillquest", [("e1", "firing")], alertname="HighAPIErrorRate")
        await post_alert(http, bot, body)
        channel = (await incident_channel(slack)).id
        logs = await slack.wait_for(
            lambda s: next(
                (m for m in s.messages(channel) if "logs: skillquest/skillquest-api" in m.text), None
            ),
            timeout=30,
        )
        await quiet(bot)
        top = [m for m in slack.messages(channel) if not m.is_reply]
        texts = [_text(m) for m in top]
        runbook = next(i for i, t in enumerate(texts) if "SkillQuest API 5xx error rate above 1%" in t)
        proposal = next(i for i, t in enumerate(texts) if APPROVE_ACTION in t)
        history = next(i for i, t in enumerate(texts) if "rollout history: skillquest/skillquest-api" in t)
        graphs = next(i for i, t in enumerate(texts) if "Graphs are off" in t)
        assert runbook < proposal < graphs < history, texts
        assert top.index(logs) > proposal

        # The log tail: warnings and errors only (the canned log has 3 errors and 6 warnings
        # among 60 lines, mostly "request handled" 200s), within a screenful.
        shown = _code_lines(logs)
        assert 0 < len(shown) <= MAX_SHOWN_DIAGNOSTIC_LINES, shown
        assert all('"level": "error"' in line or '"level": "warn"' in line for line in shown), shown
        assert sum('"level": "error"' in line for line in shown) == 3
        assert sum('"level": "warn"' in line for line in shown) == 6
        assert "60 lines" in logs.text or "60 lines" in _text(logs)
        # The whole tail is one reply in the message's thread, not in the channel.
        replies = slack.thread(channel, logs.ts)
        assert len(replies) == 1, replies
        full = _code_lines(replies[0])
        assert len(full) == 60 and sum("request handled" in line for line in full) == 51

        # The SkillQuest latency playbook lists events without a target: nothing to say, so
        # nothing is posted; its pod list is posted.
        await post_alert(
            http, bot, group_payload("skillquest", [("l1", "firing")], alertname="HighAPILatency")
        )
        await slack.wait_for(
            lambda s: any("pods: skillquest/skillquest-api" in m.text for m in s.messages(channel)),
            timeout=30,
        )
        await quiet(bot)
        everything = [_text(m) for m in slack.messages(channel)]
        assert not [t for t in everything if "no target to list events for" in t]
        assert not [t for t in everything if "no recent events" in t]
    # Diagnostics only read; the proposal's preview is a dry run.
    writes = [r for r in kube.requests if r.method in ("PATCH", "PUT", "POST", "DELETE")]
    assert writes and all(r.param("dryRun") == "All" for r in writes), writes
