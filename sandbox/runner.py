"""`incidentbot sandbox`: the whole story on one machine, before any Slack app exists.

Starts throwaway PostgreSQL and Redis (unless DATABASE_URL/REDIS_URL are set), the sandbox
Slack server, and the bot wired to them on 127.0.0.1; fires sample alerts from the seed
systems and prints the Slack conversation as it happens. The web view (sandbox/webview.py)
shows the same workspace and the sandbox cluster in a browser, live.

``sandbox_stack`` starts all of it as one async context manager, shared by the CLI and the
end-to-end tests.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from bot.app import BotServer, build
from bot.config.settings import BUNDLED_PLAYBOOKS, Settings, sandbox_environment
from bot.core.catalog import CATALOG_FILE, Catalog
from bot.core.errors import ConfigError
from bot.obs import logs
from bot.tools.testalert import build_payload
from sandbox.alert_rules import ALERT_RULES, write_rules
from sandbox.docker import DockerSandbox
from sandbox.docker.demo import DOCKER_DEMO_ALERT, DOCKER_DEMO_PLAYBOOK, docker_demo, docker_host
from sandbox.kubernetes import KubeSandbox
from sandbox.kubernetes.app import write_kubeconfig
from sandbox.llm.demo import start_demo_model
from sandbox.metrics_exporter import SeedExporter
from sandbox.pagerduty import DEFAULT_API_TOKEN, DEFAULT_WEBHOOK_SECRET, PagerDutySandbox
from sandbox.services import (
    AlertmanagerServer,
    PostgresServer,
    PrometheusServer,
    RedisServer,
    ServiceError,
    free_port,
)
from sandbox.slack import SlackDriver, SlackSandbox
from sandbox.ssh import DEMO_HOST_ALERT, SSHD, Sshd, host_demo, hosts_yaml, running_sshd
from sandbox.textview import blocks_to_text
from sandbox.webview import DemoAlert, WebView

SANDBOX_TOKEN = "sandbox-alertmanager-token"
SANDBOX_SIGNING_SECRET = "sandbox-signing-secret"
DEFAULT_WEB_PORT = 8090
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
    "sre": {"users": ["U0ALICE", "U0BOB"], "usergroups": []},
    "oncall": {"users": [], "usergroups": ["S0SRE"]},
    "dba": {"users": ["U0CAROL"], "usergroups": []},
    "escalation": {"users": [], "usergroups": ["S0SRE"]},
}


# SkillForge's two clusters, each a sandbox cluster behind a context of the sandbox kubeconfig;
# alerts without a `cluster` label go to dev.
SANDBOX_CLUSTERS: dict[str, Any] = {
    "label": "cluster",
    "default": "skillforge-dev",
    "clusters": {
        "skillforge-dev": {"context": "skillforge-dev"},
        "skillforge-prod": {"context": "skillforge-prod"},
    },
}
# The same alert from both clusters: each proposal goes to its own cluster (prod: 2 approvals).
CLUSTER_DEMO: list[tuple[str, dict[str, str], str]] = [
    (
        "SkillForgeAPIErrorRate",
        {"namespace": "api", "deployment": "search-api", "severity": "critical", "cluster": cluster},
        f"search-api error rate above 1% in {cluster}",
    )
    for cluster in ("skillforge-dev", "skillforge-prod")
]


def sandbox_hosts(sshd: Sshd | None, docker: DockerSandbox) -> dict[str, Any]:
    """clusters.yaml `hosts`: OnQuota's compose project on the sandbox Docker engine; SkillMeat
    on the SSH host when sshd is installed, else its API container on the engine."""
    onquota = docker_host(docker, "onquota", "onquota", {"compose_project": "onquota"})
    if sshd is not None:
        return {**hosts_yaml(sshd), "onquota": onquota}
    return {
        "skillmeat": docker_host(docker, "skillmeat", "skillmeat", {"job": "skillmeat"}),
        "onquota": onquota,
    }


def sandbox_playbooks(base: Path, hosts: Mapping[str, Any] | None = None) -> Path:
    """The bundled playbooks with a policy whose roles name the sandbox users, the two sandbox
    clusters, the hosts given and the sandbox's OnQuota alert playbook (`sandbox.docker.demo`)."""
    target = base / "playbooks"
    shutil.copytree(BUNDLED_PLAYBOOKS, target)
    (target / "sandbox-onquota.yaml").write_text(
        yaml.safe_dump([DOCKER_DEMO_PLAYBOOK], sort_keys=False), encoding="utf-8"
    )
    catalog = {**SANDBOX_CLUSTERS, **({"hosts": dict(hosts)} if hosts else {})}
    (target / "clusters.yaml").write_text(yaml.safe_dump(catalog, sort_keys=False), encoding="utf-8")
    policy = yaml.safe_load((target / "policy.yaml").read_text(encoding="utf-8"))
    policy["roles"] = SANDBOX_ROLES
    (target / "policy.yaml").write_text(
        "# Sandbox policy: the bundled one with the sandbox users in its roles.\n"
        + yaml.safe_dump(policy, sort_keys=False),
        encoding="utf-8",
    )
    return target


def team_channels(playbooks: Path) -> list[str]:
    """The teams' notification channels of the service catalog: the sandbox workspace has them,
    as a real workspace would (the bot is a member)."""
    path = playbooks / CATALOG_FILE
    if not path.exists():
        return []
    catalog = Catalog.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    return sorted({team.channel for team in catalog.teams.values() if team.channel})


def notifications(slack: SlackSandbox) -> int:
    """Incident notifications posted so far in INCIDENT_CHANNEL and the teams' channels."""
    names = ["incident", *team_channels(BUNDLED_PLAYBOOKS)]
    return sum(len(slack.messages(c.id)) for n in names if (c := slack.channel_by_name(n)) is not None)


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


@dataclass
class SandboxStack:
    """Everything ``sandbox_stack`` started: the sandboxes, the bot and (maybe) the web view."""

    slack: SlackSandbox
    kube: KubeSandbox  # skillforge-dev, the default cluster (the web view shows it)
    pagerduty: PagerDutySandbox
    server: BotServer
    bot_url: str
    session: aiohttp.ClientSession
    webview: WebView | None = None
    web_url: str | None = None
    #: when each demo alert (index into DEMO_ALERTS) started firing, kept for its resolve
    started: dict[int, datetime] = field(default_factory=dict)
    #: every sandbox cluster by name (clusters.yaml), `kube` among them
    clusters: dict[str, KubeSandbox] = field(default_factory=dict)
    #: with metrics: the seed exporter Prometheus scrapes (its faults fire the alerts for real)
    exporter: SeedExporter | None = None
    prometheus_url: str | None = None
    alertmanager_url: str | None = None
    #: the SSH host (a real sshd with recording stand-ins), when sshd is installed
    sshd: Sshd | None = None
    #: the Docker engine (the fake Engine API) OnQuota's host points at
    docker: DockerSandbox | None = None

    async def fire(self, index: int, resolve: bool = False) -> int:
        """Fire (or resolve) ``DEMO_ALERTS[index]``; return the bot's HTTP status (200 when the
        sandbox has metrics: the exporter's fault is set and Prometheus fires the alert)."""
        alertname, labels, summary = DEMO_ALERTS[index]
        if self.exporter is not None:
            if resolve:
                self.exporter.recover(alertname)
            else:
                self.exporter.fail(alertname)
            return 200
        if resolve:
            started = self.started.pop(index, None) or datetime.now(UTC) - timedelta(minutes=3)
        else:
            started = self.started.setdefault(index, datetime.now(UTC) - timedelta(minutes=3))
        return await _fire(
            self.session, self.bot_url, alertname, labels, summary, started=started, resolve=resolve
        )


@asynccontextmanager
async def sandbox_stack(
    base: Path,
    *,
    port: int = 0,
    web_port: int | None = 0,
    env: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    say: Callable[[str], None] | None = None,
    metrics: bool = False,
) -> AsyncIterator[SandboxStack]:
    """Start Postgres/Redis (unless ``env`` names them), the sandbox Slack, Kubernetes (seeded)
    and PagerDuty, the bot on ``port`` and the web view on ``web_port`` (None: no web view;
    0: any free port), all on 127.0.0.1, with working files under ``base``.

    ``env`` holds sandbox_environment()-style settings (``database_url``, ``redis_url``, …);
    ``overrides`` are further bot settings applied last. ``metrics`` also starts the seed
    exporter, a real Prometheus scraping it with the seed alert rules and a real Alertmanager
    sending them to the bot: demo alerts then fire through Prometheus.
    """
    values_env = dict(env or {})
    note = say or (lambda _text: None)
    async with AsyncExitStack() as stack:
        if "database_url" not in values_env:
            note("sandbox: starting PostgreSQL …")
            pg = await asyncio.to_thread(PostgresServer.start, base)
            stack.callback(pg.stop)
            values_env["database_url"] = pg.dsn
        if "redis_url" not in values_env:
            note("sandbox: starting Redis …")
            rd = await asyncio.to_thread(RedisServer.start, base)
            stack.callback(rd.stop)
            values_env["redis_url"] = rd.url
        slack = SlackSandbox(incident_channel="incident")
        humans = [u.id for u in slack.users.values() if not u.is_bot]
        for name in team_channels(BUNDLED_PLAYBOOKS):
            slack.add_channel(name, members=humans, bot_member=True)
        await slack.start()
        stack.push_async_callback(slack.stop)
        clusters: dict[str, KubeSandbox] = {}
        for name in SANDBOX_CLUSTERS["clusters"]:
            clusters[name] = KubeSandbox()
            clusters[name].seed_demo()
            await clusters[name].start()
            stack.push_async_callback(clusters[name].stop)
        kube = clusters[SANDBOX_CLUSTERS["default"]]
        kubeconfig = write_kubeconfig(base / "kubeconfig", clusters, SANDBOX_CLUSTERS["default"])
        pagerduty = PagerDutySandbox()
        await stack.enter_async_context(pagerduty)
        sshd = _start_sshd(stack, base, note)
        docker = await _start_docker(stack, note)
        observed: dict[str, Any] = {}
        # The optional investigator, on a scripted fake model: `/incident investigate` works.
        observed["llm_base_url"] = await start_demo_model(stack)
        if metrics:
            port = port or free_port()  # Alertmanager must know the bot's address first
            observed = await _start_metrics(stack, base, f"http://127.0.0.1:{port}", note)
        values: dict[str, Any] = {
            "kubeconfig": str(kubeconfig),
            "playbooks_dir": sandbox_playbooks(base, sandbox_hosts(sshd, docker)),
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
            "llm_model": "sandbox-demo",
            **{k: v for k, v in observed.items() if k.endswith("_url")},
            **values_env,
            **(overrides or {}),
        }
        settings = Settings(**values)
        server = await build(settings)
        await server.start()
        stack.push_async_callback(server.stop)
        url = f"http://127.0.0.1:{server.port}"
        pagerduty.webhook_url = url + "/webhooks/pagerduty"
        session = await stack.enter_async_context(aiohttp.ClientSession())
        result = SandboxStack(
            slack=slack,
            kube=kube,
            pagerduty=pagerduty,
            server=server,
            bot_url=url,
            session=session,
            clusters=clusters,
            exporter=observed.get("exporter"),
            prometheus_url=observed.get("prometheus_url"),
            alertmanager_url=observed.get("alertmanager_url"),
            sshd=sshd,
            docker=docker,
        )
        if result.exporter is not None:
            cure = asyncio.create_task(_cure_on_rollout(result.exporter, clusters.values()))
            stack.push_async_callback(_cancel, cure)
        if web_port is not None:
            await _start_webview(stack, result, web_port)
        yield result


async def _start_docker(stack: AsyncExitStack, note: Callable[[str], None]) -> DockerSandbox:
    """The Docker host's engine (the fake Engine API: no Docker needed), OnQuota's compose project."""
    note("sandbox: starting a Docker engine (sandbox Engine API) …")
    return await stack.enter_async_context(DockerSandbox())


def _start_sshd(stack: AsyncExitStack, base: Path, note: Callable[[str], None]) -> Sshd | None:
    """The SSH host, when sshd is installed (optional: without openssh-server, no hosts)."""
    if not SSHD.exists():
        return None
    note("sandbox: starting an SSH host (sshd) …")
    return stack.enter_context(running_sshd(base / "sshd"))


async def _start_webview(stack: AsyncExitStack, result: SandboxStack, web_port: int) -> None:
    webview = WebView(
        result.slack,
        result.kube,
        result.bot_url,
        SANDBOX_SIGNING_SECRET,
        fire=result.fire,
        alerts=[
            DemoAlert(name=name, system=labels["namespace"], summary=summary)
            for name, labels, summary in DEMO_ALERTS
        ],
        pagerduty=result.pagerduty,
    )
    try:
        bound = await webview.start(web_port)
    except OSError as exc:
        raise ServiceError(
            f"web view: cannot listen on 127.0.0.1:{web_port} ({exc.strerror or exc}); "
            "choose another port with --web-port"
        ) from None
    stack.push_async_callback(webview.stop)
    result.webview = webview
    result.web_url = f"http://127.0.0.1:{bound}/"


async def _start_metrics(
    stack: AsyncExitStack, base: Path, bot_url: str, note: Callable[[str], None]
) -> dict[str, Any]:
    """The seed exporter (with ten minutes of healthy history), Alertmanager routing to the bot
    and Prometheus scraping the exporter with the seed alert rules."""
    exporter = SeedExporter()
    await exporter.start()
    stack.push_async_callback(exporter.stop)
    note("sandbox: starting Alertmanager and Prometheus …")
    alertmanager = await asyncio.to_thread(
        AlertmanagerServer.start, base, bot_url + "/webhooks/alertmanager", SANDBOX_TOKEN, group_wait="1s"
    )
    stack.callback(alertmanager.stop)
    rules = write_rules(base / "seed-rules.yml")
    prometheus = await asyncio.to_thread(
        PrometheusServer.start,
        base,
        [],
        "1s",
        [rules],
        jobs=exporter.scrape_jobs(),
        alertmanager_url=alertmanager.url,
        backfill=exporter.backfill(),
    )
    stack.callback(prometheus.stop)
    return {
        "exporter": exporter,
        "prometheus_url": prometheus.url,
        "alertmanager_url": alertmanager.url,
    }


def _rollouts(clusters: Iterable[KubeSandbox]) -> dict[tuple[int, str, str], tuple[Any, ...]]:
    """Each deployment's restart stamp and revision, per cluster (the demo clusters hold the same
    deployments): a restart or rollback changes them."""
    seen: dict[tuple[int, str, str], tuple[Any, ...]] = {}
    for index, kube in enumerate(clusters):
        for dep in kube.objects("deployments"):
            meta = dep.get("metadata") or {}
            template = ((dep.get("spec") or {}).get("template") or {}).get("metadata") or {}
            key = (index, str(meta.get("namespace", "")), str(meta.get("name", "")))
            seen[key] = (
                (template.get("annotations") or {}).get("kubectl.kubernetes.io/restartedAt"),
                (meta.get("annotations") or {}).get("deployment.kubernetes.io/revision"),
            )
    return seen


async def _cure_on_rollout(exporter: SeedExporter, clusters: Iterable[KubeSandbox]) -> None:
    """A restart or rollback of the deployment a fault lives in cures it: the metrics recover,
    so the bot's verification sees the recovery in Prometheus."""
    kubes = list(clusters)
    before = _rollouts(kubes)
    while True:
        changed = _moved_since(kubes, before)
        waiters = [asyncio.create_task(kube.wait_for(changed, timeout=30.0)) for kube in kubes]
        _done, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)  # a timeout just looks again
        now = _rollouts(kubes)
        moved = {(key[1], key[2]) for key, value in now.items() if before.get(key) != value}
        cured = [
            rule.alert for rule in ALERT_RULES if rule.cured_by in moved and rule.alert in exporter.failing
        ]
        if cured:
            exporter.recover(*cured)
        before = now


def _moved_since(
    kubes: list[KubeSandbox], before: dict[tuple[int, str, str], tuple[Any, ...]]
) -> Callable[[], bool]:
    return lambda: _rollouts(kubes) != before


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _sandbox(port: int, demo: bool, exit_after_demo: bool, web_port: int | None) -> None:
    env = sandbox_environment()
    logs.configure(env.get("log_format", "console"))
    with tempfile.TemporaryDirectory(prefix="incidentbot-sandbox-") as tmp:
        async with sandbox_stack(
            Path(tmp), port=port, web_port=web_port, env=env, say=lambda t: print(t, flush=True), metrics=True
        ) as sb:
            await _play(sb, demo, exit_after_demo)


async def _play(sb: SandboxStack, demo: bool, exit_after_demo: bool) -> None:
    slack, url = sb.slack, sb.bot_url
    print(f"sandbox: bot on {url} · sandbox Slack API on {slack.api_url}", flush=True)
    if sb.web_url is not None:
        print(f"sandbox: web view on {sb.web_url} (open it in a browser)", flush=True)
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
        for index, (alertname, labels, _summary) in enumerate(DEMO_ALERTS):
            print(f"\nsandbox: firing {alertname} ({labels['namespace']})", flush=True)
            await sb.fire(index)
        await slack.wait_for(
            lambda s: (
                len([c for c in s.channels.values() if c.name.startswith("inc-")]) >= len(DEMO_ALERTS)
                and notifications(s) >= len(DEMO_ALERTS)
            ),
            timeout=60,
        )
        alertname, _labels, _summary = DEMO_ALERTS[0]
        print(f"\nsandbox: resolving {alertname}", flush=True)
        await sb.fire(0, resolve=True)
        await slack.wait_for(
            lambda s: any("have resolved" in m.text for c in s.channels.values() for m in c.messages),
            timeout=30,
        )
        await _cluster_demo(sb)
        if sb.sshd is not None:
            await play_host_demo(sb)
        await play_docker_demo(sb)
    if exit_after_demo:
        stop.set()
    await stop.wait()
    follower.cancel()
    await asyncio.gather(follower, return_exceptions=True)
    printer.print_changes()
    print("\nsandbox: stopping", flush=True)


async def _cluster_demo(sb: SandboxStack) -> None:
    """The same alert from skillforge-dev and skillforge-prod: each is previewed (dry run) on its
    own cluster only."""
    for alertname, labels, summary in CLUSTER_DEMO:
        print(f"\nsandbox: firing {alertname} from cluster {labels['cluster']}", flush=True)
        started = datetime.now(UTC) - timedelta(minutes=1)
        await _fire(sb.session, sb.bot_url, alertname, labels, summary, started=started)
    for name, kube in sb.clusters.items():
        await kube.wait_for(_previewed_undo(kube), timeout=30)
        print(f"sandbox: the {name} proposal was previewed on {name}", flush=True)


async def play_host_demo(sb: SandboxStack) -> str:
    """A SkillMeat alert: the playbook proposes restarting skillmeat-api over SSH; @bob approves,
    it runs once and is verified. Returns the verification."""
    alertname, labels = DEMO_HOST_ALERT
    print(f"\nsandbox: firing {alertname} from SkillMeat (a systemd host, over SSH)", flush=True)
    started = datetime.now(UTC) - timedelta(minutes=1)

    def fire() -> Awaitable[int]:
        return _fire(
            sb.session, sb.bot_url, alertname, labels, "SkillMeat 5xx rate above 0.1/s", started=started
        )

    driver = SlackDriver(sb.slack, sb.bot_url + "/slack/events", SANDBOX_SIGNING_SECRET, sb.session)
    verification = await host_demo(sb.slack, driver, fire, approver="U0BOB")
    print(f"sandbox: restarted skillmeat-api over SSH; {verification}", flush=True)
    return verification


async def play_docker_demo(sb: SandboxStack) -> str:
    """An OnQuota alert: its playbook proposes the backend restart on the Docker host; @alice
    and @bob approve (two approvals there), it runs once through the Engine API and is verified."""
    alertname, labels = DOCKER_DEMO_ALERT
    print(f"\nsandbox: firing {alertname} from OnQuota (a Docker Compose host, Engine API)", flush=True)
    started = datetime.now(UTC) - timedelta(minutes=1)

    def fire() -> Awaitable[int]:
        return _fire(sb.session, sb.bot_url, alertname, labels, "OnQuota backend down", started=started)

    driver = SlackDriver(sb.slack, sb.bot_url + "/slack/events", SANDBOX_SIGNING_SECRET, sb.session)
    verification = await docker_demo(sb.slack, driver, fire, approvers=("U0ALICE", "U0BOB"))
    print(f"sandbox: restarted OnQuota's backend through the Docker Engine API; {verification}", flush=True)
    return verification


def _previewed_undo(kube: KubeSandbox) -> Callable[[], bool]:
    """Whether the rollback the SkillForge playbook proposes was dry-run on `kube`."""
    return lambda: any(
        r.param("dryRun") is not None and r.path.endswith("/deployments/search-api") for r in kube.requests
    )


def run_sandbox(
    *, port: int, demo: bool, exit_after_demo: bool, web_port: int | None = DEFAULT_WEB_PORT
) -> int:
    """``incidentbot sandbox``; ``web_port`` None runs without the web view."""
    try:
        asyncio.run(_sandbox(port, demo, exit_after_demo, web_port))
    except ServiceError as exc:
        raise ConfigError(str(exc)) from None
    return 0
