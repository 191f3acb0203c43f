"""Recorded storms replayed through the real pipeline (bearer-authenticated Alertmanager posts,
the real bot, PostgreSQL, Redis, the sandbox Slack and Kubernetes): pairwise precision and
recall of "same incident" against the fixtures' labels, and the named cases exactly."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bot.app import BotServer
from bot.core.incident import Incident
from sandbox.kubernetes import KubeSandbox
from sandbox.slack import SlackSandbox
from tests.integration.replay import STORMS, Score, load, replay
from tests.integration.rig import bot_settings, playbooks_with_roles, running_bot

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
async def kube() -> AsyncIterator[KubeSandbox]:
    sandbox = KubeSandbox(rollout_delay=0.05)
    sandbox.seed_demo()
    await sandbox.start()
    try:
        yield sandbox
    finally:
        await sandbox.stop()


@pytest.fixture
async def bot(
    slack: SlackSandbox, kube: KubeSandbox, database_dsn: str, redis_url: str, tmp_path: Path
) -> AsyncIterator[BotServer]:
    settings = bot_settings(
        slack,
        database_dsn,
        redis_url,
        playbooks_dir=playbooks_with_roles(tmp_path / "playbooks"),
        kubeconfig=str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
    )
    async with running_bot(settings) as server:
        yield server


async def run(name: str, bot: BotServer, http: aiohttp.ClientSession, kube: KubeSandbox) -> Score:
    result = await replay(load(STORMS / f"{name}.json"), bot, http, kube)
    assert result.precision >= 0.95, result
    assert result.recall >= 0.9, result
    return result


async def test_database_outage_cascades_into_one_incident(
    bot: BotServer, http: aiohttp.ClientSession, kube: KubeSandbox
) -> None:
    result = await run("db_cascade", bot, http, kube)
    assert result.incidents == 3 and result.false_attachments == 0
    # The API's latency and errors joined the database's incident; the unrelated OnQuota alert
    # and the flapping queue alert (both of its firings) have incidents of their own.
    assert all(len(ids) == 1 for ids in result.placed.values())
    assert len({next(iter(ids)) for ids in result.placed.values()}) == 3
    decisions = await bot.parts.flows.correlation.decisions(
        await _incident(bot, next(iter(result.placed["db"])))
    )
    assert [rule for _, rule, _ in decisions] == ["none", "dependencies", "dependencies", "dependencies"]


async def test_node_failure_takes_its_pods_into_one_incident(
    bot: BotServer, http: aiohttp.ClientSession, kube: KubeSandbox
) -> None:
    result = await run("node_failure", bot, http, kube)
    assert result.incidents == 2 and result.false_attachments == 0
    decisions = await bot.parts.flows.correlation.decisions(
        await _incident(bot, next(iter(result.placed["node"])))
    )
    assert decisions[0][1] == "none"
    assert all(rule == "topology" for _, rule, _ in decisions[1:]) and len(decisions) == 6
    assert all("same node" in reason or "same " in reason for _, _, reason in decisions[1:])


async def test_resolved_incident_never_receives_and_resolved_only_opens_nothing(
    bot: BotServer, http: aiohttp.ClientSession, kube: KubeSandbox
) -> None:
    result = await run("resolved_then_new", bot, http, kube)
    assert result.unplaced == []  # the resolved-only payload opened nothing
    assert result.placed["redis-1"] != result.placed["redis-2"]
    assert result.incidents == 2


async def _incident(bot: BotServer, incident_id: int) -> Incident:
    found = await bot.parts.store.get_incident(incident_id)
    assert found is not None
    return found
