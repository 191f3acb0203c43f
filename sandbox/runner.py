"""`incidentbot sandbox`: the whole story on one machine, before any Slack app exists.

Starts throwaway PostgreSQL and Redis (unless DATABASE_URL/REDIS_URL are set), the sandbox
Slack server, and the bot wired to them on 127.0.0.1; fires sample alerts from the seed
systems and prints the Slack conversation as it happens.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import tempfile
from collections.abc import Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from bot import logs
from bot.config import BUNDLED_PLAYBOOKS, Settings, sandbox_environment
from bot.errors import ConfigError
from bot.testalert import build_payload
from bot.wiring import build
from sandbox.kubernetes import KubeSandbox
from sandbox.pagerduty import DEFAULT_API_TOKEN, DEFAULT_WEBHOOK_SECRET, PagerDutySandbox
from sandbox.services import PostgresServer, RedisServer, ServiceError
from sandbox.slack import SlackSandbox
from sandbox.textview import blocks_to_text

SANDBOX_TOKEN = "sandbox-alertmanager-token"
SANDBOX_SIGNING_SECRET = "sandbox-signing-secret"
DEMO_ALERTS: list[tuple[str, dict[str, str], str]] = [
    (
        "APIDown",
        {"namespace": "skillquest", "job": "skillquest-api", "service": "api", "severity": "critical"},
        "SkillQuest API is down",
    ),
    (
        "ServiceDown",
        {"namespace": "birthday-scheduler", "job": "birthday-scheduler-api", "severity": "critical"},
        "Birthday Scheduler API is down",
    ),
    (
        "SkillForgeLatencyP95High",
        {"namespace": "api", "service": "search", "deployment": "search-api", "severity": "critical"},
        "search-api p95 latency above the SLO",
    ),
]
# Sandbox users in the policy's roles, so approvals can be tried out.
SANDBOX_ROLES: dict[str, dict[str, list[str]]] = {
    "sre": {"users": ["U_ALICE", "U_BOB"], "usergroups": []},
    "oncall": {"users": [], "usergroups": ["S_SRE"]},
    "dba": {"users": ["U_CAROL"], "usergroups": []},
    "escalation": {"users": [], "usergroups": ["S_SRE"]},
}


def sandbox_playbooks(base: Path) -> Path:
    """The bundled playbooks with a policy whose roles name the sandbox users."""
    target = base / "playbooks"
    shutil.copytree(BUNDLED_PLAYBOOKS, target)
    policy = yaml.safe_load((target / "policy.yaml").read_text(encoding="utf-8"))
    policy["roles"] = SANDBOX_ROLES
    (target / "policy.yaml").write_text(
        "# Sandbox policy: the bundled one with the sandbox users in its roles.\n"
        + yaml.safe_dump(policy, sort_keys=False),
        encoding="utf-8",
    )
    return target


class ConversationPrinter:
    """Prints new and edited messages of the sandbox workspace as they happen."""

    def __init__(self, slack: SlackSandbox) -> None:
        self.slack = slack
        self.seen: dict[tuple[str, str], int] = {}

    def names(self) -> dict[str, str]:
        found = {uid: f"@{u.name}" for uid, u in self.slack.users.items()}
        found.update({cid: f"#{c.name}" for cid, c in self.slack.channels.items()})
        return found

    def print_changes(self) -> int:
        printed = 0
        names = self.names()
        for channel in list(self.slack.channels.values()):
            for msg in channel.messages:
                key = (channel.id, msg.ts)
                version = len(msg.edits)
                if self.seen.get(key) == version:
                    continue
                verb = "posted" if key not in self.seen else "updated"
                self.seen[key] = version
                who = names.get(msg.user, msg.user)
                body = blocks_to_text(msg.blocks, msg.text, names)
                if msg.files:
                    body += "".join(
                        f"\n  (file: {self.slack.files[f].title})" for f in msg.files if f in self.slack.files
                    )
                print(
                    f"\n[#{channel.name}] {who} {verb}:\n"
                    + "\n".join("  " + line for line in body.splitlines()),
                    flush=True,
                )
                printed += 1
        return printed

    async def follow(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.print_changes()
            version = self.slack_version()
            try:
                await self.slack.wait_for(self._changed_since(version), timeout=1.0)
            except TimeoutError:
                continue

    def _changed_since(self, version: int) -> Callable[[SlackSandbox], bool]:
        return lambda _slack: self.slack_version() != version

    def slack_version(self) -> int:
        return sum(
            len(c.messages) + sum(len(m.edits) for m in c.messages) for c in self.slack.channels.values()
        )


async def _fire(
    session: aiohttp.ClientSession,
    url: str,
    alertname: str,
    labels: dict[str, str],
    summary: str,
    *,
    started: datetime,
    resolve: bool = False,
) -> int:
    now = datetime.now(UTC)
    body = build_payload(
        alertname,
        {k: v for k, v in labels.items() if k != "severity"},
        resolve=resolve,
        starts_at=started,
        now=now,
        annotations={
            "summary": summary,
            "description": f"Sample alert from the {labels['namespace']} system.",
        },
    )
    body["alerts"][0]["labels"]["severity"] = labels.get("severity", "critical")
    async with session.post(
        url + "/webhooks/alertmanager",
        data=json.dumps(body),
        headers={"Authorization": f"Bearer {SANDBOX_TOKEN}", "Content-Type": "application/json"},
    ) as resp:
        return resp.status


async def _sandbox(port: int, demo: bool, exit_after_demo: bool) -> None:
    env = sandbox_environment()
    logs.configure(env.get("log_format", "console"))
    async with AsyncExitStack() as stack:
        base = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="incidentbot-sandbox-")))
        if "database_url" not in env:
            print("sandbox: starting PostgreSQL …", flush=True)
            pg = await asyncio.to_thread(PostgresServer.start, base)
            stack.callback(pg.stop)
            env["database_url"] = pg.dsn
        if "redis_url" not in env:
            print("sandbox: starting Redis …", flush=True)
            rd = await asyncio.to_thread(RedisServer.start, base)
            stack.callback(rd.stop)
            env["redis_url"] = rd.url
        slack = SlackSandbox(incident_channel="incident")
        await slack.start()
        stack.push_async_callback(slack.stop)
        kube = KubeSandbox()
        kube.seed_demo()
        await kube.start()
        stack.push_async_callback(kube.stop)
        kubeconfig = kube.write_kubeconfig(base / "kubeconfig")
        pagerduty = PagerDutySandbox()
        await stack.enter_async_context(pagerduty)
        values: dict[str, Any] = {
            "kubeconfig": str(kubeconfig),
            "playbooks_dir": sandbox_playbooks(base),
            "pagerduty_api_token": DEFAULT_API_TOKEN,
            "pagerduty_api_url": pagerduty.base_url,
            "pagerduty_from_email": "alice@example.com",
            "pagerduty_webhook_secret": DEFAULT_WEBHOOK_SECRET,
            "pagerduty_ca_bundle": str(pagerduty.ca_path),
            "slack_bot_token": slack.bot_token,
            "slack_signing_secret": SANDBOX_SIGNING_SECRET,
            "slack_api_url": slack.api_url,
            "alertmanager_webhook_token": SANDBOX_TOKEN,
            "http_host": "127.0.0.1",
            "http_port": port,
            "incident_channel": "incident",
            **env,
        }
        settings = Settings(**values)
        server = await build(settings)
        await server.start()
        stack.push_async_callback(server.stop)
        url = f"http://127.0.0.1:{server.port}"
        pagerduty.webhook_url = url + "/webhooks/pagerduty"
        print(f"sandbox: bot on {url} · sandbox Slack API on {slack.api_url}", flush=True)
        print(
            f"sandbox: try `incidentbot send-test-alert MyAlert --url {url} --token {SANDBOX_TOKEN}`",
            flush=True,
        )
        printer = ConversationPrinter(slack)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        follower = asyncio.create_task(printer.follow(stop))
        if demo:
            started = datetime.now(UTC) - timedelta(minutes=3)
            async with aiohttp.ClientSession() as session:
                for alertname, labels, summary in DEMO_ALERTS:
                    print(f"\nsandbox: firing {alertname} ({labels['namespace']})", flush=True)
                    await _fire(session, url, alertname, labels, summary, started=started)
                await slack.wait_for(
                    lambda s: (
                        len([c for c in s.channels.values() if c.name.startswith("inc-")]) >= len(DEMO_ALERTS)
                        and len(s.messages(s.incident_channel.id if s.incident_channel else ""))
                        >= len(DEMO_ALERTS)
                    ),
                    timeout=60,
                )
                alertname, labels, summary = DEMO_ALERTS[0]
                print(f"\nsandbox: resolving {alertname}", flush=True)
                await _fire(session, url, alertname, labels, summary, started=started, resolve=True)
                await slack.wait_for(
                    lambda s: any("have resolved" in m.text for c in s.channels.values() for m in c.messages),
                    timeout=30,
                )
        if exit_after_demo:
            stop.set()
        await stop.wait()
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        printer.print_changes()
        print("\nsandbox: stopping", flush=True)


def run_sandbox(*, port: int, demo: bool, exit_after_demo: bool) -> int:
    try:
        asyncio.run(_sandbox(port, demo, exit_after_demo))
    except ServiceError as exc:
        raise ConfigError(str(exc)) from None
    return 0
