"""A Prometheus per cluster: graphs' runbook checks and the verification after a change read the
Prometheus of the cluster the alert came from, through the real edges, against two real
Prometheus servers (each scraping its own cluster's exporter), real PostgreSQL and Redis, the
sandbox Slack and two sandbox Kubernetes clusters.

`skillforge-dev` names its own Prometheus (search P95 0.30 s there); `skillforge-prod` names
none, so it reads `PROMETHEUS_URL` (0.36 s there). Read from the wrong one, dev's check would
fail and dev's scale would be judged "not recovered".
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from bot.app import BotServer
from bot.clients.prometheus import PrometheusMetrics
from bot.core.actions import ActionName
from bot.core.runs import ActionRun
from sandbox.kubernetes import KubeSandbox
from sandbox.kubernetes.app import write_kubeconfig
from sandbox.llm import FakeLLM, answer, call
from sandbox.services import PrometheusServer
from sandbox.slack import SlackSandbox
from tests.integration import test_investigator as investigator
from tests.integration.rig import bot_settings, running_bot
from tests.integration.test_clusters import alert_channel, channel_text
from tests.integration.test_remediation_policy import Env, click, store, wait_thread, write_playbooks

pytestmark = pytest.mark.timeout(150)

# The investigator's fake model.
llm = investigator.llm

LATENCY = {
    "alertname": "SkillForgeLatencyP95High",
    "service": "search-api",
    "namespace": "api",
    "severity": "critical",
}
SCALE_TITLE = "Scale search-api to 9 replicas"


@dataclass
class Exporter:
    """`search_latency_p95` at a fixed value."""

    value: float
    target: str = ""
    scraped: asyncio.Event = field(default_factory=asyncio.Event)

    async def metrics(self, _request: web.Request) -> web.Response:
        self.scraped.set()
        self.scraped = asyncio.Event()
        body = f'search_latency_p95{{service="search-api"}} {self.value}\n'
        return web.Response(text=body, content_type="text/plain")

    async def next_scrape(self) -> None:
        await asyncio.wait_for(self.scraped.wait(), timeout=10)


@dataclass
class Rig:
    env: Env
    dev: KubeSandbox
    prod: KubeSandbox
    dev_prometheus: str
    global_prometheus: str

    def settings(self, **kw: Any) -> Any:
        directory = write_playbooks(self.env.tmp / "playbooks", kill_switch=False)
        clusters = {
            "label": "cluster",
            "default": "skillforge-dev",
            "clusters": {
                "skillforge-dev": {"context": "skillforge-dev", "prometheus_url": self.dev_prometheus},
                "skillforge-prod": {"context": "skillforge-prod"},
            },
        }
        (directory / "clusters.yaml").write_text(yaml.safe_dump(clusters, sort_keys=False))
        return bot_settings(
            self.env.slack,
            self.env.dsn,
            self.env.redis_url,
            kubeconfig=str(self.env.kubeconfig),
            playbooks_dir=directory,
            prometheus_url=self.global_prometheus,
            **kw,
        )


async def _exporter(value: float, stack: list[web.AppRunner]) -> Exporter:
    exporter = Exporter(value)
    app = web.Application()
    app.router.add_get("/metrics", exporter.metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    stack.append(runner)
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    exporter.target = f"127.0.0.1:{runner.addresses[0][1]}"
    return exporter


async def _scraped(url: str, exporter: Exporter) -> None:
    """Until this Prometheus answers the exporter's value (asked again after each scrape)."""
    client = PrometheusMetrics(url, timeout=5)
    try:
        for _ in range(30):
            samples = await client.query_instant("search_latency_p95")
            if samples and samples[0].value == exporter.value:
                return
            await exporter.next_scrape()
        pytest.fail(f"{url} never answered {exporter.value}")
    finally:
        await asyncio.to_thread(client.close)


@pytest.fixture
async def rig(
    slack: SlackSandbox, http: aiohttp.ClientSession, database_dsn: str, redis_url: str, tmp_path: Path
) -> AsyncIterator[Rig]:
    slack.add_user("U0DAVE", "dave", "Dave Davis", "dave@example.com")
    runners: list[web.AppRunner] = []
    servers: list[PrometheusServer] = []
    dev, prod = KubeSandbox(rollout_delay=0.05), KubeSandbox(rollout_delay=0.05)
    try:
        for kube in (dev, prod):
            kube.seed_demo()
            await kube.start()
        dev_exporter, prod_exporter = await _exporter(0.30, runners), await _exporter(0.36, runners)
        for name, exporter in (("dev", dev_exporter), ("global", prod_exporter)):
            base = tmp_path / f"prometheus-{name}"
            servers.append(await asyncio.to_thread(PrometheusServer.start, base, [exporter.target], "1s"))
        await _scraped(servers[0].url, dev_exporter)
        await _scraped(servers[1].url, prod_exporter)
        kubeconfig = write_kubeconfig(
            tmp_path / "kubeconfig", {"skillforge-dev": dev, "skillforge-prod": prod}
        )
        env = Env(slack, prod, http, database_dsn, redis_url, tmp_path, kubeconfig)
        yield Rig(env, dev, prod, servers[0].url, servers[1].url)
    finally:
        for server in servers:
            await asyncio.to_thread(server.stop)
        for runner in runners:
            await runner.cleanup()
        await dev.stop()
        await prod.stop()


async def _scale_proposal(rig: Rig, bot: BotServer, channel_id: str) -> ActionRun:
    def posted(s: SlackSandbox) -> str | None:
        for m in s.messages(channel_id):
            if SCALE_TITLE in str(m.blocks) and "approve_action" in str(m.blocks):
                return m.ts
        return None

    ts = await rig.env.slack.wait_for(posted)
    incident = await bot.parts.store.incident_by_channel(channel_id)
    assert incident is not None
    [run] = [r for r in await store(bot).for_incident(incident.id) if r.action is ActionName.SCALE]
    return replace(run, message_ts=ts, channel_id=channel_id)


async def _runbook_check(slack: SlackSandbox, channel_id: str) -> str:
    """The channel's text once the runbook's step check has been evaluated."""

    def evaluated(s: SlackSandbox) -> str | None:
        text = channel_text(s, channel_id)
        return text if "search P95 under 340 ms (seconds) — `" in text else None

    return await slack.wait_for(evaluated)


async def test_each_cluster_is_read_from_its_own_prometheus(rig: Rig) -> None:
    async with running_bot(rig.settings(remediation_verify_seconds=20)) as bot:
        dev = await alert_channel(rig.env, bot, {**LATENCY, "cluster": "skillforge-dev"}, "dev")
        prod = await alert_channel(rig.env, bot, {**LATENCY, "cluster": "skillforge-prod"}, "prod")
        dev_text = await _runbook_check(rig.env.slack, dev)
        prod_text = await _runbook_check(rig.env.slack, prod)
        # dev's own Prometheus (0.30 passes); prod, with none of its own, PROMETHEUS_URL's.
        assert "Check passed:* search P95 under 340 ms (seconds) — `0.3 &lt; 0.34`" in dev_text, dev_text
        assert "0.36 is not &lt; 0.34" in prod_text and "Check passed" not in prod_text, prod_text

        # The change on dev is verified by dev's Prometheus: recovered.
        run = await _scale_proposal(rig, bot, dev)
        assert run.cluster == "skillforge-dev"
        assert "all approvals are in" in await click(rig.env, bot, "approve_action", run, "U0BOB")
        note = await wait_thread(rig.env, run, "Verification", timeout=45)
        assert "recovered: " in note and "not recovered" not in note, note
        assert "0.3" in note and "0.36" not in note, note


async def test_the_investigators_promql_reads_the_incidents_cluster_or_the_one_named(
    rig: Rig, llm: FakeLLM
) -> None:
    settings = rig.settings(
        llm_base_url=llm.base_url, llm_model="fake-model", llm_api_key="llm-api-key-0123456789"
    )
    async with investigator.running_bot(settings) as bot:
        prod = await alert_channel(rig.env, bot, {**LATENCY, "cluster": "skillforge-prod"}, "prod")
        query = "search_latency_p95"
        llm.play(
            [
                call(
                    ("promql_instant", {"query": query}),
                    ("promql_instant", {"query": query, "cluster": "skillforge-dev"}),
                    ("promql_instant", {"query": query, "cluster": "skillforge-staging"}),
                ),
                answer({"findings": [{"claim": "prod is slow", "citations": ["c1"], "confidence": 0.9}]}),
            ]
        )
        resp = await rig.env.driver(bot).slash_command(
            "/incident", "investigate", user_id="U0ALICE", channel_id=prod
        )
        assert resp.status == 200
        await rig.env.slack.wait_for(
            lambda s: any(m.text.startswith("Investigation of") for m in s.messages(prod)) or None, timeout=30
        )
        calls = await investigator.rows(
            rig.env.dsn, "SELECT ok, output FROM investigation_tool_calls ORDER BY at"
        )
        assert [c["ok"] for c in calls] == [True, True, False]
        assert calls[0]["output"].endswith(" 0.36") and calls[1]["output"].endswith(" 0.3"), calls
        assert "`skillforge-staging` is not a configured cluster" in calls[2]["output"]
