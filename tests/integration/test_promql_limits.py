"""PromQL cost control through the real edges: signed `/incident graph` commands, bearer-
authenticated Alertmanager posts and approval clicks, against a real Prometheus.

The bot's PROMETHEUS_URL is a recording pass-through in front of the real Prometheus: it notes
every request (path and parameters) and can hold them, so a test can say exactly which queries
reached Prometheus and keep graphs "in flight". Prometheus' own request counters confirm the
absence of queries independently of the pass-through.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import shutil
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
import yaml
from aiohttp import web

from bot.clients.prometheus import PrometheusMetrics
from bot.config.settings import BUNDLED_PLAYBOOKS
from bot.core.errors import IntegrationError
from sandbox.kubernetes import KubeSandbox
from sandbox.services import PrometheusServer
from sandbox.slack import SlackDriver, SlackSandbox
from sandbox.slack.models import Message, ResponsePost
from tests.integration.rig import (
    SIGNING_SECRET,
    TEST_ROLES,
    bot_settings,
    bot_url,
    group_payload,
    notification_channel,
    post_alert,
    running_bot,
)
from tests.integration.rig import (
    playbooks_with_roles as with_test_roles,
)

pytestmark = pytest.mark.timeout(180)

REPRO = 'count(last_over_time({job=~".+"}[7d:100ms]))'
GOOD = 'up{job="sandbox"}'
PNG = b"\x89PNG\r\n\x1a\n"
DAY_S = 86400.0


# --------------------------------------------------------------------------- the rig


@dataclass
class Recorded:
    path: str
    params: dict[str, str]


@dataclass
class PrometheusRecorder:
    """A pass-through to the real Prometheus that records (and can hold) every API request."""

    upstream: str
    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    held: int = 0
    _open: asyncio.Event = field(default_factory=asyncio.Event)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    def __post_init__(self) -> None:
        self._open.set()

    @property
    def host(self) -> str:
        return self.url.removeprefix("http://")

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    async def wait_held(self, count: int, timeout: float = 20) -> None:
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: self.held >= count)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        form = await request.post() if request.method == "POST" else {}
        params = {**request.query, **{k: str(v) for k, v in form.items()}}
        self.requests.append(Recorded(request.path, params))
        async with self._changed:
            self.held += 0 if self._open.is_set() else 1
            self._changed.notify_all()
        await self._open.wait()
        async with (
            aiohttp.ClientSession() as session,
            session.request(request.method, self.upstream + request.path, params=params) as upstream,
        ):
            body = await upstream.read()
            return web.Response(body=body, status=upstream.status, content_type=upstream.content_type)

    def queries(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.startswith("/api/v1/query")]


async def prometheus_query_count(http: aiohttp.ClientSession, prometheus: PrometheusServer) -> float:
    """Queries Prometheus itself says it received (its own /metrics, which is no query)."""
    async with http.get(prometheus.url + "/metrics") as resp:
        text = await resp.text()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("prometheus_http_requests_total{") and re.search(
            r'handler="/api/v1/query(_range)?"', line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture
async def exporter() -> AsyncIterator[str]:
    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(text='adhoc_gauge{service="api"} 1\n', content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def prometheus(exporter: str, services_dir: Path) -> AsyncIterator[PrometheusServer]:
    server = await asyncio.to_thread(PrometheusServer.start, services_dir, [exporter])
    try:
        async with aiohttp.ClientSession() as http, asyncio.timeout(30):
            while True:  # until the first scrape is stored (a readiness probe, not a pause)
                async with http.get(server.url + "/api/v1/query", params={"query": "adhoc_gauge"}) as r:
                    if (await r.json())["data"]["result"]:
                        break
                await asyncio.sleep(0.2)
        yield server
    finally:
        await asyncio.to_thread(server.stop)


@pytest.fixture
async def recorder(prometheus: PrometheusServer) -> AsyncIterator[PrometheusRecorder]:
    rec = PrometheusRecorder(prometheus.url)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    rec.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield rec
    finally:
        rec.release()
        await runner.cleanup()


def alert_group(name: str, group: str, generator_url: str, **changes: Any) -> dict[str, Any]:
    body = group_payload(group, [(f"{group}-1", "firing")], alertname=name)
    body["alerts"][0]["generatorURL"] = generator_url
    body["alerts"][0]["startsAt"] = "1970-01-01T00:00:00Z"  # as hostile as it gets
    body.update(changes)
    return body


def expression_url(host: str, expr: str) -> str:
    return f"http://{host}/graph?g0.expr={quote(expr, safe='')}&g0.tab=0"


def texts(slack: SlackSandbox, channel_id: str) -> list[str]:
    return [json.dumps(m.blocks, ensure_ascii=False) + m.text for m in slack.messages(channel_id)]


async def new_incident_channel(slack: SlackSandbox, known: int) -> str:
    """The id of the incident channel opened after `known` others, once its card is up."""

    def found(s: SlackSandbox) -> str | None:
        channels = s.channels_with_prefix("inc-")
        if len(channels) <= known:
            return None
        channel = channels[known]  # in the order they were created
        return channel.id if s.messages(channel.id) else None

    return await slack.wait_for(found, timeout=15)


async def command(
    slack: SlackSandbox, driver: SlackDriver, user: str, channel_id: str, text: str
) -> ResponsePost:
    """Send `/incident <text>` as `user`; the bot's answer to it."""
    before = len([r for r in slack.responses if r.user_id == user])
    resp = await driver.slash_command("/incident", text, user_id=user, channel_id=channel_id)
    assert resp.status == 200

    def answer(s: SlackSandbox) -> ResponsePost | None:
        mine = [r for r in s.responses if r.user_id == user]
        return mine[before] if len(mine) > before else None

    return await slack.wait_for(answer)


def files_in(slack: SlackSandbox, channel_id: str) -> list[str]:
    return [f.title for f in slack.files.values() if f.completed and channel_id in f.shares]


# --------------------------------------------------------------------------- ad hoc graphs


async def test_costly_adhoc_graphs_are_refused_before_prometheus(
    slack: SlackSandbox,
    http: aiohttp.ClientSession,
    database_dsn: str,
    redis_url: str,
    prometheus: PrometheusServer,
    recorder: PrometheusRecorder,
    tmp_path: Path,
) -> None:
    # U0CAROL is on call: allowed to graph ad hoc, so what refuses her queries is their cost.
    settings = bot_settings(
        slack,
        database_dsn,
        redis_url,
        prometheus_url=recorder.url,
        playbooks_dir=with_test_roles(tmp_path / "pb"),
    )
    async with running_bot(settings) as bot:
        driver = SlackDriver(slack, bot_url(bot) + "/slack/events", SIGNING_SECRET, http)
        await post_alert(http, bot, alert_group("NoPlaybookForThis", "adhoc", ""))
        channel = await new_incident_channel(slack, 0)
        await slack.wait_for(lambda s: any("No playbook matches" in t for t in texts(s, channel)))
        assert recorder.queries() == []
        counted = await prometheus_query_count(http, prometheus)
        messages, files = len(slack.messages(channel)), len(slack.files)

        # The reported attack: 20 times the query that took Prometheus from 100 MB to 22 GB.
        sent = await asyncio.gather(
            *(
                driver.slash_command(
                    "/incident", f"graph '{REPRO}' 7d", user_id="U0CAROL", channel_id=channel
                )
                for _ in range(20)
            )
        )
        assert all(resp.status == 200 for resp in sent)
        refusals = await slack.wait_for(
            lambda s: mine if len(mine := [r for r in s.responses if r.user_id == "U0CAROL"]) >= 20 else None
        )
        assert len(refusals) == 20
        for refusal in refusals:
            assert refusal.response_type == "ephemeral"
            assert "Not graphed" in refusal.text and "refused before it reached Prometheus" in refusal.text
            assert "no metric name" in refusal.text
            assert "the range 7d is longer than the 24h maximum" in refusal.text
            assert "finer than the graph's step" in refusal.text
        # Nothing reached Prometheus, nothing was written to Slack.
        assert recorder.queries() == []
        assert await prometheus_query_count(http, prometheus) == counted
        assert len(slack.messages(channel)) == messages and len(slack.files) == files

        # Positive control: an ordinary query from the same user is drawn, over a clamped window.
        began = time.time()
        drawing = await command(slack, driver, "U0CAROL", channel, f"graph '{GOOD}' 30m")
        assert drawing.text.startswith("Drawing")
        drawn = await slack.wait_for(
            lambda s: next((f for f in s.files.values() if f.title == GOOD and f.completed), None), timeout=20
        )
        assert drawn.data is not None and drawn.data.startswith(PNG)
        [query] = recorder.queries()
        assert query.path == "/api/v1/query_range" and query.params["query"] == GOOD
        # The incident started "in 1970": the window still starts at most 24 h ago.
        assert float(query.params["start"]) >= began - DAY_S - 5
        assert query.params["timeout"].endswith("ms")  # Prometheus is told to stop in time too
        assert await prometheus_query_count(http, prometheus) > counted


async def test_adhoc_graphs_are_limited_per_user_and_in_flight(
    slack: SlackSandbox,
    http: aiohttp.ClientSession,
    database_dsn: str,
    redis_url: str,
    recorder: PrometheusRecorder,
    tmp_path: Path,
) -> None:
    # Alice and Bob may graph ad hoc (on call): what refuses them is the limits.
    roles = {**TEST_ROLES, "oncall": {"users": ["U0ALICE", "U0BOB", "U0CAROL"], "usergroups": []}}
    settings = bot_settings(
        slack,
        database_dsn,
        redis_url,
        playbooks_dir=with_test_roles(tmp_path / "pb", roles),
        prometheus_url=recorder.url,
        prometheus_timeout_seconds=60,
        graph_burst=2,
        graph_rate_per_minute=0.5,
        graph_max_in_flight=2,
    )
    async with running_bot(settings) as bot:
        driver = SlackDriver(slack, bot_url(bot) + "/slack/events", SIGNING_SECRET, http)
        await post_alert(http, bot, alert_group("NoPlaybookForThis", "limits", ""))
        channel = await new_incident_channel(slack, 0)
        await slack.wait_for(lambda s: any("No playbook matches" in t for t in texts(s, channel)))

        recorder.hold()
        for _ in range(2):
            accepted = await command(slack, driver, "U0ALICE", channel, f"graph '{GOOD}' 30m")
            assert accepted.text.startswith("Drawing")
        await recorder.wait_held(2)
        # Two graphs in flight (the global limit): another user is refused, nothing is sent.
        busy = await command(slack, driver, "U0BOB", channel, f"graph '{GOOD}' 30m")
        assert busy.response_type == "ephemeral"
        assert "2 ad hoc graphs are being drawn" in busy.text
        assert len(recorder.queries()) == 2

        recorder.release()
        await slack.wait_for(lambda s: len(files_in(s, channel)) == 2, timeout=20)
        # Alice used her burst of 2: refused with when to try again; nothing is sent.
        limited = await command(slack, driver, "U0ALICE", channel, f"graph '{GOOD}' 30m")
        assert limited.response_type == "ephemeral"
        assert "2 ad hoc graphs" in limited.text and "try again in" in limited.text
        assert len(recorder.queries()) == 2
        # Positive control: Bob has a bucket of his own, and a slot is free again.
        accepted = await command(slack, driver, "U0BOB", channel, f"graph '{GOOD}' 30m")
        assert accepted.text.startswith("Drawing")
        await slack.wait_for(lambda s: len(files_in(s, channel)) == 3, timeout=20)
        assert len(recorder.queries()) == 3


# --------------------------------------------------------------------------- alert expressions and links


async def test_alert_expressions_and_links_only_from_configured_hosts(
    slack: SlackSandbox,
    http: aiohttp.ClientSession,
    database_dsn: str,
    redis_url: str,
    recorder: PrometheusRecorder,
) -> None:
    settings = bot_settings(
        slack,
        database_dsn,
        redis_url,
        prometheus_url=recorder.url,
        alertmanager_hosts="am.example.com:9093",
    )
    async with running_bot(settings) as bot:
        # 1. An expression from a host that is no configured Prometheus: not queried, not linked.
        hostile = alert_group(
            "UnknownHostile",
            "hostile",
            expression_url("evil.example:9090", GOOD),
            externalURL="http://evil-am.example:9093",
        )
        status, _ = await post_alert(http, bot, hostile)
        assert status == 200
        evil = await new_incident_channel(slack, 0)
        note = await slack.wait_for(
            lambda s: next((t for t in texts(s, evil) if "not a configured Prometheus" in t), None)
        )
        assert "evil.example:9090" in note
        card_and_notices = texts(slack, evil) + texts(slack, notification_channel(slack).id)
        assert not any("<http://evil" in t for t in card_and_notices)
        assert files_in(slack, evil) == []
        assert recorder.queries() == []

        # 2. A configured Prometheus, but the costly expression: refused with the reason.
        costly = alert_group("UnknownCostly", "costly", expression_url(recorder.host, REPRO + " > 0"))
        await post_alert(http, bot, costly)
        expensive = await new_incident_channel(slack, 1)
        refused = await slack.wait_for(
            lambda s: next((t for t in texts(s, expensive) if "no metric name" in t), None)
        )
        assert "refused before it reached Prometheus" in refused
        assert files_in(slack, expensive) == []
        assert recorder.queries() == []

        # 3. Positive control: a configured host and an ordinary expression are graphed, over a
        # window clamped to the last 24 h although the alert says it started in 1970; both links
        # point at configured hosts.
        began = time.time()
        good = alert_group(
            "UnknownGood",
            "good",
            expression_url(recorder.host, GOOD + " == 0"),
            externalURL="http://am.example.com:9093",
        )
        await post_alert(http, bot, good)
        fine = await new_incident_channel(slack, 2)
        await slack.wait_for(lambda s: len(files_in(s, fine)) == 1, timeout=20)
        [query] = recorder.queries()
        assert query.params["query"] == GOOD
        assert float(query.params["start"]) >= began - DAY_S - 5
        card = "\n".join(texts(slack, fine))
        assert f"<{recorder.url}/graph?g0.expr=" in card
        assert "<http://am.example.com:9093|Alertmanager>" in card


# --------------------------------------------------------------------------- verification


def playbooks_with_roles(tmp: Path) -> Path:
    target = tmp / "playbooks"
    shutil.copytree(BUNDLED_PLAYBOOKS, target)
    policy: dict[str, Any] = copy.deepcopy(yaml.safe_load((target / "policy.yaml").read_text()))
    for role in ("oncall", "sre"):
        policy["roles"][role] = {"users": ["U0ALICE", "U0BOB"], "usergroups": []}
    (target / "policy.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))
    return target


async def run_and_verify(slack: SlackSandbox, driver: SlackDriver, channel: str, replicas: int) -> str:
    """Propose a scale ad hoc, approve it as another SRE; the verification note in its thread."""
    proposed = await command(
        slack, driver, "U0ALICE", channel, f"run scale api/search-api replicas={replicas}"
    )
    assert "Proposed" in proposed.text, proposed.text

    def proposal(s: SlackSandbox) -> Message | None:
        return next((m for m in s.messages(channel) if "approve_action" in json.dumps(m.blocks)), None)

    message = await slack.wait_for(proposal)
    resp = await driver.click("approve_action", user_id="U0BOB", channel_id=channel, message_ts=message.ts)
    assert resp.status == 200
    return await slack.wait_for(
        lambda s: next((m.text for m in s.thread(channel, message.ts) if "Verification" in m.text), None),
        timeout=30,
    )


@pytest.mark.parametrize("trusted", [False, True], ids=["other-host", "configured-host"])
async def test_verification_reruns_the_alert_expression_only_from_a_configured_host(
    trusted: bool,
    slack: SlackSandbox,
    http: aiohttp.ClientSession,
    database_dsn: str,
    redis_url: str,
    recorder: PrometheusRecorder,
    tmp_path: Path,
) -> None:
    kube = KubeSandbox(rollout_delay=0.05)
    kube.seed_demo()
    await kube.start()
    try:
        settings = bot_settings(
            slack,
            database_dsn,
            redis_url,
            prometheus_url=recorder.url,
            kubeconfig=str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
            playbooks_dir=playbooks_with_roles(tmp_path),
            remediation_verify_seconds=0,
        )
        expr = 'adhoc_gauge{service="nothing-here"} > 0'
        host = recorder.host if trusted else "evil.example:9090"
        async with running_bot(settings) as bot:
            driver = SlackDriver(slack, bot_url(bot) + "/slack/events", SIGNING_SECRET, http)
            body = alert_group("TestRemediationTarget", "api", expression_url(host, expr))
            await post_alert(http, bot, body)
            channel = await new_incident_channel(slack, 0)
            await slack.wait_for(lambda s: any("No playbook matches" in t for t in texts(s, channel)))
            note = await run_and_verify(slack, driver, channel, replicas=4)
        instant = [q for q in recorder.queries() if q.path == "/api/v1/query"]
        if trusted:
            assert "recovered" in note and "returns no samples" in note
            assert [q.params["query"] for q in instant] == [expr]
        else:
            assert "recovery not checked" in note and "not a configured Prometheus" in note
            assert recorder.queries() == []
    finally:
        await kube.stop()


# --------------------------------------------------------------------------- the client


@dataclass
class SlowPrometheus:
    """An API that never answers: records when each request came and when its client left."""

    arrived: list[float] = field(default_factory=list)
    left: list[float] = field(default_factory=list)
    params: list[Mapping[str, str]] = field(default_factory=list)
    gone: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        self.arrived.append(time.monotonic())
        self.params.append(dict(request.query))
        try:
            await asyncio.Event().wait()  # until the client goes away (the handler is cancelled)
        except asyncio.CancelledError:
            self.left.append(time.monotonic())
            self.gone.set()
            raise
        raise AssertionError("unreachable")


@pytest.fixture
async def slow() -> AsyncIterator[tuple[SlowPrometheus, str]]:
    state = SlowPrometheus()
    app = web.Application()
    app.router.add_route("*", "/api/v1/{tail:.*}", state.handle)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield state, f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def timed(call: Callable[[], Any]) -> float:
    began = time.monotonic()
    with pytest.raises(IntegrationError, match="timed out"):
        await call()
    return time.monotonic() - began


async def test_the_client_gives_up_and_hangs_up_at_the_timeout(slow: tuple[SlowPrometheus, str]) -> None:
    state, url = slow
    client = PrometheusMetrics(url, timeout=1.0)
    try:
        began = time.monotonic()
        took = await timed(lambda: client.query_instant("up"))
        assert took < 1.6
        # The connection is closed at the timeout, so a real Prometheus cancels the query.
        async with asyncio.timeout(2):
            await state.gone.wait()
        assert state.left[0] - began < 1.6
        # ... and Prometheus was told to stop on its own before that.
        server_timeout = state.params[0]["timeout"]
        assert server_timeout.endswith("ms") and int(server_timeout[:-2]) <= 1000
    finally:
        client.close()


async def test_queued_calls_never_reach_prometheus_after_their_deadline(
    slow: tuple[SlowPrometheus, str],
) -> None:
    state, url = slow
    client = PrometheusMetrics(url, timeout=1.0)
    try:
        began = time.monotonic()
        # More calls than worker threads: the ones left waiting must not be sent late.
        took = await asyncio.gather(*(timed(lambda: client.query_instant("up")) for _ in range(40)))
        assert max(took) < 2.0
        assert state.arrived and all(t - began < 1.0 for t in state.arrived)
    finally:
        client.close()
