"""Start real bot instances against the sandbox Slack and real Postgres/Redis."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from bot.app import BotServer, build
from bot.config.settings import BUNDLED_PLAYBOOKS, Settings
from sandbox.slack import Channel, SlackSandbox

SIGNING_SECRET = "test-signing-secret-0123456789"
AM_TOKEN = "test-alertmanager-token"
DATA = Path(__file__).parent.parent / "data"


# Roles of the sandbox users in test policies: @alice is `sre`; the @sre-oncall group (alice,
# bob) and @carol are `oncall`. Any other user holds no role (the bundled policy's lifecycle
# section then lets them act only as a member of the incident's channel).
TEST_ROLES: dict[str, Any] = {
    "sre": {"users": ["U0ALICE"], "usergroups": []},
    "oncall": {"users": ["U0CAROL"], "usergroups": ["sre-oncall"]},
    "dba": {"users": [], "usergroups": []},
}


def playbooks_with_roles(target: Path, roles: Mapping[str, Any] | None = None) -> Path:
    """The bundled playbooks in `target`, with a policy whose roles name the sandbox users."""
    shutil.copytree(BUNDLED_PLAYBOOKS, target)
    policy = yaml.safe_load((target / "policy.yaml").read_text(encoding="utf-8"))
    policy["roles"] = dict(TEST_ROLES if roles is None else roles)
    (target / "policy.yaml").write_text(yaml.safe_dump(policy, sort_keys=False), encoding="utf-8")
    return target


def bot_settings(slack: SlackSandbox, database_dsn: str, redis_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "slack_bot_token": slack.bot_token,
        "slack_signing_secret": SIGNING_SECRET,
        "slack_api_url": slack.api_url,
        "incident_channel": "incident",
        "database_url": database_dsn,
        "redis_url": redis_url,
        "alertmanager_webhook_token": AM_TOKEN,
        "http_host": "127.0.0.1",
        "http_port": 0,
        "log_format": "console",
        "sweep_interval_seconds": 0.5,
    }
    values.update(overrides)
    return Settings(**values)


@asynccontextmanager
async def running_bot(settings: Settings) -> AsyncIterator[BotServer]:
    server = await build(settings)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def incident_channel(slack: SlackSandbox, timeout: float = 5.0) -> Channel:
    """The incident channel once the bot has claimed it and posted its card: only then does the
    bot know the channel as the incident's, as a responder typing there would find it."""

    def claimed(s: SlackSandbox) -> Channel | None:
        c = s.find_channel("inc-")
        return c if c is not None and s.messages(c.id) else None

    return await slack.wait_for(claimed, timeout=timeout)


def notification_channel(slack: SlackSandbox) -> Channel:
    """The channel the bot announces incidents in (the sandbox's `incident_channel`): the `slack`
    fixture always creates it, so its absence is a broken rig, not a finding."""
    assert slack.incident_channel is not None
    return slack.incident_channel


def bot_url(server: BotServer) -> str:
    return f"http://127.0.0.1:{server.port}"


def payload(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / "am_payload_v4.json").read_text())
    data.update(changes)
    return data


def group_payload(
    group: str, alerts: list[tuple[str, str]], *, alertname: str = "HighErrorRate", severity: str = "critical"
) -> dict[str, Any]:
    """A v4 payload for group `group` with alerts given as (fingerprint, status)."""
    items = []
    for fingerprint, status in alerts:
        items.append(
            {
                "status": status,
                "labels": {
                    "alertname": alertname,
                    "namespace": group,
                    "pod": f"pod-{fingerprint}",
                    "severity": severity,
                },
                "annotations": {"summary": f"{alertname} in {group}"},
                "startsAt": "2026-11-22T16:00:00Z",
                "endsAt": "2026-11-22T16:30:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
                "fingerprint": fingerprint,
            }
        )
    firing = any(s == "firing" for _, s in alerts)
    return {
        "receiver": "incidentbot",
        "status": "firing" if firing else "resolved",
        "alerts": items,
        "groupLabels": {"alertname": alertname, "namespace": group},
        "commonLabels": {"alertname": alertname, "namespace": group},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{alertname}", namespace="{group}"}}',
        "truncatedAlerts": 0,
    }


async def post_alert(
    session: aiohttp.ClientSession, server: BotServer, body: Any, *, token: str | None = AM_TOKEN
) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with session.post(bot_url(server) + "/webhooks/alertmanager", data=data, headers=headers) as resp:
        return resp.status, await resp.json()


class FakeClock:
    """A controllable clock for timer tests: starts at real now, moves only when told."""

    def __init__(self) -> None:
        from datetime import UTC

        self.current = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> None:
        from datetime import timedelta

        self.current += timedelta(**delta)


@asynccontextmanager
async def running_bot_with_clock(settings: Settings, clock: FakeClock) -> AsyncIterator[BotServer]:
    server = await build(settings, clock=clock)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def quiet(bot: BotServer, timeout: float = 20.0) -> None:
    """Until everything is published and nothing runs in the background: what follows is the
    next request's doing only."""
    pool = bot.parts.store.pool
    async with asyncio.timeout(timeout):
        while True:
            pending = await pool.fetchval(
                "SELECT (SELECT count(*) FROM incidents WHERE version > published_version)"
                " + (SELECT count(*) FROM timeline_events WHERE announce AND announced_ts IS NULL)"
            )
            if pending == 0 and bot.parts.supervisor.running == 0:
                return
            await asyncio.sleep(0.05)


def without_correlation(directory: Path) -> Path:
    """Correlation off in a playbook directory: for tests of other things that send several
    groups of one service and mean them as separate incidents."""
    (directory / "correlation.yaml").write_text("enabled: false\n", encoding="utf-8")
    return directory


def one_incident_per_group(directory: Path) -> Path:
    """Every group its own incident with its own channel and notification: correlation off and
    no storm mode (for tests of delivery, recovery and replicas that send many groups of one
    service)."""
    path = directory / "services.yaml"
    catalog = yaml.safe_load(path.read_text(encoding="utf-8"))
    catalog["storm"] = {"incidents": 1000, "window_seconds": 5}
    path.write_text(yaml.safe_dump(catalog, sort_keys=False), encoding="utf-8")
    return without_correlation(directory)
