"""Host actions end to end: a SkillMeat alert proposes the restart of its systemd unit on the
host its labels select, approvals through signed Slack requests, exactly one restart over SSH
on a real OpenSSH server (tests/integration/sshd.py), the state before and after, the
verification in the thread; and the refusals (injection, policy, a changed host key, a
timeout) with nothing run on the host.

Real PostgreSQL, Redis and sshd; Slack is the sandbox server. Nothing of ours is mocked."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from bot.app import BotServer
from bot.config.settings import Settings
from bot.core.actions import ActionName, HostCommandParams
from bot.core.errors import UserError
from bot.core.incident import Incident
from bot.core.runs import ActionRun, AuditEvent, RunStatus
from bot.flows.remediation.propose import Request
from sandbox.services import PrometheusServer
from sandbox.slack import SlackDriver, SlackSandbox
from sandbox.ssh import Sshd, new_host_key
from tests.integration.host_rig import (
    alert_body,
    approve,
    audit_events,
    playbook_run,
    running,
    slash,
    wait_message,
    wait_thread,
)
from tests.integration.rig import SIGNING_SECRET, bot_settings, bot_url, playbooks_with_roles, post_alert

pytestmark = pytest.mark.timeout(120)

SKILLMEAT_ALERT = {"alertname": "HighErrorRate", "job": "skillmeat", "severity": "critical"}
RESTART = ["systemctl", "restart", "skillmeat-api"]


@dataclass
class Env:
    slack: SlackSandbox
    http: aiohttp.ClientSession
    dsn: str
    redis_url: str
    tmp: Path
    sshd: Sshd
    counter: int = 0

    def settings(
        self,
        *,
        host_key: str | None = None,
        kill_switch: bool = False,
        playbooks: list[dict[str, Any]] | None = None,
        **kw: Any,
    ) -> Settings:
        self.counter += 1
        directory = playbooks_with_roles(self.tmp / f"playbooks-{self.counter}")
        policy = yaml.safe_load((directory / "policy.yaml").read_text(encoding="utf-8"))
        # A command that outlives its template's time limit.
        policy["host_templates"]["slow"] = {
            "argv": ["sleep", "{seconds}"],
            "args": {"seconds": {"pattern": "[0-9]"}},
            "timeout_seconds": 1,
        }
        policy["approvals"]["host_command"]["host_templates_allow"].append("slow")
        policy["approvals"]["host_command"]["hosts"]["skillmeat"]["host_templates_allow"].append("slow")
        policy["kill_switch"] = kill_switch
        (directory / "policy.yaml").write_text(yaml.safe_dump(policy, sort_keys=False), encoding="utf-8")
        host = self.sshd.host_yaml("skillmeat", {"job": "skillmeat"})
        if host_key is not None:
            host["ssh"]["host_key"] = host_key
        # OnQuota's compose host is the same server, under another name and rule.
        onquota = {**host, "team": "onquota", "select": {"compose_project": "onquota"}}
        clusters = {"clusters": {}, "hosts": {"skillmeat": host, "onquota": onquota}}
        (directory / "clusters.yaml").write_text(yaml.safe_dump(clusters), encoding="utf-8")
        if playbooks:
            (directory / "test.yaml").write_text(yaml.safe_dump(playbooks, sort_keys=False), encoding="utf-8")
        return bot_settings(self.slack, self.dsn, self.redis_url, playbooks_dir=directory, **kw)

    def driver(self, bot: BotServer) -> SlackDriver:
        return SlackDriver(self.slack, bot_url(bot) + "/slack/events", SIGNING_SECRET, self.http)


@pytest.fixture
async def env(
    slack: SlackSandbox,
    http: aiohttp.ClientSession,
    database_dsn: str,
    redis_url: str,
    tmp_path: Path,
    sshd: Sshd,
) -> Env:
    slack.add_user("U0ERIN", "erin", "Erin Evans", "erin@example.com")  # holds no role
    return Env(slack, http, database_dsn, redis_url, tmp_path, sshd)


async def open_incident(env: Env, bot: BotServer, labels: dict[str, str] | None = None) -> Incident:
    status, _ = await post_alert(env.http, bot, alert_body(labels or SKILLMEAT_ALERT))
    assert status == 200
    channel = await env.slack.wait_for(lambda s: s.find_channel("inc-"))
    await env.slack.wait_for(lambda s: bool(s.messages(channel.id)))
    found = await bot.parts.store.incident_by_channel(channel.id)
    assert found is not None
    return found


async def propose(
    bot: BotServer,
    incident: Incident,
    template: str,
    args: dict[str, str] | None = None,
    *,
    by: str = "U0CAROL",
) -> ActionRun | None:
    params = HostCommandParams(host="skillmeat", template=template, args=args or {})
    return await bot.parts.flows.proposer.propose(
        incident, ActionName.HOST_COMMAND, params, Request(requested_by=by)
    )


def proposals(env: Env, incident: Incident) -> list[str]:
    """Messages of the incident's channel with an Approve button."""
    texts = [json.dumps(m.blocks or []) for m in env.slack.messages(incident.channel_id or "")]
    return [t for t in texts if "approve_action" in t]


# --------------------------------------------------------------------------- the happy path


async def test_skillmeat_alert_restarts_the_unit_once_over_ssh_and_verifies(env: Env) -> None:
    before = env.sshd.mark()
    async with running(env.settings()) as bot:
        incident = await open_incident(env, bot)
        run = await playbook_run(env, bot, incident, "Restart skillmeat-api (systemd)")
        text = await wait_message(
            env, run, "sudo -n systemctl restart skillmeat-api", "approve_action", "*Host*"
        )
        assert "ActiveState=active" in text and "MainPID=" in text  # the preview: before
        assert run.cluster == "skillmeat" and run.target == "host skillmeat (systemd_restart)"
        # Only the read-only preview ran so far.
        assert RESTART not in env.sshd.calls(before)
        # Someone without an approver role is refused; an on-call member approves.
        assert await approve(env, bot, run, "U0ERIN") == 200
        await env.slack.wait_for(
            lambda s: any(r.user_id == "U0ERIN" and "may not approve" in r.text for r in s.responses)
        )
        assert env.sshd.calls(before).count(RESTART) == 0
        assert await approve(env, bot, run, "U0BOB") == 200
        await wait_message(env, run, "Remediation succeeded")
        await wait_thread(env, run, "after: ActiveState=active")
        await wait_thread(env, run, "Verification of")
        calls = env.sshd.calls(before)
        assert calls.count(RESTART) == 1
        assert calls.count(["sudo", "-n", *RESTART]) == 1
        preview = ["systemctl", "show", "-p", "ActiveState,SubState,MainPID", "skillmeat-api"]
        assert calls.count(preview) == 2  # before and after
        events = await audit_events(bot, run.id)
        assert events.count(AuditEvent.CLAIMED) == 1 and events.count(AuditEvent.SUCCEEDED) == 1
        entries = await bot.parts.remediation_store.audit_entries(run_id=run.id)
        requested = next(e for e in entries if e.event is AuditEvent.REQUESTED)
        assert requested.details["argv"] == ["sudo", "-n", *RESTART]
        done = await bot.parts.remediation_store.get(run.id)
        assert done is not None and done.status is RunStatus.SUCCEEDED and done.verification


async def test_two_replicas_and_double_clicks_restart_once(env: Env) -> None:
    before = env.sshd.mark()
    async with (
        running(env.settings(replica_name="bot-a")) as bot_a,
        running(env.settings(replica_name="bot-b")) as bot_b,
    ):
        incident = await open_incident(env, bot_a, {"alertname": "TestHostRemediation", "job": "skillmeat"})
        run = await propose(bot_a, incident, "systemd_restart", {"unit": "skillmeat-api"})
        assert run is not None
        run = await bot_a.parts.remediation_store.get(run.id)
        assert run is not None and run.message_ts is not None
        clicks = [approve(env, bot, run, "U0BOB") for bot in (bot_a, bot_b, bot_a, bot_b)]
        assert await asyncio.gather(*clicks) == [200] * 4
        await wait_message(env, run, "Remediation succeeded")
        assert env.sshd.calls(before).count(RESTART) == 1
        events = await audit_events(bot_a, run.id)
        assert events.count(AuditEvent.CLAIMED) == 1
        # The cooldown is per host and template: the same restart again is refused, another
        # template on the same host is not.
        with pytest.raises(UserError, match=r"host skillmeat \(systemd_restart\) was changed by run"):
            await propose(bot_b, incident, "systemd_restart", {"unit": "skillmeat-api"})
        assert await propose(bot_b, incident, "skillmeat_cache_clear") is not None


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("server", ["x; rm -rf /", "$(reboot)", "`id`", "a b", "../etc", "mcp-1\n"])
async def test_injection_is_refused_before_anything_runs(env: Env, server: str) -> None:
    async with running(env.settings()) as bot:
        incident = await open_incident(env, bot, {"alertname": "TestHostRemediation", "job": "skillmeat"})
        before = env.sshd.mark()
        with pytest.raises(UserError, match="does not match"):
            await propose(bot, incident, "skillmeat_mcp_restart", {"server": server})
        assert env.sshd.calls(before) == []  # not even the preview ran
        assert await bot.parts.remediation_store.for_incident(incident.id) == []
        assert not proposals(env, incident)
        # Positive control: a plain server name is proposed, and its preview ran.
        run = await propose(bot, incident, "skillmeat_mcp_restart", {"server": "mcp-1"})
        assert run is not None
        assert env.sshd.calls(before) == [["skillmeat", "mcp", "health", "mcp-1"]]


async def test_the_policy_refuses_other_hosts_and_templates(env: Env) -> None:
    async with running(env.settings()) as bot:
        incident = await open_incident(env, bot, {"alertname": "TestHostRemediation", "job": "skillmeat"})
        before = env.sshd.mark()
        with pytest.raises(UserError, match="not allow-listed"):
            await propose(bot, incident, "rm_everything")
        # OnQuota's template exists, but the rule does not allow it on SkillMeat's host.
        with pytest.raises(UserError, match="host template `onquota_compose_restart` is not allowed"):
            await propose(bot, incident, "onquota_compose_restart", {"service": "backend"})
        with pytest.raises(UserError, match="may not request"):
            await propose(bot, incident, "skillmeat_cache_clear", by="U0ERIN")
        params = HostCommandParams(host="elsewhere", template="skillmeat_cache_clear")
        with pytest.raises(UserError, match=r"not a host of clusters\.yaml"):
            await bot.parts.flows.proposer.propose(
                incident, ActionName.HOST_COMMAND, params, Request(requested_by="U0CAROL")
            )
        assert env.sshd.calls(before) == []
        assert await bot.parts.remediation_store.for_incident(incident.id) == []
        assert not proposals(env, incident)
        # Positive control: an allowed template from an on-call member is proposed.
        assert await propose(bot, incident, "skillmeat_cache_clear") is not None


async def test_a_changed_host_key_is_refused_and_nothing_runs(env: Env) -> None:
    other = new_host_key(env.tmp, "impostor")
    before = env.sshd.mark()
    async with running(env.settings(host_key=other)) as bot:
        incident = await open_incident(env, bot, {"alertname": "TestHostRemediation", "job": "skillmeat"})
        run = await propose(bot, incident, "systemd_restart", {"unit": "skillmeat-api"})
        assert run is not None
        stored = await bot.parts.remediation_store.get(run.id)
        assert stored is not None
        # The proposal says why, and offers nothing to approve.
        text = await wait_message(env, stored, "not the one pinned in clusters.yaml")
        assert "approve_action" not in text
        assert env.sshd.calls(before) == []


async def test_a_host_key_changed_after_the_proposal_is_refused_at_execution(env: Env) -> None:
    other = new_host_key(env.tmp, "rebuilt")
    async with (
        running(env.settings(replica_name="bot-a")) as bot_a,
        running(env.settings(replica_name="bot-b", host_key=other)) as bot_b,
    ):
        incident = await open_incident(env, bot_a, {"alertname": "TestHostRemediation", "job": "skillmeat"})
        run = await propose(bot_a, incident, "systemd_restart", {"unit": "skillmeat-api"})
        assert run is not None
        stored = await bot_a.parts.remediation_store.get(run.id)
        assert stored is not None and stored.message_ts is not None
        after_preview = env.sshd.mark()
        assert await approve(env, bot_b, stored, "U0BOB") == 200
        await wait_message(env, stored, "Remediation failed")
        await wait_thread(env, stored, "not the one pinned in clusters.yaml; nothing was run")
        assert env.sshd.calls(after_preview) == []
        events = await audit_events(bot_a, run.id)
        assert events.count(AuditEvent.FAILED) == 1 and AuditEvent.SUCCEEDED not in events


async def test_a_command_past_its_time_limit_fails_plainly(env: Env) -> None:
    async with running(env.settings()) as bot:
        incident = await open_incident(env, bot, {"alertname": "TestHostRemediation", "job": "skillmeat"})
        run = await propose(bot, incident, "slow", {"seconds": "4"})
        assert run is not None
        stored = await bot.parts.remediation_store.get(run.id)
        assert stored is not None
        assert await approve(env, bot, stored, "U0BOB") == 200
        await wait_message(env, stored, "Remediation failed")
        await wait_thread(env, stored, "timed out")


# --------------------------------------------------------------------------- through /incident run


async def test_onquota_backend_restart_needs_two_approvals_and_runs_once(env: Env) -> None:
    restart = ["docker", "compose", "-p", "onquota", "restart", "backend"]
    before = env.sshd.mark()
    async with running(env.settings()) as bot:
        incident = await open_incident(
            env, bot, {"alertname": "TestHostRemediation", "compose_project": "onquota"}
        )
        channel = incident.channel_id or ""
        text = "run host_command onquota template=onquota_compose_restart service=backend"
        assert "2 approval(s) needed" in await slash(env, bot, "U0CAROL", channel, text)
        [run] = await bot.parts.remediation_store.for_incident(incident.id)
        run = await bot.parts.remediation_store.get(run.id) or run
        await wait_message(env, run, "sudo -n docker compose -p onquota restart backend", "approve_action")
        assert await approve(env, bot, run, "U0BOB") == 200
        await wait_message(env, run, "1 of 2")
        assert restart not in env.sshd.calls(before)  # one approval is not enough
        assert await approve(env, bot, run, "U0ALICE") == 200
        await wait_message(env, run, "Remediation succeeded")
        await wait_thread(env, run, "Verification of")
        calls = env.sshd.calls(before)
        assert calls.count(restart) == 1
        assert calls.count(["docker", "compose", "-p", "onquota", "ps", "--format", "json", "backend"]) == 2


async def test_injection_through_the_slash_command_is_refused(env: Env) -> None:
    before = env.sshd.mark()
    async with running(env.settings()) as bot:
        incident = await open_incident(env, bot, {"alertname": "TestHostRemediation", "job": "skillmeat"})
        channel = incident.channel_id or ""
        for hostile in ("server=$(reboot)", "server=a;reboot", "server=`id`"):
            reply = await slash(
                env,
                bot,
                "U0CAROL",
                channel,
                f"run host_command skillmeat template=skillmeat_mcp_restart {hostile}",
            )
            assert "does not match" in reply
        reply = await slash(
            env, bot, "U0CAROL", channel, "run host_command skillmeat/x template=skillmeat_cache_clear"
        )
        assert "takes a host name" in reply
        assert env.sshd.calls(before) == []
        assert await bot.parts.remediation_store.for_incident(incident.id) == []
        # Positive control.
        reply = await slash(
            env,
            bot,
            "U0CAROL",
            channel,
            "run host_command skillmeat template=skillmeat_mcp_restart server=mcp-1",
        )
        assert "Proposed" in reply
        assert env.sshd.calls(before) == [["skillmeat", "mcp", "health", "mcp-1"]]


# --------------------------------------------------------------------------- undo


async def test_a_failed_scale_offers_the_undo_back_to_the_previous_count(env: Env) -> None:
    def scale(n: int) -> list[str]:
        return [
            "docker",
            "compose",
            "-p",
            "skillmeat",
            "up",
            "-d",
            "--no-recreate",
            "--scale",
            f"api={n}",
            "api",
        ]

    before = env.sshd.mark()
    async with running(env.settings()) as bot:
        incident = await open_incident(env, bot, {"alertname": "TestHostRemediation", "job": "skillmeat"})
        run = await propose(bot, incident, "skillmeat_compose_scale", {"count": "5"})
        assert run is not None and run.preview.current_replicas == 1  # ps listed one container
        run = await bot.parts.remediation_store.get(run.id) or run
        assert await approve(env, bot, run, "U0BOB") == 200
        await wait_message(env, run, "Remediation failed")
        await wait_thread(env, run, "not recovered")
        await wait_thread(env, run, "Proposed the undo below")
        [undo] = [
            r for r in await bot.parts.remediation_store.for_incident(incident.id) if r.undo_of == run.id
        ]
        assert undo.params == {
            "host": "skillmeat",
            "template": "skillmeat_compose_scale",
            "args": {"count": "1"},
        }
        undo = await bot.parts.remediation_store.get(undo.id) or undo
        await wait_message(env, undo, "Undo: ", "--scale api=1")
        assert await approve(env, bot, undo, "U0BOB") == 200
        await wait_message(env, undo, "Remediation succeeded")
        calls = env.sshd.calls(before)
        assert calls.count(scale(5)) == 1 and calls.count(scale(1)) == 1


async def test_the_kill_switch_stops_a_host_command_after_approval(env: Env) -> None:
    before = env.sshd.mark()
    async with running(env.settings(kill_switch=True)) as bot:
        incident = await open_incident(env, bot, {"alertname": "TestHostRemediation", "job": "skillmeat"})
        run = await propose(bot, incident, "systemd_restart", {"unit": "skillmeat-api"})
        assert run is not None
        run = await bot.parts.remediation_store.get(run.id) or run
        await wait_message(env, run, "kill switch is on")
        assert await approve(env, bot, run, "U0BOB") == 200
        await wait_thread(env, run, "Not executed")
        assert RESTART not in env.sshd.calls(before)


# Docker Engine API hosts: tests/integration/test_docker_host_actions.py.


# --------------------------------------------------------------------------- verified in Prometheus

# SkillMeat's bundled error-rate check over a 5-minute rate cannot turn within a test; this
# playbook checks a gauge the way the bundled one checks its rate.
VERIFIED_PLAYBOOK = {
    "name": "test-skillmeat-errors",
    "title": "Test: SkillMeat errors",
    "system": "skillmeat",
    "match": {"alertname": "TestSkillMeatErrors"},
    "steps": [
        {
            "title": "Verify resolution",
            "check": {
                "query": "skillmeat_test_5xx_rate",
                "op": "<=",
                "value": 0.1,
                "description": "5xx at or under 0.1/s",
            },
        }
    ],
    "remediations": [
        {
            "action": "host_command",
            "title": "Restart skillmeat-api (test)",
            "params": {"template": "systemd_restart", "args": {"unit": "skillmeat-api"}},
        }
    ],
}


@dataclass
class UnitExporter:
    """`skillmeat_test_5xx_rate`: 0.5 until skillmeat-api was restarted on the sshd host (its
    stand-in `systemctl` moves MainPID), then 0."""

    sshd: Sshd
    baseline: str = ""
    target: str = ""
    scraped: asyncio.Event = field(default_factory=asyncio.Event)

    def pid(self) -> str:
        state = self.sshd.root / "unit_pid"
        return state.read_text() if state.exists() else "100"

    async def metrics(self, _request: web.Request) -> web.Response:
        value = 0.5 if self.pid() == self.baseline else 0.0
        self.scraped.set()
        self.scraped = asyncio.Event()
        return web.Response(text=f"skillmeat_test_5xx_rate {value}\n", content_type="text/plain")

    async def next_scrape(self) -> None:
        await asyncio.wait_for(self.scraped.wait(), timeout=10)


@pytest.fixture
async def prometheus(sshd: Sshd, tmp_path: Path) -> AsyncIterator[tuple[str, UnitExporter]]:
    exporter = UnitExporter(sshd)
    exporter.baseline = exporter.pid()
    app = web.Application()
    app.router.add_get("/metrics", exporter.metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    exporter.target = f"127.0.0.1:{runner.addresses[0][1]}"
    server = await asyncio.to_thread(PrometheusServer.start, tmp_path / "prometheus", [exporter.target], "1s")
    try:
        yield server.url, exporter
    finally:
        await asyncio.to_thread(server.stop)
        await runner.cleanup()


async def test_the_restart_is_verified_by_the_playbook_checks_in_prometheus(
    env: Env, prometheus: tuple[str, UnitExporter]
) -> None:
    url, exporter = prometheus
    settings = env.settings(playbooks=[VERIFIED_PLAYBOOK], prometheus_url=url, remediation_verify_seconds=30)
    async with running(settings) as bot:
        source = bot.parts.prometheus.default
        assert source is not None
        for _ in range(30):  # until Prometheus has a sample (asked again after each scrape)
            if await source.query_instant("skillmeat_test_5xx_rate"):
                break
            await exporter.next_scrape()
        labels = {"alertname": "TestSkillMeatErrors", "job": "skillmeat"}
        incident = await open_incident(env, bot, labels)
        run = await playbook_run(env, bot, incident, "Restart skillmeat-api (test)")
        assert await approve(env, bot, run, "U0BOB") == 200
        note = await wait_thread(env, run, "Verification of", timeout=45)
        assert "recovered: " in note and "not recovered" not in note
        assert "5xx at or under 0.1/s" in note
