"""The optional investigator end to end: signed `/incident investigate` and `/incident summary`
requests against a running bot with real PostgreSQL and Redis, the sandbox Slack and Kubernetes,
and a fake OpenAI-compatible model (sandbox.llm) that plays scripted tool-call conversations and
records every request body it received.

Checked: which tools ran; every shown finding cites a tool output (an uncited one is dropped);
no mutating tool is ever offered; seeded secrets never reach the model; budgets stop a loop that
never ends; a tool-less or unreachable endpoint degrades cleanly; a suggested action becomes an
ordinary proposal with the policy's approvals; an unauthorised investigate changes nothing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from bot.app import BotServer
from bot.clients.llm import Capability, ChatClient
from bot.core.actions import ActionName
from bot.core.investigation import Redactor
from bot.core.runs import RunStatus
from bot.flows.investigate.loop import Budgets, Conversation
from bot.flows.investigate.tools import READ_ONLY_TOOLS
from sandbox.kubernetes import KubeSandbox
from sandbox.llm import FakeLLM, answer, call
from sandbox.services import PrometheusServer
from sandbox.slack import ResponsePost, SlackDriver, SlackSandbox
from tests.integration.rig import (
    SIGNING_SECRET,
    bot_settings,
    bot_url,
    incident_channel,
    playbooks_with_roles,
    post_alert,
    quiet,
)
from tests.integration.rig import running_bot as running_bot_unprobed

pytestmark = pytest.mark.timeout(90)

NAMESPACE, DEPLOYMENT = "birthday-scheduler", "birthday-scheduler-api"
ALERT = {
    "alertname": "BirthdaySchedulerDbPoolExhausted",
    "namespace": NAMESPACE,
    "deployment": DEPLOYMENT,
    "severity": "critical",
}
# Seeded into the pod's log: none of them may reach the model.
SECRETS = ("hunter2-db-password", "AKIAIOSFODNN7EXAMPLE", "xoxb-999-seeded-slack-token", "dba@example.com")
MALLORY = "U0MALLORY"


@dataclass
class Env:
    slack: SlackSandbox
    kube: KubeSandbox
    llm: FakeLLM
    http: aiohttp.ClientSession
    dsn: str
    redis_url: str
    tmp: Path
    kubeconfig: Path

    def settings(self, **overrides: Any) -> Any:
        values: dict[str, Any] = {
            "kubeconfig": str(self.kubeconfig),
            "playbooks_dir": playbooks_with_roles(self.tmp / f"playbooks-{len(list(self.tmp.iterdir()))}"),
            "llm_base_url": self.llm.base_url,
            "llm_model": "fake-model",
            "llm_api_key": "llm-api-key-0123456789",
        }
        values.update(overrides)
        return bot_settings(self.slack, self.dsn, self.redis_url, **values)

    def driver(self, bot: BotServer) -> SlackDriver:
        return SlackDriver(self.slack, bot_url(bot) + "/slack/events", SIGNING_SECRET, self.http)


@asynccontextmanager
async def running_bot(settings: Any) -> AsyncIterator[BotServer]:
    """A running bot whose endpoint probe (made in the background) has answered."""
    async with running_bot_unprobed(settings) as bot:
        investigator = bot.parts.flows.investigator
        if investigator is not None and not investigator.status.disabled:
            await investigator.wait_for_status(lambda s: s.capability is not Capability.PROBING)
        yield bot


@pytest.fixture
async def kube() -> AsyncIterator[KubeSandbox]:
    sb = KubeSandbox(rollout_delay=0.05)
    sb.seed_demo()
    await sb.start()
    try:
        yield sb
    finally:
        await sb.stop()


@pytest.fixture
async def llm() -> AsyncIterator[FakeLLM]:
    fake = FakeLLM(api_key="llm-api-key-0123456789")
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture
def env(
    slack: SlackSandbox,
    kube: KubeSandbox,
    llm: FakeLLM,
    http: aiohttp.ClientSession,
    database_dsn: str,
    redis_url: str,
    tmp_path: Path,
) -> Env:
    slack.add_user(MALLORY, "mallory", "Mallory Moe")
    return Env(
        slack, kube, llm, http, database_dsn, redis_url, tmp_path, kube.write_kubeconfig(tmp_path / "kc")
    )


async def rows(dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        found: list[asyncpg.Record] = await conn.fetch(sql, *args)
        return found
    finally:
        await conn.close()


def alert_body() -> dict[str, Any]:
    return {
        "receiver": "incidentbot",
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": ALERT,
                "annotations": {"summary": "DB pool exhausted"},
                "startsAt": "2026-11-22T16:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
                "fingerprint": "a" * 16,
            }
        ],
        "groupLabels": {"alertname": ALERT["alertname"]},
        "commonLabels": ALERT,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{ALERT["alertname"]}"}}',
        "truncatedAlerts": 0,
    }


async def open_incident(env: Env, bot: BotServer) -> str:
    status, _ = await post_alert(env.http, bot, alert_body())
    assert status == 200
    return (await incident_channel(env.slack)).id


async def types(env: Env, bot: BotServer, user: str, channel: str, text: str, expect: str) -> ResponsePost:
    seen = len(env.slack.responses)
    resp = await env.driver(bot).slash_command("/incident", text, user_id=user, channel_id=channel)
    assert resp.status == 200

    def found(s: SlackSandbox) -> ResponsePost | None:
        return next((r for r in s.responses[seen:] if expect in r.text), None)

    return await env.slack.wait_for(found)


def seed_log(env: Env) -> str:
    pod = env.kube.deployment_pods(NAMESPACE, DEPLOYMENT)[0]["metadata"]["name"]
    env.kube.set_logs(
        NAMESPACE,
        pod,
        [
            "ERROR pool: timeout acquiring connection (max=20, in use=20)",
            f"connecting to postgres://app:{SECRETS[0]}@db:5432/birthdays",
            f"aws key={SECRETS[1]} slack SLACK_BOT_TOKEN={SECRETS[2]} notify {SECRETS[3]}",
        ],
    )
    return str(pod)


def result_text(env: Env, channel: str) -> str | None:
    for m in env.slack.messages(channel):
        if m.text.startswith("Investigation of"):
            return json.dumps(m.blocks)
    return None


GOOD_ANSWER = {
    "summary": "Connection pool exhausted since the 2.4.0 rollout.",
    "findings": [
        {"claim": "The pool is exhausted (20 of 20 in use).", "citations": ["c3"], "confidence": 0.9},
        {"claim": "Revision 2 (2.4.0) rolled out before the errors.", "citations": ["c2"], "confidence": 0.8},
        {"claim": "A cosmic ray did it.", "citations": [], "confidence": 0.99},
    ],
    "actions": [
        {
            "action": "rollout_undo",
            "params": {"namespace": NAMESPACE, "deployment": DEPLOYMENT},
            "why": "errors started with revision 2",
            "citations": ["c2", "c3"],
        }
    ],
    "not_enough_evidence": False,
}


async def test_investigation_cites_tools_redacts_secrets_and_proposes_normally(env: Env) -> None:
    async with running_bot(env.settings()) as bot:
        channel = await open_incident(env, bot)
        pod = seed_log(env)
        env.llm.play(
            [
                call(
                    ("incident_alerts", {}),
                    ("k8s_rollout_history", {"namespace": NAMESPACE, "deployment": DEPLOYMENT}),
                    ("k8s_logs_tail", {"namespace": NAMESPACE, "pod": pod, "lines": 50}),
                ),
                answer(GOOD_ANSWER),
            ]
        )
        await types(
            env, bot, "U0ALICE", channel, "investigate why is the scheduler failing?", "Investigating"
        )
        shown = await env.slack.wait_for(lambda s: result_text(env, channel), timeout=30)

        # Which tools ran, in order, audited; progress in a thread.
        investigation = (await rows(env.dsn, "SELECT * FROM investigations"))[0]
        calls = await rows(env.dsn, "SELECT call_id, tool, ok FROM investigation_tool_calls ORDER BY call_id")
        assert [(c["call_id"], c["tool"], c["ok"]) for c in calls] == [
            ("c1", "incident_alerts", True),
            ("c2", "k8s_rollout_history", True),
            ("c3", "k8s_logs_tail", True),
        ]
        assert investigation["status"] == "done" and investigation["prompt_tokens"] > 0
        thread = next(m for m in env.slack.messages(channel) if m.text.startswith("🔎 Investigating"))
        assert len(env.slack.thread(channel, thread.ts)) == 3

        # Every shown finding cites a tool output; the uncited one is not shown.
        assert (
            "20 of 20 in use" in shown
            and "`c3` k8s_logs_tail" in shown
            and "`c2` k8s_rollout_history" in shown
        )
        assert "cosmic ray" not in shown and "1 uncited or invalid item(s) dropped" in shown
        assert "Proposed: rollout_undo" in shown

        # No mutating tool offered, no secret sent, the key sent as a bearer only.
        offered = {t["function"]["name"] for r in env.llm.conversation_requests for t in r["tools"]}
        assert offered == {t.name for t in READ_ONLY_TOOLS}
        assert not offered & {a.value for a in ActionName}
        bodies = json.dumps(env.llm.requests)
        for secret in SECRETS:
            assert secret not in bodies
        assert "timeout acquiring connection" in bodies  # the evidence itself did go

        # The suggestion is an ordinary proposal: proposed, the policy's approvals, the asker as
        # requester (who may not approve it), nothing executed.
        runs = await bot.parts.remediation_store.for_incident(investigation["incident_id"])
        assert [(r.action, r.status, r.requested_by) for r in runs] == [
            (ActionName.ROLLOUT_UNDO, RunStatus.PROPOSED, "U0ALICE")
        ]
        rule = bot.parts.playbooks.policy.rule_for(
            ActionName.ROLLOUT_UNDO, "default", runs[0].cluster, NAMESPACE
        )
        assert runs[0].approvals_needed == rule.required_approvals >= 1
        assert "Suggested by the investigator" in runs[0].title
        writes = [r for r in env.kube.requests if r.method in {"POST", "PUT", "PATCH", "DELETE"}]
        assert all("All" in r.query.get("dryRun", []) for r in writes)

        # On the timeline.
        events = await rows(env.dsn, "SELECT text FROM timeline_events WHERE kind = 'investigation'")
        assert len(events) == 1 and "3 tool call(s)" in events[0]["text"]


async def test_unauthorised_investigate_is_refused_and_changes_nothing(env: Env) -> None:
    async with running_bot(env.settings()) as bot:
        channel = await open_incident(env, bot)
        await quiet(bot)
        env.llm.play([answer({"findings": [], "not_enough_evidence": True})])
        before_slack = len(env.slack.messages(channel))
        before_kube = len(env.kube.requests)
        refusal = await types(env, bot, MALLORY, channel, "investigate", "may")
        assert "oncall" in refusal.text and "Traceback" not in refusal.text
        assert env.llm.conversation_requests == []
        assert await rows(env.dsn, "SELECT id FROM investigations") == []
        assert len(env.slack.messages(channel)) == before_slack
        assert len(env.kube.requests) == before_kube

        # Positive control: someone with the graph role gets the investigation.
        await types(env, bot, "U0ALICE", channel, "investigate", "Investigating")
        shown = await env.slack.wait_for(lambda s: result_text(env, channel), timeout=30)
        assert "Not enough evidence" in shown
        assert len(env.llm.conversation_requests) == 1


async def test_a_loop_that_never_ends_is_stopped_by_its_budget(env: Env) -> None:
    env.llm.endless = ("incident_alerts", {})
    async with running_bot(env.settings(llm_max_tool_calls=4)) as bot:
        channel = await open_incident(env, bot)
        await types(env, bot, "U0ALICE", channel, "investigate", "Investigating")
        shown = await env.slack.wait_for(lambda s: result_text(env, channel), timeout=30)
        assert "ended without a result" in shown and "tool-call budget of 4" in shown
        status = await rows(env.dsn, "SELECT status, stop_reason FROM investigations")
        assert status[0]["status"] == "stopped"
        assert len(await rows(env.dsn, "SELECT * FROM investigation_tool_calls")) == 4
        assert await bot.parts.remediation_store.for_incident(1) == []


async def test_a_slow_model_is_stopped_by_the_time_budget(env: Env) -> None:
    async with running_bot(env.settings(llm_time_budget_seconds=1.0)) as bot:
        channel = await open_incident(env, bot)
        env.llm.delay_s = 3.0
        await types(env, bot, "U0ALICE", channel, "investigate", "Investigating")
        shown = await env.slack.wait_for(lambda s: result_text(env, channel), timeout=30)
        assert "time budget of 1s" in shown


async def test_tool_less_endpoint_degrades_to_summaries_posted_only_on_click(env: Env) -> None:
    env.llm.tools = False
    async with running_bot(env.settings()) as bot:
        async with env.http.get(bot_url(bot) + "/readyz") as resp:
            assert "summaries only" in (await resp.json())["detail"]["investigator"]
        channel = await open_incident(env, bot)
        help_reply = await types(env, bot, "U0ALICE", channel, "help", "investigator:")
        assert "summaries only" in help_reply.text
        refused = await types(env, bot, "U0ALICE", channel, "investigate", "No investigation")
        assert "summaries only" in refused.text
        assert env.llm.conversation_requests == []

        env.llm.default = "Checkout errors since 16:00; the team is rolling back."
        status_before = await rows(env.dsn, "SELECT id FROM timeline_events WHERE kind = 'status_update'")
        await types(env, bot, "U0ALICE", channel, "summary", "Draft stakeholder update")
        assert (
            await rows(env.dsn, "SELECT id FROM timeline_events WHERE kind = 'status_update'")
            == status_before
        )
        seen = len(env.slack.responses)
        await env.driver(bot).click("post_summary_draft", user_id="U0ALICE", channel_id=channel)

        def posted(s: SlackSandbox) -> ResponsePost | None:
            return next((r for r in s.responses[seen:] if "Status update" in r.text), None)

        await env.slack.wait_for(posted)
        updates = await rows(env.dsn, "SELECT text FROM timeline_events WHERE kind = 'status_update'")
        assert len(updates) == len(status_before) + 1 and "rolling back" in updates[-1]["text"]
        # A second click posts nothing more.
        seen = len(env.slack.responses)
        await env.driver(bot).click("post_summary_draft", user_id="U0ALICE", channel_id=channel)

        def again(s: SlackSandbox) -> ResponsePost | None:
            return next((r for r in s.responses[seen:] if "posted already" in r.text), None)

        await env.slack.wait_for(again)
        assert len(await rows(env.dsn, "SELECT id FROM timeline_events WHERE kind = 'status_update'")) == len(
            updates
        )


async def test_unreachable_or_unset_endpoint_leaves_the_bot_as_it_was(env: Env) -> None:
    async with running_bot(env.settings(llm_base_url="http://127.0.0.1:9/v1")) as bot:
        async with env.http.get(bot_url(bot) + "/readyz") as resp:
            body = await resp.json()
            assert resp.status == 200 and "did not answer" in body["detail"]["investigator"]
        channel = await open_incident(env, bot)
        refused = await types(env, bot, "U0ALICE", channel, "investigate", "No investigation")
        assert "did not answer" in refused.text
    async with (
        running_bot(env.settings(llm_base_url=None)) as bot,
        env.http.get(bot_url(bot) + "/readyz") as resp,
    ):
        assert await resp.json() == {"status": "ready"}  # nothing changes
    assert env.llm.requests == []


async def _queries_served(http: aiohttp.ClientSession, prometheus_url: str) -> float:
    """How many query API requests a real Prometheus has answered (from its own metrics)."""
    async with http.get(prometheus_url + "/metrics") as resp:
        text = await resp.text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("prometheus_http_requests_total{") and 'handler="/api/v1/query' in line
    )


async def test_tools_keep_to_the_cost_checks_and_the_policys_namespaces(env: Env, services_dir: Path) -> None:
    prometheus = await asyncio.to_thread(PrometheusServer.start, services_dir, [])
    try:
        async with running_bot(env.settings(prometheus_url=prometheus.url)) as bot:
            channel = await open_incident(env, bot)
            await quiet(bot)
            queries = await _queries_served(env.http, prometheus.url)
            kube_requests = len(env.kube.requests)
            env.llm.play(
                [
                    call(
                        ("promql_range", {"query": "rate(up[30d])", "minutes": 60}),
                        ("k8s_pods", {"namespace": "kube-system", "deployment": "coredns"}),
                        ("scale", {"namespace": NAMESPACE, "deployment": DEPLOYMENT, "replicas": 0}),
                    ),
                    call(
                        ("promql_instant", {"query": "up"}), ("promql_range", {"query": "up", "minutes": 30})
                    ),
                    answer(
                        {
                            "findings": [
                                {"claim": "refused", "citations": ["c1", "c2"], "confidence": 1},
                                {"claim": "Prometheus itself is up", "citations": ["c5"], "confidence": 0.9},
                            ]
                        }
                    ),
                ]
            )
            await types(env, bot, "U0ALICE", channel, "investigate", "Investigating")
            shown = await env.slack.wait_for(lambda s: result_text(env, channel), timeout=30)
            calls = await rows(
                env.dsn, "SELECT call_id, tool, ok, output FROM investigation_tool_calls ORDER BY at"
            )
            assert [(c["tool"], c["ok"]) for c in calls] == [
                ("promql_range", False),
                ("k8s_pods", False),
                ("scale", False),
                ("promql_instant", True),
                ("promql_range", True),
            ]
            assert "refused by the cost checks" in calls[0]["output"]
            assert "not one the policy allows" in calls[1]["output"]
            assert "there is no tool" in calls[2]["output"]
            # A finding citing only refused calls is not shown; the cited range query is graphed.
            assert "refused —" not in shown and "*1.* Prometheus itself is up" in shown
            await env.slack.wait_for(lambda s: any(f.completed for f in s.files.values()), timeout=20)
            await quiet(bot)
            # Only the allowed queries reached Prometheus (instant, range, the graph); nothing
            # reached Kubernetes.
            assert await _queries_served(env.http, prometheus.url) == queries + 3
            assert len(env.kube.requests) == kube_requests
    finally:
        await asyncio.to_thread(prometheus.stop)


async def test_automatic_investigation_on_open_runs_once_for_the_configured_severity(env: Env) -> None:
    env.llm.play([call(("incident_alerts", {})), answer(GOOD_ANSWER | {"actions": []})])
    async with running_bot(env.settings(llm_auto_investigate="*:P1")) as bot:
        channel = await open_incident(env, bot)
        await env.slack.wait_for(lambda s: result_text(env, channel), timeout=30)
        await quiet(bot)
        found = await rows(env.dsn, "SELECT requested_by, status FROM investigations")
        assert [(r["requested_by"], r["status"]) for r in found] == [(None, "abstained")]
        started = next(m for m in env.slack.messages(channel) if m.text.startswith("🔎 Investigating"))
        assert "the incident opening" in started.text
        # Further publishes (a status update) start no second one.
        await types(env, bot, "U0ALICE", channel, "status looking into it", "Status update")
        await quiet(bot)
        assert len(await rows(env.dsn, "SELECT id FROM investigations")) == 1
    # Not configured for this severity: nothing is sent to the model.
    env.llm.requests.clear()
    async with running_bot(env.settings(llm_auto_investigate="*:P3")) as bot:
        status, _ = await post_alert(env.http, bot, alert_body() | {"groupKey": "{}:other"})
        assert status == 200
        await quiet(bot)
        assert env.llm.conversation_requests == []


async def test_the_kill_switch_stops_investigations_on_every_replica(env: Env) -> None:
    async with running_bot(env.settings()) as bot:
        channel = await open_incident(env, bot)
        await quiet(bot)
        refusal = await types(env, bot, MALLORY, channel, "investigator stop", "may not stop")
        assert "`oncall`, `sre`" in refusal.text
        assert await rows(env.dsn, "SELECT * FROM investigator_switch") == []

        await types(
            env, bot, "U0ALICE", channel, "investigator stop model misbehaves", "stopped on every replica"
        )
        refused = await types(env, bot, "U0ALICE", channel, "investigate", "Investigations are stopped")
        assert "model misbehaves" in refused.text
        await types(env, bot, "U0ALICE", channel, "summary", "Investigations are stopped")
        assert env.llm.conversation_requests == []
        assert await rows(env.dsn, "SELECT id FROM investigations") == []

        await types(env, bot, "U0ALICE", channel, "investigator allow", "allowed on every replica")
        env.llm.play([answer({"findings": [], "not_enough_evidence": True})])
        await types(env, bot, "U0ALICE", channel, "investigate", "Investigating")
        await env.slack.wait_for(lambda s: result_text(env, channel), timeout=30)
        assert len(env.llm.conversation_requests) == 1


class Echo:
    """Tools that answer at once (for budgets of the loop itself)."""

    async def run(self, name: str, arguments: Mapping[str, Any]) -> str:
        return f"{name} answered"


async def test_the_token_budget_stops_a_loop_that_never_ends(llm: FakeLLM) -> None:
    llm.endless = ("incident_alerts", {})
    async with aiohttp.ClientSession() as session:
        client = ChatClient(llm.base_url, "fake-model", "llm-api-key-0123456789", session)
        budgets = Budgets(tokens=3000, tool_calls=1000)
        outcome = await Conversation(client, budgets, Redactor()).run(Echo(), "investigate")
    assert outcome.status == "stopped" and outcome.stop_reason == "token budget of 3000 used up"
    assert outcome.tokens >= 3000 and 1 < len(outcome.calls) < 1000


async def test_the_concurrency_limit_refuses_a_second_investigation(env: Env) -> None:
    env.llm.delay_s = 1.0
    env.llm.play([answer({"findings": [], "not_enough_evidence": True})] * 2)
    async with running_bot(env.settings(llm_max_concurrent=1)) as bot:
        channel = await open_incident(env, bot)
        await types(env, bot, "U0ALICE", channel, "investigate", "Investigating")
        await env.slack.wait_for(
            lambda s: next((m for m in s.messages(channel) if m.text.startswith("🔎 Investigating")), None)
        )
        await types(env, bot, "U0ALICE", channel, "investigate", "already running at the limit")
        await env.slack.wait_for(lambda s: result_text(env, channel), timeout=30)
        assert len(await rows(env.dsn, "SELECT id FROM investigations")) == 1
        async with env.http.get(bot_url(bot) + "/metrics") as resp:
            metrics = await resp.text()
        assert 'incidentbot_investigations_total{status="abstained"} 1.0' in metrics


async def test_similar_past_incidents_come_with_their_resolution(env: Env) -> None:
    async with running_bot(env.settings()) as bot:
        await open_incident(env, bot)
        await quiet(bot)
        first = (await rows(env.dsn, "SELECT id FROM incidents"))[0]["id"]
        await bot.parts.lifecycle.resolve(first, "U0ALICE", "rolled back to 2.3.1", bot.parts.flows.clock())
        status, _ = await post_alert(env.http, bot, alert_body())
        assert status == 200

        def second_channel(s: SlackSandbox) -> str | None:
            channels = [c for c in s.channels.values() if c.name.startswith("inc-")]
            return channels[1].id if len(channels) == 2 and s.messages(channels[1].id) else None

        channel = await env.slack.wait_for(second_channel, timeout=15)
        env.llm.play(
            [
                call(("similar_incidents", {})),
                answer(
                    {
                        "findings": [{"claim": "Seen before: #1", "citations": ["c1"], "confidence": 0.9}],
                        "not_enough_evidence": False,
                    }
                ),
            ]
        )
        await types(env, bot, "U0ALICE", channel, "investigate", "Investigating")
        shown = await env.slack.wait_for(lambda s: result_text(env, channel), timeout=30)
        output = (await rows(env.dsn, "SELECT output FROM investigation_tool_calls"))[0]["output"]
        assert f"#{first} P1" in output and "resolution=rolled back to 2.3.1" in output
        # Only indirect evidence: the confidence is capped.
        assert "capped: indirect evidence" in shown and "confidence 50%" in shown
