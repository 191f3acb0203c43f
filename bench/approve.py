"""Approval benchmark: click on the last approval -> first mutating Kubernetes request.

    .venv/bin/python bench/approve.py             # 50 measured runs (+3 warm-up), updates bench/RESULTS.md
    .venv/bin/python bench/approve.py --runs 10 --no-write

What runs where: PostgreSQL and Redis are separate processes (sandbox/services.py, in a temp
dir); the bot, the sandbox Slack, the sandbox Kubernetes apiserver and the clicking client
share this process's event loop, so the click's send time and the apiserver's arrival time
come from the same clock (time.perf_counter).

Each run: the bot proposes `scale api/search-api` (6 <-> 7 replicas; server-side dry run,
message posted), then the measured part: a signed `block_actions` request for the proposal's
`approve_action` button is POSTed to /slack/events -> Bolt verifies the signature and acks ->
the engine reloads the run by its token, re-checks the approver, records the approval under
a row lock, claims the run by compare-and-set, re-checks (kill switch, expiry, policy,
cooldown) -> the adapter re-reads the deployment (GET, precondition) -> PATCH
deployments/scale. Measured: click sent -> that PATCH received by the apiserver. The next run
starts after the previous one is verified, so runs do not overlap.

Then the concurrency check: 50 signed approvals of one run sent at once -> PATCH count.

The section written into RESULTS.md sits between markers and replaces only itself, so the
ingest benchmark's sections (bench/ingest.py) are kept.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import logging
import math
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import yaml

from bot.app import BotServer, build
from bot.config.playbooks import DEFAULT_PLAYBOOKS_DIR
from bot.config.settings import Settings
from bot.core.actions import ActionName, ScaleParams
from bot.core.incident import Incident
from bot.core.runs import ActionRun, RunStatus
from bot.flows.remediation.propose import Request
from bot.obs import logs
from sandbox.kubernetes import KubeSandbox, RecordedRequest
from sandbox.services import PostgresServer, RedisServer
from sandbox.slack import SlackDriver, SlackSandbox

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sections import markers, write_section

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_MD = BENCH_DIR / "RESULTS.md"
START, END = markers("approve.py")
TOKEN = "bench-alertmanager-token"
SIGNING_SECRET = "bench-signing-secret-0123456789"
SCALE_PATH = "/apis/apps/v1/namespaces/api/deployments/search-api/scale"
TARGET_P95_S = 0.300
CONCURRENT = 50
RATE_SCALE = 20.0  # time-compressed Slack limits (sandbox and bot agree), as bench/ingest.py does

log = logging.getLogger("bench.approve")


class TimedRequests(list[RecordedRequest]):
    """The sandbox apiserver's request log, with the arrival time of each request."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def append(self, item: RecordedRequest) -> None:
        self.times.append(time.perf_counter())
        super().append(item)


def pct(values: list[float], p: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


def ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.1f} ms"


def policy() -> dict[str, Any]:
    bundled = yaml.safe_load((DEFAULT_PLAYBOOKS_DIR / "policy.yaml").read_text())
    data = copy.deepcopy(bundled)
    data["roles"] = {"sre": {"users": ["U0ALICE", "U0BOB"], "usergroups": []}}
    data["approvals"] = {
        "default": {"requesters": ["sre"], "approvers": ["sre"], "namespaces_allow": ["api"]},
        "scale": {
            "requesters": ["sre"],
            "approvers": ["sre"],
            "namespaces_allow": ["api"],
            "max_replicas": 20,
            "max_scale_step": 20,
            "cooldown_minutes": 0,
        },
    }
    data["kill_switch"] = False
    return data


@dataclass
class Figures:
    latencies: list[float] = field(default_factory=list)
    acks: list[float] = field(default_factory=list)
    concurrent_patches: int = -1
    concurrent_ok: int = 0
    concurrent_claims: int = -1


@asynccontextmanager
async def services(base: Path) -> AsyncIterator[tuple[str, str]]:
    pg = PostgresServer.start(base)
    redis = RedisServer.start(base)
    try:
        yield pg.create_database("bench_approve"), redis.url
    finally:
        redis.stop()
        pg.stop()


def click_body(slack: SlackSandbox, run: ActionRun, user: str) -> bytes:
    body = {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": slack.team_id},
        "api_app_id": slack.app_id,
        "token": "sandbox-verification-token",
        "container": {"type": "message", "message_ts": run.message_ts, "channel_id": run.channel_id},
        "trigger_id": slack.issue_trigger_id(user),
        "team": {"id": slack.team_id, "domain": slack.team_domain},
        "channel": {"id": run.channel_id, "name": "inc"},
        "response_url": slack.new_response_url(
            "block_actions", user_id=user, channel_id=run.channel_id, message_ts=run.message_ts
        ),
        "actions": [
            {
                "action_id": "approve_action",
                "block_id": f"run-{run.id}",
                "value": run.token,
                "type": "button",
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
    return urlencode({"payload": json.dumps(body)}).encode()


def mutating(kube: KubeSandbox, since: int) -> list[int]:
    """Indexes (from `since`) of PATCHes of the scale subresource that are not dry runs."""
    return [
        i
        for i in range(since, len(kube.requests))
        if kube.requests[i].method == "PATCH"
        and kube.requests[i].path == SCALE_PATH
        and kube.requests[i].param("dryRun") is None
    ]


async def open_incident(http: aiohttp.ClientSession, bot: BotServer, slack: SlackSandbox) -> Incident:
    labels = {"alertname": "BenchApprove", "namespace": "api", "severity": "warning"}
    alert = {
        "status": "firing",
        "labels": labels,
        "annotations": {"summary": "approval benchmark"},
        "startsAt": "2026-11-22T16:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
        "fingerprint": "b" * 16,
    }
    body = {
        "receiver": "incidentbot",
        "status": "firing",
        "alerts": [alert],
        "groupLabels": {"alertname": "BenchApprove"},
        "commonLabels": labels,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "version": "4",
        "groupKey": '{}:{alertname="BenchApprove"}',
        "truncatedAlerts": 0,
    }
    url = f"http://127.0.0.1:{bot.port}/webhooks/alertmanager"
    async with http.post(url, json=body, headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
        assert resp.status == 200, await resp.text()
    channel = await slack.wait_for(lambda s: s.find_channel("inc-"), timeout=30)
    await slack.wait_for(lambda s: s.messages(channel.id), timeout=30)
    incident = await bot.parts.store.incident_by_channel(channel.id)
    assert incident is not None
    return incident


async def propose(bot: BotServer, incident: Incident, replicas: int) -> ActionRun:
    params = ScaleParams(namespace="api", deployment="search-api", replicas=replicas)
    run = await bot.parts.flows.proposer.propose(
        incident, ActionName.SCALE, params, Request(requested_by="U0ALICE")
    )
    assert run is not None
    stored = await bot.parts.remediation_store.get(run.id)
    assert stored is not None and stored.message_ts is not None
    return stored


async def measure(args: argparse.Namespace, dsn: str, redis_url: str, figures: Figures, tmp: Path) -> None:
    playbooks = tmp / "playbooks"
    shutil.copytree(DEFAULT_PLAYBOOKS_DIR, playbooks)
    (playbooks / "policy.yaml").write_text(yaml.safe_dump(policy(), sort_keys=False))
    async with (
        SlackSandbox(incident_channel="incident", rate_scale=RATE_SCALE) as slack,
        KubeSandbox(rollout_delay=0.05) as kube,
        aiohttp.ClientSession() as http,
    ):
        kube.seed_demo()
        kube.requests = TimedRequests()
        settings = Settings(
            slack_bot_token=slack.bot_token,
            slack_signing_secret=SIGNING_SECRET,
            slack_api_url=slack.api_url,
            incident_channel="incident",
            database_url=dsn,
            redis_url=redis_url,
            alertmanager_webhook_token=TOKEN,
            http_host="127.0.0.1",
            http_port=0,
            log_format="console",
            slack_rate_scale=RATE_SCALE,
            kubeconfig=str(kube.write_kubeconfig(tmp / "kubeconfig")),
            playbooks_dir=playbooks,
            remediation_verify_seconds=0,
        )
        bot = await build(settings)
        await bot.start()
        try:
            driver = SlackDriver(slack, f"http://127.0.0.1:{bot.port}/slack/events", SIGNING_SECRET, http)
            store = bot.parts.remediation_store
            incident = await open_incident(http, bot, slack)
            replicas = 6
            for i in range(args.warmup + args.runs):
                replicas = 7 if replicas == 6 else 6
                run = await propose(bot, incident, replicas)
                body = click_body(slack, run, "U0BOB")
                since = len(kube.requests)
                sent = time.perf_counter()
                resp = await driver.post(body, "application/x-www-form-urlencoded")
                acked = time.perf_counter()
                assert resp.status == 200, resp.body
                await kube.wait_for(lambda since=since: bool(mutating(kube, since)), timeout=10)
                arrived = kube.requests.times[mutating(kube, since)[0]]
                if i >= args.warmup:
                    figures.latencies.append(arrived - sent)
                    figures.acks.append(acked - sent)
                # The next run starts once this one is verified (no overlap).
                await slack.wait_for(
                    lambda s, run=run: any(
                        "Verification" in m.text for m in s.thread(run.channel_id or "", run.message_ts or "")
                    ),
                    timeout=30,
                )
                done = await store.get(run.id)
                assert done is not None and done.status is RunStatus.SUCCEEDED, done

            # 50 approvals of one run at once (three approvers, double clicks included).
            replicas = 7 if replicas == 6 else 6
            run = await propose(bot, incident, replicas)
            since = len(kube.requests)
            bodies = [click_body(slack, run, ("U0BOB", "U0ALICE")[i % 2]) for i in range(CONCURRENT)]
            # U0ALICE requested it: her clicks are refused; U0BOB's first one counts.
            responses = await asyncio.gather(
                *(driver.post(b, "application/x-www-form-urlencoded") for b in bodies)
            )
            figures.concurrent_ok = sum(r.status == 200 for r in responses)
            await slack.wait_for(
                lambda s: any(
                    "Verification" in m.text for m in s.thread(run.channel_id or "", run.message_ts or "")
                ),
                timeout=30,
            )
            figures.concurrent_patches = len(mutating(kube, since))
            audit = await store.audit_entries(run_id=run.id)
            figures.concurrent_claims = sum(1 for e in audit if e.event.value == "claimed")
        finally:
            await bot.stop()


def machine() -> str:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"nproc {os.cpu_count()} ({cpu or 'unknown CPU'}); Python {platform.python_version()}; {platform.system()} {platform.release()}"


def section(figures: Figures, args: argparse.Namespace, command: str, elapsed: float) -> str:
    lat, ack = figures.latencies, figures.acks
    p95 = pct(lat, 95)
    ok = p95 < TARGET_P95_S
    once = figures.concurrent_patches == 1 and figures.concurrent_claims == 1
    lines = [
        START,
        "# Approval benchmark results",
        "",
        f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- Machine: {machine()}",
        f"- Command: `{command}` ({elapsed:.0f} s wall time)",
        "",
        "| Target | Goal | Measured | Result |",
        "| --- | --- | --- | --- |",
        f"| click on the last approval -> Kubernetes request sent, p95 | < 300 ms | {ms(p95)}"
        f" (p50 {ms(pct(lat, 50))}, max {ms(max(lat) if lat else math.nan)}; {len(lat)} runs)"
        f" | **{'PASS' if ok else 'FAIL'}** |",
        f"| {CONCURRENT} simultaneous approvals of one run | 0 double executions | "
        f"{figures.concurrent_patches} PATCH, {figures.concurrent_claims} claim"
        f" ({figures.concurrent_ok}/{CONCURRENT} requests answered 200) | **{'PASS' if once else 'FAIL'}** |",
        "",
        f"Signed `block_actions` POST to `/slack/events` -> first non-dry-run `PATCH {SCALE_PATH}` received by the"
        " sandbox apiserver (same process and clock). In between: Bolt signature check and ack, reload by"
        " token, approver re-check, approval under a row lock, compare-and-set claim, execution re-checks,"
        " the adapter's GET of the deployment (precondition: unchanged since the preview), the PATCH."
        f" Bolt's ack (HTTP 200 to the click): p50 {ms(pct(ack, 50))}, p95 {ms(pct(ack, 95))}."
        f" {args.warmup} warm-up runs not counted; runs do not overlap (each waits for the previous"
        " verification). The concurrent check sends the signed clicks of two users at once (the requester's"
        " own are refused) and counts mutating PATCH requests and `claimed` audit entries.",
        "",
        "| percentile | click -> PATCH | click -> ack |",
        "| --- | --- | --- |",
        *(f"| p{p} | {ms(pct(lat, p))} | {ms(pct(ack, p))} |" for p in (50, 90, 95, 99)),
        END,
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50, help="measured runs (default 50)")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up runs, not measured (default 3)")
    parser.add_argument("--results", type=Path, default=RESULTS_MD, help="markdown file to update")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    command = ".venv/bin/python bench/approve.py" + (" " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "")
    logs.configure("console", logging.WARNING)
    started = time.monotonic()
    figures = Figures()
    base = Path(tempfile.mkdtemp(prefix="incidentbot-bench-approve-"))
    try:

        async def run() -> None:
            async with asyncio.timeout(60 + 10 * (args.runs + args.warmup)):
                async with services(base) as (dsn, redis_url):
                    await measure(args, dsn, redis_url, figures, base)

        asyncio.run(run())
    finally:
        shutil.rmtree(base, ignore_errors=True)
    text = section(figures, args, command, time.monotonic() - started)
    print(text)
    if not args.no_write:
        write_section(args.results, "approve.py", text)
        print(f"updated {args.results}")
    once = figures.concurrent_patches == 1 and figures.concurrent_claims == 1
    return 0 if pct(figures.latencies, 95) < TARGET_P95_S and once else 1


if __name__ == "__main__":
    sys.exit(main())
