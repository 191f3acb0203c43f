"""Correlation through the real edges: bearer-authenticated Alertmanager posts, signed Slack
commands and button clicks, real PostgreSQL and Redis, the sandbox Slack and Kubernetes.

Topology is resolved for real (the sandbox apiserver owns the pods through ReplicaSets); a weak
link posts Attach / Keep separate buttons; `/incident merge`, `split` and `links` correct it; a
person without the `correlate` permission changes nothing and makes Slack write nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.app import BotServer
from bot.core.correlation import ATTACH_ACTION, SEPARATE_ACTION
from bot.core.incident import IncidentStatus
from sandbox.kubernetes import KubeSandbox
from sandbox.slack import SlackDriver, SlackSandbox
from tests.integration.rig import (
    SIGNING_SECRET,
    bot_settings,
    bot_url,
    playbooks_with_roles,
    post_alert,
    quiet,
    running_bot,
)

pytestmark = pytest.mark.timeout(120)
STARTS = "2026-11-22T16:00:00Z"


def group(
    alertname: str, labels: dict[str, str], *, fingerprint: str, starts: str = STARTS
) -> dict[str, Any]:
    """A one-alert Alertmanager group of its own (grouped by alertname and namespace)."""
    full = {"alertname": alertname, "severity": "warning", **labels}
    return {
        "receiver": "incidentbot",
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": full,
                "annotations": {"summary": f"{alertname} firing"},
                "startsAt": starts,
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
                "fingerprint": fingerprint,
            }
        ],
        "groupLabels": {"alertname": alertname},
        "commonLabels": full,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{alertname}", namespace="{labels.get("namespace", "")}"}}',
        "truncatedAlerts": 0,
    }


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
    slack.add_user("U0DAVE", "dave", "Dave Davis", "dave@example.com")  # holds no role
    settings = bot_settings(
        slack,
        database_dsn,
        redis_url,
        playbooks_dir=playbooks_with_roles(tmp_path / "playbooks"),
        kubeconfig=str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
    )
    async with running_bot(settings) as server:
        yield server


def driver(slack: SlackSandbox, bot: BotServer, http: aiohttp.ClientSession) -> SlackDriver:
    return SlackDriver(slack, bot_url(bot) + "/slack/events", SIGNING_SECRET, http)


async def opened(slack: SlackSandbox, bot: BotServer, count: int) -> list[int]:
    """Ids of the open incidents once `count` of them have their channel and card."""

    def published(s: SlackSandbox) -> bool:
        channels = s.channels_with_prefix("inc-")
        return len(channels) == count and all(s.messages(c.id) for c in channels)

    await slack.wait_for(published, timeout=15)
    found = await bot.parts.store.list_open()
    return sorted(i.id for i in found)


def shown(slack: SlackSandbox, channel_id: str, needle: str) -> str | None:
    return next((m.text for m in slack.messages(channel_id) if needle in m.text), None)


def written(slack: SlackSandbox) -> int:
    return sum(len(c.messages) for c in slack.channels.values())


async def test_same_deployment_attaches_and_says_why(
    slack: SlackSandbox, kube: KubeSandbox, bot: BotServer, http: aiohttp.ClientSession
) -> None:
    pods = sorted(p["metadata"]["name"] for p in kube.deployment_pods("skillquest", "skillquest-api"))
    first = group("KubePodCrashLooping", {"namespace": "skillquest", "pod": pods[0]}, fingerprint="a1")
    assert (await post_alert(http, bot, first))[0] == 200
    [incident_id] = await opened(slack, bot, 1)
    later = group(
        "HighAPIErrorRate",
        {"namespace": "skillquest", "pod": pods[1]},
        fingerprint="a2",
        starts="2026-11-22T16:02:00Z",
    )
    assert (await post_alert(http, bot, later))[0] == 200
    incident = await bot.parts.store.get_incident(incident_id)
    assert incident is not None and incident.channel_id is not None
    why = await slack.wait_for(lambda s: shown(s, incident.channel_id or "", "attached"), timeout=10)
    assert "same deployment skillquest/skillquest-api (owner of pod" in why
    assert "started 2 m after" in why
    assert len(slack.channels_with_prefix("inc-")) == 1
    view = await bot.parts.store.load_view(incident_id)
    assert view is not None and {a.name for a in view[0].alerts} == {
        "KubePodCrashLooping",
        "HighAPIErrorRate",
    }
    timeline = await bot.parts.store.timeline(incident_id)
    assert any(e.kind == "correlation_attached" and "same deployment" in e.text for e in timeline)


@pytest.fixture
async def topology_bot(
    slack: SlackSandbox, kube: KubeSandbox, database_dsn: str, redis_url: str, tmp_path: Path
) -> AsyncIterator[BotServer]:
    """Only the topology rule links incidents (the catalog would join any two of a namespace)."""
    directory = playbooks_with_roles(tmp_path / "playbooks")
    rules = "\n".join(
        f"{rule}: {{link: 'off'}}" for rule in ("dependencies", "same_service", "same_team", "labels")
    )
    (directory / "correlation.yaml").write_text(f"enabled: true\nlearned: false\n{rules}\n", encoding="utf-8")
    settings = bot_settings(
        slack,
        database_dsn,
        redis_url,
        playbooks_dir=directory,
        kubeconfig=str(kube.write_kubeconfig(tmp_path / "kc")),
    )
    async with running_bot(settings) as server:
        yield server


async def test_a_service_alert_attaches_to_its_workloads_incident(
    slack: SlackSandbox, kube: KubeSandbox, topology_bot: BotServer, http: aiohttp.ClientSession
) -> None:
    """Service → its workloads: an alert naming only a Kubernetes Service (a blackbox probe, an
    ingress error rate) joins the incident of a pod the Service selects."""
    pods = sorted(p["metadata"]["name"] for p in kube.deployment_pods("skillquest", "skillquest-api"))
    first = group("KubePodCrashLooping", {"namespace": "skillquest", "pod": pods[0]}, fingerprint="s1")
    assert (await post_alert(http, topology_bot, first))[0] == 200
    [incident_id] = await opened(slack, topology_bot, 1)
    probe = group(
        "ProbeFailed",
        {"namespace": "skillquest", "service": "skillquest-api-http"},
        fingerprint="s2",
        starts="2026-11-22T16:01:00Z",
    )
    assert (await post_alert(http, topology_bot, probe))[0] == 200
    incident = await topology_bot.parts.store.get_incident(incident_id)
    assert incident is not None and incident.channel_id is not None
    why = await slack.wait_for(lambda s: shown(s, incident.channel_id or "", "attached"), timeout=10)
    assert "same deployment skillquest/skillquest-api (behind service skillquest-api-http)" in why
    assert len(slack.channels_with_prefix("inc-")) == 1
    assert kube.requests_for("GET", "/namespaces/skillquest/services/skillquest-api-http")


async def test_a_service_selecting_nothing_of_ours_stays_apart(
    slack: SlackSandbox, kube: KubeSandbox, topology_bot: BotServer, http: aiohttp.ClientSession
) -> None:
    """Control: a Service of another workload, and a name that is no Service, are not attached."""
    pods = sorted(p["metadata"]["name"] for p in kube.deployment_pods("skillquest", "skillquest-api"))
    first = group("KubePodCrashLooping", {"namespace": "skillquest", "pod": pods[0]}, fingerprint="t1")
    assert (await post_alert(http, topology_bot, first))[0] == 200
    await opened(slack, topology_bot, 1)
    other = group(
        "ProbeFailed",
        {"namespace": "skillquest", "service": "skillquest-worker-http"},
        fingerprint="t2",
        starts="2026-11-22T16:01:00Z",
    )
    assert (await post_alert(http, topology_bot, other))[0] == 200
    await opened(slack, topology_bot, 2)
    assert kube.requests_for("GET", "/namespaces/skillquest/services/skillquest-worker-http")
    missing = group(
        "ProbeSlow",
        {"namespace": "skillquest", "service": "no-such-service"},
        fingerprint="t3",
        starts="2026-11-22T16:02:00Z",
    )
    assert (await post_alert(http, topology_bot, missing))[0] == 200
    await opened(slack, topology_bot, 3)
    assert kube.requests_for("GET", "/namespaces/skillquest/services/no-such-service")


async def test_weak_link_suggests_refusal_changes_nothing_then_attach(
    slack: SlackSandbox, bot: BotServer, http: aiohttp.ClientSession
) -> None:
    cache = group("RedisMemoryHigh", {"namespace": "skillquest"}, fingerprint="c1")
    ai = group("AIHighLatency", {"namespace": "skillquest"}, fingerprint="c2", starts="2026-11-22T16:03:00Z")
    assert (await post_alert(http, bot, cache))[0] == 200
    [first] = await opened(slack, bot, 1)
    assert (await post_alert(http, bot, ai))[0] == 200
    first_id, second_id = await opened(slack, bot, 2)
    assert first_id == first
    candidate = await bot.parts.store.get_incident(first_id)
    assert candidate is not None and candidate.channel_id is not None
    channel = candidate.channel_id
    await slack.wait_for(lambda s: shown(s, channel, "may belong here"), timeout=10)
    clicks = driver(slack, bot, http)

    # Refused: dave holds no role of `correlate`; nothing changes and Slack gets no write.
    before = written(slack)
    await clicks.click(ATTACH_ACTION, user_id="U0DAVE", channel_id=channel)
    refusal = await slack.wait_for(
        lambda s: next((r for r in s.responses if r.user_id == "U0DAVE" and "may not" in str(r.body)), None)
    )
    assert "merge, split or correlate" in str(refusal.body)
    second = await bot.parts.store.get_incident(second_id)
    assert second is not None and second.status is not IncidentStatus.RESOLVED
    view = await bot.parts.store.load_view(first_id)
    assert view is not None and [a.name for a in view[0].alerts] == ["RedisMemoryHigh"]
    assert written(slack) == before

    # Positive control: alice (sre) attaches; the new incident is merged into the candidate.
    await clicks.click(ATTACH_ACTION, user_id="U0ALICE", channel_id=channel)
    await slack.wait_for(lambda s: shown(s, channel, "merged into this incident"), timeout=10)
    merged = await bot.parts.store.get_incident(second_id)
    assert merged is not None and merged.status is IncidentStatus.RESOLVED
    view = await bot.parts.store.load_view(first_id)
    assert view is not None and {a.name for a in view[0].alerts} == {"RedisMemoryHigh", "AIHighLatency"}
    links = await bot.parts.flows.correlation.links()
    assert [(link.name_a, link.name_b, link.kind.value) for link in links] == [
        ("AIHighLatency", "RedisMemoryHigh", "attach")
    ]
    # The same button again: answered once only.
    await clicks.click(SEPARATE_ACTION, user_id="U0ALICE", channel_id=channel)
    await slack.wait_for(
        lambda s: any(r.user_id == "U0ALICE" and "answered already" in str(r.body) for r in s.responses)
    )


async def test_keep_separate_is_learned(
    slack: SlackSandbox, bot: BotServer, http: aiohttp.ClientSession
) -> None:
    await post_alert(http, bot, group("RedisMemoryHigh", {"namespace": "skillquest"}, fingerprint="d1"))
    await opened(slack, bot, 1)
    await post_alert(http, bot, group("AIHighLatency", {"namespace": "skillquest"}, fingerprint="d2"))
    first_id, second_id = await opened(slack, bot, 2)
    candidate = await bot.parts.store.get_incident(first_id)
    assert candidate is not None and candidate.channel_id is not None
    channel = candidate.channel_id
    await slack.wait_for(lambda s: shown(s, channel, "may belong here"), timeout=10)
    await driver(slack, bot, http).click(SEPARATE_ACTION, user_id="U0CAROL", channel_id=channel)
    await slack.wait_for(lambda s: shown(s, channel, "kept separate"), timeout=10)
    second = await bot.parts.store.get_incident(second_id)
    assert second is not None and second.status is not IncidentStatus.RESOLVED
    links = await bot.parts.flows.correlation.links()
    assert [(link.name_a, link.name_b, link.kind.value) for link in links] == [
        ("AIHighLatency", "RedisMemoryHigh", "off")
    ]


async def test_merge_split_links_and_refused_merge(
    slack: SlackSandbox, bot: BotServer, http: aiohttp.ClientSession
) -> None:
    # Two teams, no rule links them: two incidents.
    await post_alert(
        http, bot, group("SkillForgeSearchDown", {"namespace": "api", "service": "search"}, fingerprint="m1")
    )
    await opened(slack, bot, 1)
    await post_alert(http, bot, group("OnQuotaBackendDown", {"project": "onquota"}, fingerprint="m2"))
    a_id, b_id = await opened(slack, bot, 2)
    a = await bot.parts.store.get_incident(a_id)
    assert a is not None and a.channel_id is not None
    commands = driver(slack, bot, http)

    # Refused: dave holds no role of `correlate`. The incidents' stored versions (what Slack is
    # redrawn from) do not move, and no Slack write about a merge is made; enrichment of the two
    # new incidents may still be posting, so the writes are told apart by what they say.
    await quiet(bot)
    calls_before = len(slack.calls)
    versions = {i.id: i.version for i in await bot.parts.store.list_open()}
    await commands.slash_command("/incident", f"merge #{b_id}", user_id="U0DAVE", channel_id=a.channel_id)
    await slack.wait_for(
        lambda s: any(r.user_id == "U0DAVE" and "may not" in str(r.body) for r in s.responses)
    )
    b = await bot.parts.store.get_incident(b_id)
    assert b is not None and b.status is not IncidentStatus.RESOLVED
    assert {i.id: i.version for i in await bot.parts.store.list_open()} == versions
    assert not [c for c in slack.calls[calls_before:] if "erge" in str(c.args)]
    assert await bot.parts.flows.correlation.links() == []

    await commands.slash_command("/incident", f"merge #{b_id}", user_id="U0ALICE", channel_id=a.channel_id)
    await slack.wait_for(lambda s: shown(s, a.channel_id or "", "merged into this incident"), timeout=10)
    b = await bot.parts.store.get_incident(b_id)
    assert b is not None and b.status is IncidentStatus.RESOLVED
    await commands.slash_command("/incident", "links", user_id="U0ALICE", channel_id=a.channel_id)
    listed = await slack.wait_for(
        lambda s: next((str(r.body) for r in s.responses if "Learned links" in str(r.body)), None)
    )
    assert "OnQuotaBackendDown" in listed and "SkillForgeSearchDown" in listed and "attach" in listed

    await commands.slash_command(
        "/incident", "split OnQuotaBackendDown", user_id="U0ALICE", channel_id=a.channel_id
    )
    await slack.wait_for(lambda s: shown(s, a.channel_id or "", "split out into"), timeout=10)
    open_now = {i.id: i for i in await bot.parts.store.list_open()}
    assert len(open_now) == 2 and a_id in open_now
    [c_id] = [i for i in open_now if i != a_id]
    view = await bot.parts.store.load_view(c_id)
    assert view is not None and [x.name for x in view[0].alerts] == ["OnQuotaBackendDown"]
    links = await bot.parts.flows.correlation.links()
    assert [(link.kind.value) for link in links] == ["off"]

    # A later delivery of the split group lands in its own incident, not back in a.
    await post_alert(http, bot, group("OnQuotaBackendDown", {"project": "onquota"}, fingerprint="m3"))
    await slack.wait_for(lambda s: len(s.channels_with_prefix("inc-")) == 3, timeout=15)
    await commands.slash_command(
        "/incident", f"links remove {links[0].id}", user_id="U0ALICE", channel_id=a.channel_id
    )
    await slack.wait_for(lambda s: any("removed the learned link" in str(r.body) for r in s.responses))
    assert await bot.parts.flows.correlation.links() == []
