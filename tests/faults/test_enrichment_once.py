"""Enrichment (runbook, graphs) exactly once: a playbook post whose holder stopped half way is
taken up again within seconds of its short lease lapsing, and repeats none of the messages
already posted. Slack is the sandbox behind the fault proxy (tests/faults/proxy.py)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import aiohttp
import asyncpg

from sandbox.slack import SlackSandbox
from tests.faults.proxy import Fault, FaultProxy
from tests.integration.rig import (
    bot_settings,
    group_payload,
    incident_channel,
    playbooks_with_roles,
    post_alert,
    running_bot,
)

LEASE_S = 1.5
SWEEP_S = 0.5
# No playbook is written for this alert name: the generic one is posted (the runbook, then a
# note that no Prometheus is configured to graph the alert's expression).
ALERT = "ZzNoPlaybookForThis"


def own_keys(slack: SlackSandbox, channel_id: str) -> Counter[str]:
    """How many messages of each key the bot posted in the channel (its message metadata)."""
    keys: Counter[str] = Counter()
    for m in slack.messages(channel_id):
        payload = (m.metadata or {}).get("event_payload") or {}
        if isinstance(payload.get("key"), str):
            keys[payload["key"]] += 1
    return keys


async def _playbook_row(dsn: str) -> asyncpg.Record | None:
    conn = await asyncpg.connect(dsn)
    try:
        row: asyncpg.Record | None = await conn.fetchrow(
            "SELECT claim, posted_at FROM incident_playbooks WHERE posted_at IS NOT NULL"
        )
        return row
    finally:
        await conn.close()


async def test_a_playbook_post_stopped_half_way_is_resumed_after_the_lease_without_repeating(
    slack: SlackSandbox,
    faulty_slack: FaultProxy,
    http: aiohttp.ClientSession,
    database_dsn: str,
    redis_url: str,
) -> None:
    # The runbook is posted; the post after it (the graphs note) is refused: its holder stops
    # there, leaving the claim to lapse.
    faulty_slack.fail_matching("chat.postMessage", ':graphs"', Fault.REFUSE)
    settings = bot_settings(
        slack,
        database_dsn,
        redis_url,
        slack_api_url=faulty_slack.api_url,
        claim_lease_seconds=LEASE_S,
        sweep_interval_seconds=SWEEP_S,
    )
    async with running_bot(settings) as bot:
        status, _ = await post_alert(http, bot, group_payload("pay", [("p1", "firing")], alertname=ALERT))
        assert status == 200
        channel = await incident_channel(slack)
        refused = await faulty_slack.wait_for_calls("chat.postMessage", 1)
        await slack.wait_for(lambda s: any(k.endswith(":0") for k in own_keys(s, channel.id)) or None)
        stopped = time.monotonic()
        await slack.wait_for(
            lambda s: any(k.endswith(":graphs") for k in own_keys(s, channel.id)) or None, timeout=10
        )
        took = time.monotonic() - stopped
        async with asyncio.timeout(5):
            while (row := await _playbook_row(database_dsn)) is None:
                await asyncio.sleep(0.05)
        await bot.parts.supervisor.drain(5.0)
    assert any(c.fault is Fault.REFUSE for c in faulty_slack.calls("chat.postMessage")), refused
    keys = own_keys(slack, channel.id)
    playbook_keys = {k: n for k, n in keys.items() if k.startswith("playbook:")}
    # The runbook and the note, each once; the runbook was not posted again on resuming.
    assert sorted(k.rsplit(":", 1)[1] for k in playbook_keys) == ["0", "graphs"], keys
    assert set(playbook_keys.values()) == {1}, keys
    assert row["claim"] == 2  # the first holder's claim, then the one that resumed it
    assert took <= LEASE_S + 2 * SWEEP_S + 3.0, f"resumed {took:.1f} s after the holder stopped"
    conn = await asyncpg.connect(database_dsn)
    try:
        events = await conn.fetchval("SELECT count(*) FROM timeline_events WHERE kind = 'playbook_posted'")
    finally:
        await conn.close()
    assert events == 1


async def test_an_undisturbed_playbook_post_is_claimed_once(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str
) -> None:
    """Positive control: without a fault the runbook and the note are posted by one claim."""
    settings = bot_settings(
        slack, database_dsn, redis_url, claim_lease_seconds=LEASE_S, sweep_interval_seconds=SWEEP_S
    )
    async with running_bot(settings) as bot:
        await post_alert(http, bot, group_payload("pay", [("p1", "firing")], alertname=ALERT))
        channel = await incident_channel(slack)
        await slack.wait_for(lambda s: any(k.endswith(":graphs") for k in own_keys(s, channel.id)) or None)
        async with asyncio.timeout(5):
            while (row := await _playbook_row(database_dsn)) is None:
                await asyncio.sleep(0.05)
        await bot.parts.supervisor.drain(5.0)
    playbook_keys = {k: n for k, n in own_keys(slack, channel.id).items() if k.startswith("playbook:")}
    assert sorted(k.rsplit(":", 1)[1] for k in playbook_keys) == ["0", "graphs"]
    assert row["claim"] == 1


NOTE_PLAYBOOK = """
- name: zz-note-once
  title: "Note once"
  system: tests
  match:
    alertname: ZzNoteOnce
  steps:
    - title: Look at it
  graphs:
    - title: Errors
      query: up
  remediations:
    - action: rollout_restart
      title: Restart the deployment the alert names
      params:
        namespace: $namespace
        deployment: $deployment
"""


async def test_a_resumed_playbook_post_repeats_no_not_proposed_note(
    slack: SlackSandbox,
    faulty_slack: FaultProxy,
    http: aiohttp.ClientSession,
    database_dsn: str,
    redis_url: str,
    tmp_path: Path,
) -> None:
    """The proposals come before the graphs: a holder that stops at the graphs has said which
    remediation was not proposed (the alert names no deployment); resuming says it no more."""
    playbooks = playbooks_with_roles(tmp_path / "pb")
    (playbooks / "tests.yaml").write_text(NOTE_PLAYBOOK, encoding="utf-8")
    faulty_slack.fail_matching("chat.postMessage", ':graphs"', Fault.REFUSE)
    settings = bot_settings(
        slack,
        database_dsn,
        redis_url,
        slack_api_url=faulty_slack.api_url,
        claim_lease_seconds=LEASE_S,
        sweep_interval_seconds=SWEEP_S,
        playbooks_dir=playbooks,
    )
    async with running_bot(settings) as bot:
        await post_alert(http, bot, group_payload("pay", [("n1", "firing")], alertname="ZzNoteOnce"))
        channel = await incident_channel(slack)
        await slack.wait_for(
            lambda s: any(k.endswith(":graphs") for k in own_keys(s, channel.id)) or None, timeout=10
        )
        async with asyncio.timeout(5):
            while await _playbook_row(database_dsn) is None:
                await asyncio.sleep(0.05)
        await bot.parts.supervisor.drain(5.0)
    assert any(c.fault is Fault.REFUSE for c in faulty_slack.calls("chat.postMessage"))
    notes = [m for m in slack.messages(channel.id) if "not proposed" in m.text]
    assert len(notes) == 1, [m.text for m in notes]
