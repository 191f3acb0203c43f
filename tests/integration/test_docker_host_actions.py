"""Host actions on a `transport: docker` host end to end: an OnQuota alert proposes the backend
restart, two approvals through signed Slack requests, exactly one restart of each container of
the compose service through the Docker Engine API (the sandbox engine over a Unix socket, the
real aiodocker client), the state before and after, the verification in the thread; the backup
exec with its exit code; and the refusals (a template with no Engine API equivalent, an
unreachable engine, a container of another project) with nothing changed on the engine.

Real PostgreSQL and Redis; Slack and the Docker engine are the sandbox servers. Nothing of ours
is mocked."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from bot.app import BotServer, build
from bot.config.settings import Settings
from bot.core.errors import ConfigError
from bot.core.incident import Incident
from bot.core.runs import ActionRun, AuditEvent, RunStatus
from sandbox.docker import BACKUP_SCRIPT, VERIFY_SCRIPT, DockerSandbox, ExecScript, RecordedCall
from sandbox.services import PrometheusServer
from sandbox.slack import SlackDriver, SlackSandbox
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

ONQUOTA = {"alertname": "TestOnQuotaBackendDown", "compose_project": "onquota"}
# An OnQuota alert no playbook proposes anything for: the runs come from `/incident run`.
PLAIN = {"alertname": "TestHostRemediation", "compose_project": "onquota"}
LISTING = ["ls", "-1t", "/backups/postgres/"]
# An alert of OnQuota's proposes the runbook's restart (the bundled guides are on demand only).
BACKEND_PLAYBOOK = {
    "name": "test-onquota-backend-down",
    "title": "Test: OnQuota backend down",
    "system": "onquota",
    "match": {"alertname": "TestOnQuotaBackendDown"},
    "steps": [{"title": "Look", "text": "The backend does not answer."}],
    "remediations": [
        {
            "action": "host_command",
            "title": "Restart the OnQuota backend",
            "params": {
                "host": "onquota",
                "template": "onquota_compose_restart",
                "args": {"service": "backend"},
            },
        }
    ],
}


@dataclass
class Env:
    slack: SlackSandbox
    http: aiohttp.ClientSession
    dsn: str
    redis_url: str
    tmp: Path
    docker: DockerSandbox
    counter: int = 0

    def settings(
        self,
        *,
        url: str | None = None,
        tls: dict[str, str] | None = None,
        projects: list[str] | None = None,
        playbook: dict[str, Any] | None = None,
        **kw: Any,
    ) -> Settings:
        self.counter += 1
        directory = playbooks_with_roles(self.tmp / f"playbooks-{self.counter}")
        policy = yaml.safe_load((directory / "policy.yaml").read_text(encoding="utf-8"))
        # A bare container named by the template: the transport checks its compose project.
        policy["host_templates"]["restart_container"] = {
            "argv": ["docker", "restart", "{container}"],
            "args": {"container": {"pattern": "onquota_backend|skillmeat-api"}},
        }
        # An exec that outlives its template's time limit.
        policy["host_templates"]["slow_exec"] = {
            "argv": ["docker", "exec", "onquota_backup", "/scripts/slow.sh"],
            "timeout_seconds": 1,
        }
        rule = policy["approvals"]["host_command"]
        rule["host_templates_allow"] += ["restart_container", "slow_exec"]
        rule["hosts"]["onquota"]["host_templates_allow"] += ["restart_container", "slow_exec"]
        rule["hosts"]["skillmeat"]["host_templates_allow"].append("restart_container")
        (directory / "policy.yaml").write_text(yaml.safe_dump(policy, sort_keys=False), encoding="utf-8")
        engine = {"url": url or self.docker.unix_url, **(tls or {})}

        def host(team: str, select: dict[str, str], project: str) -> dict[str, Any]:
            access = {**engine, "projects": projects or [project]}
            return {"team": team, "transport": "docker", "docker": access, "select": select}

        hosts = {
            "onquota": host("onquota", {"compose_project": "onquota"}, "onquota"),
            "skillmeat": host("skillmeat", {"job": "skillmeat"}, "skillmeat"),
        }
        clusters = {"clusters": {}, "hosts": hosts}
        (directory / "clusters.yaml").write_text(yaml.safe_dump(clusters), encoding="utf-8")
        (directory / "test.yaml").write_text(
            yaml.safe_dump([playbook or BACKEND_PLAYBOOK], sort_keys=False), encoding="utf-8"
        )
        return bot_settings(self.slack, self.dsn, self.redis_url, playbooks_dir=directory, **kw)

    def driver(self, bot: BotServer) -> SlackDriver:
        return SlackDriver(self.slack, bot_url(bot) + "/slack/events", SIGNING_SECRET, self.http)

    def mutations(self, since: int = 0) -> list[RecordedCall]:
        return self.docker.calls[since:]


@pytest.fixture
async def docker() -> AsyncIterator[DockerSandbox]:
    async with DockerSandbox() as engine:
        # What the backup template's read-only preview lists.
        listing = ExecScript(stdout="onquota_backup_2026-12-05.sql.gz\nonquota_backup_2026-12-04.sql.gz\n")
        engine.script("onquota_backup", LISTING, listing)
        yield engine


@pytest.fixture
async def env(
    slack: SlackSandbox,
    http: aiohttp.ClientSession,
    database_dsn: str,
    redis_url: str,
    tmp_path: Path,
    docker: DockerSandbox,
) -> Env:
    return Env(slack, http, database_dsn, redis_url, tmp_path, docker)


async def open_incident(env: Env, bot: BotServer, labels: dict[str, str]) -> Incident:
    status, _ = await post_alert(env.http, bot, alert_body(labels))
    assert status == 200
    channel = await env.slack.wait_for(lambda s: s.find_channel("inc-"))
    await env.slack.wait_for(lambda s: bool(s.messages(channel.id)))
    found = await bot.parts.store.incident_by_channel(channel.id)
    assert found is not None
    return found


async def run_host(
    env: Env, bot: BotServer, incident: Incident, args: str, host: str = "onquota"
) -> tuple[str, ActionRun]:
    """`/incident run host_command onquota <args>` by an on-call member: the reply and the run
    with its message as Slack has it."""
    known = {r.id for r in await bot.parts.remediation_store.for_incident(incident.id)}
    reply = await slash(env, bot, "U0CAROL", incident.channel_id or "", f"run host_command {host} {args}")
    new = [r for r in await bot.parts.remediation_store.for_incident(incident.id) if r.id not in known]
    assert len(new) == 1, reply
    [run] = new
    stored = await bot.parts.remediation_store.get(run.id)
    assert stored is not None and stored.message_ts is not None  # posted before the reply
    return reply, stored


def restarts(calls: list[RecordedCall]) -> list[str]:
    return [c.container for c in calls if c.action == "restart"]


# --------------------------------------------------------------------------- the happy path


async def test_onquota_alert_restarts_the_backend_once_through_the_engine_api(env: Env) -> None:
    async with running(env.settings()) as bot:
        incident = await open_incident(env, bot, ONQUOTA)
        run = await playbook_run(env, bot, incident, "Restart the OnQuota backend")
        text = await wait_message(env, run, "docker compose -p onquota restart backend", "approve_action")
        assert f"docker {env.docker.unix_url}" in text
        assert '\\"Name\\": \\"onquota_backend\\"' in text and "before (" in text  # the preview
        # Two approvals, as the policy says for OnQuota's host: one is not enough.
        assert await approve(env, bot, run, "U0BOB") == 200
        await wait_message(env, run, "1 of 2")
        assert env.mutations() == []
        assert await approve(env, bot, run, "U0ALICE") == 200
        await wait_message(env, run, "Remediation succeeded")
        after = await wait_thread(env, run, "after: ")
        assert "onquota_backend" in after
        await wait_thread(env, run, "Verification of")
        assert env.mutations() == [RecordedCall("restart", "onquota_backend", stop_timeout=10)]
        events = await audit_events(bot, run.id)
        assert events.count(AuditEvent.CLAIMED) == 1 and events.count(AuditEvent.SUCCEEDED) == 1
        done = await bot.parts.remediation_store.get(run.id)
        assert done is not None and done.status is RunStatus.SUCCEEDED and done.verification


async def test_two_replicas_and_double_clicks_restart_each_worker_once(env: Env) -> None:
    async with (
        running(env.settings(replica_name="bot-a")) as bot_a,
        running(env.settings(replica_name="bot-b")) as bot_b,
    ):
        incident = await open_incident(env, bot_a, PLAIN)
        reply, run = await run_host(
            env, bot_a, incident, "template=onquota_compose_restart service=celery_worker"
        )
        assert "2 approval(s) needed" in reply
        await wait_message(env, run, "onquota-celery_worker-1", "onquota-celery_worker-2", "approve_action")
        clicks = [approve(env, bot, run, user) for user in ("U0BOB", "U0ALICE") for bot in (bot_a, bot_b)]
        assert await asyncio.gather(*clicks) == [200] * 4
        await wait_message(env, run, "Remediation succeeded")
        assert sorted(restarts(env.mutations())) == ["onquota-celery_worker-1", "onquota-celery_worker-2"]
        assert (await audit_events(bot_a, run.id)).count(AuditEvent.CLAIMED) == 1


async def test_the_backup_runs_once_in_its_container_with_its_exit_code(env: Env) -> None:
    env.docker.script("onquota_backup", [VERIFY_SCRIPT], ExecScript(stderr="md5sum: FAILED\n", exit_code=2))
    async with running(env.settings()) as bot:
        incident = await open_incident(env, bot, PLAIN)
        _, backup = await run_host(env, bot, incident, "template=onquota_backup_postgres")
        await wait_message(env, backup, "onquota_backup_2026-12-05.sql.gz", "approve_action")  # the preview
        for user in ("U0BOB", "U0ALICE"):
            assert await approve(env, bot, backup, user) == 200
        await wait_message(env, backup, "Remediation succeeded")
        await wait_thread(env, backup, f"docker exec onquota_backup {BACKUP_SCRIPT}` exited with 0")
        # A script that fails says so, with its exit code; it ran once too.
        _, verify = await run_host(env, bot, incident, "template=onquota_verify_backups")
        for user in ("U0BOB", "U0ALICE"):
            assert await approve(env, bot, verify, user) == 200
        await wait_message(env, verify, "Remediation failed")
        await wait_thread(env, verify, "exited with code 2")
        execs = [c.argv for c in env.mutations() if c.action == "exec"]
        assert execs.count((BACKUP_SCRIPT,)) == 1 and execs.count((VERIFY_SCRIPT,)) == 1
        assert restarts(env.mutations()) == []


# --------------------------------------------------------------------------- refusals


async def test_a_template_with_no_engine_api_equivalent_is_not_offered(env: Env) -> None:
    async with running(env.settings()) as bot:
        incident = await open_incident(env, bot, PLAIN)
        _, scale = await run_host(
            env, bot, incident, "template=onquota_compose_scale service=celery_worker count=4"
        )
        text = await wait_message(env, scale, "not supported by the Docker transport")
        assert "approve_action" not in text
        # Positive control: a restart on the same host is offered.
        _, restart = await run_host(
            env, bot, incident, "template=onquota_compose_restart service=celery_beat"
        )
        await wait_message(env, restart, "onquota_celery_beat", "approve_action")
        assert env.mutations() == []
        stored = await bot.parts.remediation_store.get(scale.id)
        assert stored is not None and AuditEvent.CLAIMED not in await audit_events(bot, scale.id)


async def test_an_unreachable_engine_is_a_clear_error_and_nothing_runs(env: Env) -> None:
    missing = f"unix://{env.tmp}/nothing-listens-here.sock"
    async with (
        running(env.settings(replica_name="bot-a")) as bot_a,
        running(env.settings(replica_name="bot-b", url=missing)) as bot_b,
    ):
        incident = await open_incident(env, bot_a, PLAIN)
        # At proposal: the preview says why, and there is nothing to approve.
        _, unreachable = await run_host(
            env, bot_b, incident, "template=onquota_compose_restart service=backend"
        )
        text = await wait_message(env, unreachable, "unreachable")
        assert "approve_action" not in text and missing in text
        # Proposed where the engine answered, approved where it does not: refused at execution.
        _, run = await run_host(env, bot_a, incident, "template=onquota_compose_restart service=celery_beat")
        await wait_message(env, run, "approve_action")
        assert await approve(env, bot_b, run, "U0BOB") == 200
        assert await approve(env, bot_b, run, "U0ALICE") == 200
        await wait_message(env, run, "Remediation failed")
        await wait_thread(env, run, "unreachable")
        assert env.mutations() == []
        events = await audit_events(bot_a, run.id)
        assert events.count(AuditEvent.FAILED) == 1 and AuditEvent.SUCCEEDED not in events


async def test_a_container_of_another_project_is_refused(env: Env) -> None:
    async with running(env.settings()) as bot:
        incident = await open_incident(env, bot, PLAIN)
        _, other = await run_host(env, bot, incident, "template=restart_container container=skillmeat-api")
        for user in ("U0BOB", "U0ALICE"):
            assert await approve(env, bot, other, user) == 200
        await wait_message(env, other, "Remediation failed")
        await wait_thread(env, other, "compose project `skillmeat` is not one of this host's projects")
        assert env.mutations() == []
        # Positive control: on SkillMeat's own host (one approval there), the same restart runs.
        args = "template=restart_container container=skillmeat-api"
        _, own = await run_host(env, bot, incident, args, host="skillmeat")
        assert await approve(env, bot, own, "U0BOB") == 200
        await wait_message(env, own, "Remediation succeeded")
        assert restarts(env.mutations()) == ["skillmeat-api"]


async def test_an_exec_past_its_time_limit_fails_plainly(env: Env) -> None:
    env.docker.script("onquota_backup", ["/scripts/slow.sh"], ExecScript(hang=True))
    async with running(env.settings()) as bot:
        incident = await open_incident(env, bot, PLAIN)
        _, run = await run_host(env, bot, incident, "template=slow_exec")
        for user in ("U0BOB", "U0ALICE"):
            assert await approve(env, bot, run, user) == 200
        await wait_message(env, run, "Remediation failed")
        await wait_thread(env, run, "timed out")
        assert [c.argv for c in env.mutations()] == [("/scripts/slow.sh",)]  # started once, never again


async def test_an_exec_in_a_stopped_container_shows_the_engines_words(env: Env) -> None:
    env.docker.stop_container("onquota_backup", exit_code=137)
    async with running(env.settings()) as bot:
        incident = await open_incident(env, bot, PLAIN)
        _, run = await run_host(env, bot, incident, "template=onquota_verify_backups")
        for user in ("U0BOB", "U0ALICE"):
            assert await approve(env, bot, run, user) == 200
        await wait_message(env, run, "Remediation failed")
        note = await wait_thread(env, run, "exited with code 1")
        assert "is not running" in note or "conflict" in note, note
        assert env.mutations() == []


async def test_a_tls_engine_over_tcp_with_client_certificates(env: Env, tmp_path: Path) -> None:
    async with DockerSandbox(tls=True) as secured:
        files = {f"tls_{n}": secured.tls_file(f"{n}.pem") for n in ("ca", "cert", "key")}
        # An unusable certificate stops start-up, listing the files, before anything is reached.
        bad = {**files, "tls_cert": str(tmp_path / "missing.pem")}
        with pytest.raises(ConfigError, match="Docker TLS files"):
            await build(env.settings(url=secured.tcp_url, tls=bad))
        assert secured.requests == []
        async with running(env.settings(url=secured.tcp_url, tls=files)) as bot:
            incident = await open_incident(env, bot, PLAIN)
            _, run = await run_host(env, bot, incident, "template=onquota_compose_restart service=backend")
            await wait_message(env, run, f"docker {secured.tcp_url}", "onquota_backend", "approve_action")
            for user in ("U0BOB", "U0ALICE"):
                assert await approve(env, bot, run, user) == 200
            await wait_message(env, run, "Remediation succeeded")
        assert secured.calls == [RecordedCall("restart", "onquota_backend", stop_timeout=10)]
        assert env.mutations() == []  # the Unix-socket engine was not used


# --------------------------------------------------------------------------- verification


@dataclass
class BackendExporter:
    """`onquota_test_backend_up`: 0 until the engine has restarted onquota_backend, then 1."""

    docker: DockerSandbox
    scraped: asyncio.Event = field(default_factory=asyncio.Event)

    async def metrics(self, _request: web.Request) -> web.Response:
        value = 1 if restarts(self.docker.calls) else 0
        self.scraped.set()
        self.scraped = asyncio.Event()
        return web.Response(text=f"onquota_test_backend_up {value}\n", content_type="text/plain")

    async def next_scrape(self) -> None:
        await asyncio.wait_for(self.scraped.wait(), timeout=10)


@pytest.fixture
async def prometheus(docker: DockerSandbox, tmp_path: Path) -> AsyncIterator[tuple[str, BackendExporter]]:
    exporter = BackendExporter(docker)
    app = web.Application()
    app.router.add_get("/metrics", exporter.metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    target = f"127.0.0.1:{runner.addresses[0][1]}"
    server = await asyncio.to_thread(PrometheusServer.start, tmp_path / "prometheus", [target], "1s")
    try:
        yield server.url, exporter
    finally:
        await asyncio.to_thread(server.stop)
        await runner.cleanup()


async def test_the_docker_restart_is_verified_by_the_playbook_check_in_prometheus(
    env: Env, prometheus: tuple[str, BackendExporter]
) -> None:
    url, exporter = prometheus
    checked = dict(BACKEND_PLAYBOOK)
    checked["steps"] = [
        {
            "title": "Backend up",
            "check": {
                "query": "onquota_test_backend_up",
                "op": "==",
                "value": 1,
                "description": "backend up",
            },
        }
    ]
    settings = env.settings(prometheus_url=url, remediation_verify_seconds=30, playbook=checked)
    async with running(settings) as bot:
        source = bot.parts.prometheus.default
        assert source is not None
        for _ in range(30):  # until Prometheus has the sample (asked again after each scrape)
            if await source.query_instant("onquota_test_backend_up"):
                break
            await exporter.next_scrape()
        incident = await open_incident(env, bot, ONQUOTA)
        # The control: before the restart the runbook's check fails.
        channel = incident.channel_id or ""
        await env.slack.wait_for(
            lambda s: any("Check failed:* backend up" in str(m.blocks) for m in s.messages(channel))
        )
        run = await playbook_run(env, bot, incident, "Restart the OnQuota backend")
        assert await approve(env, bot, run, "U0BOB") == 200
        assert await approve(env, bot, run, "U0ALICE") == 200
        note = await wait_thread(env, run, "Verification of", timeout=45)
        assert "recovered: " in note and "not recovered" not in note, note
        assert "backend up" in note
        assert restarts(env.mutations()) == ["onquota_backend"]
