"""Ingest benchmark: durable webhook intake, an alert storm against rate-limited Slack, and
time-to-first-message, all against real PostgreSQL/Redis and the sandbox Slack on 127.0.0.1.

    .venv/bin/python bench/ingest.py            # full run (~4-5 min), refreshes bench/RESULTS.md
    .venv/bin/python bench/ingest.py --quick    # smoke test (< 1 min), writes no markdown
    .venv/bin/python bench/ingest.py --real-rates   # storm at Slack's real rates (S=1, ~8-10 min storm)

The bot is started as `incidentbot run` starts it, including bot.obs.runtime.tune_gc() (start-up
objects frozen out of the garbage collector). `--what-if` adds an extra ingest run for
comparison; it is off by default.

What runs where: PostgreSQL and Redis are separate processes (sandbox/services.py, in a temp
dir); the bot, the sandbox Slack and the bare baseline handler run in this process's event
loop; the HTTP load of phases 1-3 comes from bench/loadgen.py in a child process, so client
and server do not share an event loop. Phase 4 sends one request at a time from this process
so that send times and the sandbox's recorded call times come from the same clock.

Every loop is bounded by a count and a deadline; only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import math
import os
import platform
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web

from bot.app import BotServer, build
from bot.clients.slack import METHOD_TIERS as BOT_METHOD_TIERS
from bot.config.settings import Settings
from bot.obs import logs
from bot.obs.runtime import tune_gc
from sandbox.services import PostgresServer, RedisServer
from sandbox.slack import RecordedCall, SlackSandbox

sys.path.insert(0, str(Path(__file__).resolve().parent))
import payloads
from sections import write_section

BENCH_DIR = Path(__file__).resolve().parent
LOADGEN = BENCH_DIR / "loadgen.py"
RESULTS_MD = BENCH_DIR / "RESULTS.md"
TOKEN = "bench-alertmanager-token"
SIGNING_SECRET = "bench-signing-secret-0123456789"
INCIDENT_CHANNEL = "incident"
POLL_S = 0.2  # DB polling interval (>= 100 ms)

# The bot's own conversations.create budget (calls per minute, burst), for the storm's floor.
BOT_TIER2_PER_MIN, BOT_TIER2_BURST = BOT_METHOD_TIERS.get("conversations.create", (20.0, 20))

log = logging.getLogger("bench")


ALL_PHASES = ("ingest", "storm", "latency")


@dataclass(frozen=True)
class Plan:
    name: str
    scale: float
    concurrency: int
    ingest_requests: int
    ingest_groups: int
    warmup_requests: int
    warmup_groups: int
    rounds: int
    ingest_scale: float
    storm_groups: int
    storm_rounds: int
    storm_step: int
    probes: int
    probe_spacing_s: float
    storm_deadline_s: float
    total_deadline_s: float
    gc_freeze: bool = False
    phases: tuple[str, ...] = ALL_PHASES


def make_plan(args: argparse.Namespace) -> Plan:
    plan = _make_plan(args)
    phases = tuple(p for p in ALL_PHASES if p in args.phases.split(","))
    if args.what_if and not args.quick and not args.gc_freeze and "ingest" in phases:
        phases += ("whatif",)
    name = plan.name + ("+gc-freeze" if args.gc_freeze else "")
    if tuple(p for p in phases if p != "whatif") != ALL_PHASES:
        name += f" ({','.join(phases)} only)"
    return replace(plan, gc_freeze=bool(args.gc_freeze), phases=phases, name=name)


def _make_plan(args: argparse.Namespace) -> Plan:
    scale = 1.0 if args.real_rates else float(args.scale)
    if args.quick:
        return Plan(
            name="quick",
            scale=scale,
            concurrency=32,
            ingest_requests=400,
            ingest_groups=40,
            warmup_requests=64,
            warmup_groups=8,
            rounds=1,
            ingest_scale=100.0,
            storm_groups=20,
            storm_rounds=10,
            storm_step=10,
            probes=6,
            probe_spacing_s=1.0,
            storm_deadline_s=60.0 if scale >= 10 else 600.0,
            total_deadline_s=180.0 if scale >= 10 else 900.0,
        )
    return Plan(
        name="real-rates" if args.real_rates else "full",
        scale=scale,
        concurrency=32,
        ingest_requests=2000,
        ingest_groups=200,
        warmup_requests=100,
        warmup_groups=10,
        rounds=args.rounds,
        ingest_scale=100.0,
        storm_groups=100,
        storm_rounds=10,
        storm_step=10,
        probes=50,
        # Tier 2 (conversations.create, setTopic) refills one call every 3 s at real rates:
        # one new incident every 3.1 s is the fastest *sustained* rate that Slack itself allows.
        probe_spacing_s=3.1,
        storm_deadline_s=240.0 if scale >= 10 else 1200.0,
        total_deadline_s=900.0 if scale >= 10 else 2100.0,
    )


# --------------------------------------------------------------------------------------------
# small helpers


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); NaN for an empty list."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.1f} ms"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


@dataclass
class Check:
    name: str
    target: str
    measured: str
    ok: bool


@dataclass
class Report:
    plan: Plan
    started: datetime
    figures: dict[str, Any] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def check(self, name: str, target: str, measured: str, ok: bool) -> None:
        self.checks.append(Check(name, target, measured, ok))


def bot_settings(slack: SlackSandbox, dsn: str, redis_url: str, scale: float) -> Settings:
    return Settings(
        slack_bot_token=slack.bot_token,
        slack_signing_secret=SIGNING_SECRET,
        slack_api_url=slack.api_url,
        incident_channel=INCIDENT_CHANNEL,
        database_url=dsn,
        redis_url=redis_url,
        alertmanager_webhook_token=TOKEN,
        http_host="127.0.0.1",
        http_port=0,
        log_format="console",
        slack_rate_scale=scale,
    )


@asynccontextmanager
async def bot_and_slack(
    dsn: str, redis_url: str, scale: float, *, gc_freeze: bool = False
) -> AsyncIterator[tuple[BotServer, SlackSandbox]]:
    slack = SlackSandbox(incident_channel=INCIDENT_CHANNEL, rate_limits=True, rate_scale=scale)
    await slack.start()
    try:
        server = await build(bot_settings(slack, dsn, redis_url, scale))
        await server.start()
        thresholds = gc.get_threshold()
        tune_gc()  # as `incidentbot run` does after start-up
        if gc_freeze:
            gc.collect()
            gc.freeze()
        try:
            yield server, slack
        finally:
            await server.stop()
            gc.unfreeze()
            gc.set_threshold(*thresholds)
    finally:
        await slack.stop()


async def run_loadgen(spec: dict[str, Any], workdir: Path, tag: str) -> dict[str, Any]:
    """Run bench/loadgen.py in a child process (bounded by the spec's deadline + a margin)."""
    spec_path = workdir / f"{tag}.spec.json"
    out_path = workdir / f"{tag}.result.json"
    spec_path.write_text(json.dumps(spec))
    proc = await asyncio.create_subprocess_exec(sys.executable, str(LOADGEN), str(spec_path), str(out_path))
    try:
        async with asyncio.timeout(float(spec["deadline_s"]) + 60):
            code = await proc.wait()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise RuntimeError(f"load generator {tag} did not finish in time") from None
    if code != 0:
        raise RuntimeError(f"load generator {tag} exited with {code}")
    result: dict[str, Any] = json.loads(out_path.read_text())
    return result


def load_stats(result: dict[str, Any]) -> dict[str, Any]:
    ok = [lat for lat, st in zip(result["latencies"], result["statuses"], strict=True) if st == 200]
    statuses = Counter(result["statuses"])
    return {
        "requests": result["sent"],
        "ok": len(ok),
        "statuses": dict(statuses),
        "p50": pct(ok, 50),
        "p95": pct(ok, 95),
        "p99": pct(ok, 99),
        "max": max(ok) if ok else math.nan,
        "elapsed_s": result["elapsed_s"],
        "rps": len(ok) / result["elapsed_s"] if result["elapsed_s"] > 0 else 0.0,
        "body_bytes": result["body_bytes_mean"],
        "errors": result["errors"],
    }


def pooled_stats(raws: list[dict[str, Any]]) -> dict[str, Any]:
    """Latency percentiles over every request of every round; throughput = OK requests / time under load."""
    ok: list[float] = []
    statuses: Counter[int] = Counter()
    elapsed = 0.0
    for raw in raws:
        ok += [lat for lat, st in zip(raw["latencies"], raw["statuses"], strict=True) if st == 200]
        statuses.update(raw["statuses"])
        elapsed += raw["elapsed_s"]
    return {
        "requests": sum(raw["sent"] for raw in raws),
        "ok": len(ok),
        "statuses": dict(statuses),
        "p50": pct(ok, 50),
        "p95": pct(ok, 95),
        "p99": pct(ok, 99),
        "max": max(ok) if ok else math.nan,
        "elapsed_s": elapsed,
        "rps": len(ok) / elapsed if elapsed > 0 else 0.0,
        "body_bytes": raws[0]["body_bytes_mean"] if raws else 0.0,
        "errors": [e for raw in raws for e in raw["errors"]][:5],
        "rounds": [load_stats(raw) for raw in raws],
    }


class LoopMonitor:
    """Event-loop stalls (a 1 ms sleep that wakes late) and garbage-collector pauses while active."""

    def __init__(self) -> None:
        self.stalls: list[float] = []
        self.gc_pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self._gc_start = 0.0
        self._task: asyncio.Task[None] | None = None

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter()
        else:
            self.gc_pauses[int(info["generation"])].append(time.perf_counter() - self._gc_start)

    async def _watch(self) -> None:
        for _ in range(10_000_000):  # bounded; cancelled by stop()
            t = time.perf_counter()
            await asyncio.sleep(0.001)
            self.stalls.append(time.perf_counter() - t - 0.001)

    def start(self) -> None:
        gc.callbacks.append(self._on_gc)
        self._task = asyncio.create_task(self._watch())

    async def stop(self) -> None:
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._on_gc)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def summary(self) -> dict[str, Any]:
        full = self.gc_pauses[2]
        return {
            "stall_max": max(self.stalls, default=0.0),
            "stall_p99": pct(self.stalls, 99),
            "stalls_over_20ms": sum(1 for x in self.stalls if x > 0.02),
            "gc_full": len(full),
            "gc_full_max": max(full, default=0.0),
            "gc_young_max": max(self.gc_pauses[0] + self.gc_pauses[1], default=0.0),
        }


async def wait_until(predicate: Any, deadline_s: float, interval: float = POLL_S) -> bool:
    """Poll an async predicate until true or the deadline; bounded by count and time."""
    end = time.monotonic() + deadline_s
    for _ in range(int(deadline_s / interval) + 2):
        if await predicate():
            return True
        if time.monotonic() >= end:
            return False
        await asyncio.sleep(interval)
    return bool(await predicate())


async def quiet(slack: SlackSandbox, quiet_s: float = 1.0, deadline_s: float = 15.0) -> None:
    """Wait until the sandbox has seen no Slack call for quiet_s (bounded)."""
    end = time.monotonic() + deadline_s
    seen = len(slack.calls)
    last_change = time.monotonic()
    for _ in range(int(deadline_s / 0.1) + 2):
        await asyncio.sleep(0.1)
        now = time.monotonic()
        if len(slack.calls) != seen:
            seen, last_change = len(slack.calls), now
        elif now - last_change >= quiet_s or now >= end:
            return


async def inbox_state(conn: asyncpg.Connection) -> tuple[int, int]:
    row = await conn.fetchrow(
        "SELECT count(*) AS total, count(*) FILTER (WHERE processed_at IS NOT NULL) AS done FROM webhook_inbox"
    )
    return int(row["total"]), int(row["done"])


async def published_count(conn: asyncpg.Connection) -> tuple[int, int]:
    row = await conn.fetchrow(
        "SELECT count(*) AS total, count(*) FILTER (WHERE version <= published_version"
        " AND channel_id IS NOT NULL AND card_ts IS NOT NULL AND notification_ts IS NOT NULL) AS done"
        " FROM incidents"
    )
    return int(row["total"]), int(row["done"])


# --------------------------------------------------------------------------------------------
# phase 1+2: bare handler vs durable ingest


async def start_baseline() -> tuple[web.AppRunner, str]:
    counter = 0

    async def accept(request: web.Request) -> web.Response:
        nonlocal counter
        await request.read()  # the body is on the wire anyway; read it like any handler must
        counter += 1
        return web.json_response({"status": "accepted", "id": counter})

    app = web.Application(client_max_size=4 * 1024 * 1024)
    app.router.add_post("/webhooks/alertmanager", accept)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = int(runner.addresses[0][1])
    return runner, f"http://127.0.0.1:{port}/webhooks/alertmanager"


async def measure_ingest(
    plan: Plan, dsn: str, redis_url: str, workdir: Path, *, gc_freeze: bool
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Interleaved rounds: bare handler, then the bot, with the same load. Before every
    measurement the bot is idle (all deliveries processed, all incidents published), so neither
    server pays for the other's background work."""
    deadline_s = 120.0
    runner, base_url = await start_baseline()
    base_raw: list[dict[str, Any]] = []
    ing_raw: list[dict[str, Any]] = []
    accepted_ids: set[int] = set()
    accepted = 0
    processed_s: list[float] = []
    published_s: list[float] = []
    monitors: dict[str, list[dict[str, Any]]] = {"baseline": [], "ingest": []}
    slack_calls = slack_429 = 0
    objects_tracked = 0
    try:
        async with bot_and_slack(dsn, redis_url, plan.ingest_scale, gc_freeze=gc_freeze) as (bot, slack):
            bot_url = f"http://127.0.0.1:{bot.port}/webhooks/alertmanager"
            conn = await asyncpg.connect(dsn)
            try:

                async def settled() -> bool:
                    total, done = await inbox_state(conn)
                    incidents, published = await published_count(conn)
                    return done >= total and published >= incidents

                settle_ok = True
                for r in range(plan.rounds):
                    bodies = {
                        "kind": "ingest",
                        "requests": plan.ingest_requests,
                        "groups": plan.ingest_groups,
                        "prefix": f"r{r}-ingest",
                    }
                    warmup = {
                        "kind": "ingest",
                        "requests": plan.warmup_requests,
                        "groups": plan.warmup_groups,
                        "prefix": f"r{r}-warmup",
                    }
                    for target, url in (("baseline", base_url), ("ingest", bot_url)):
                        settle_ok = await wait_until(settled, 90.0) and settle_ok
                        spec = {
                            "url": url,
                            "token": TOKEN,
                            "concurrency": plan.concurrency,
                            "deadline_s": deadline_s,
                            "bodies": bodies,
                            "warmup": warmup,
                        }
                        monitor = LoopMonitor()
                        monitor.start()
                        try:
                            raw = await run_loadgen(spec, workdir, f"{target}-{r}")
                        finally:
                            await monitor.stop()
                        monitors[target].append(monitor.summary())
                        if target == "baseline":
                            base_raw.append(raw)
                            continue
                        ing_raw.append(raw)

                        async def processed() -> bool:
                            total, done = await inbox_state(conn)
                            return done >= total

                        await wait_until(processed, 90.0, interval=0.1)
                        processed_s.append(time.time() - raw["wall_start"])
                        await wait_until(settled, 90.0)
                        published_s.append(time.time() - raw["wall_start"])
                        # Keep the sandbox's call log from growing the heap this process collects.
                        slack_calls += len(slack.calls)
                        slack_429 += sum(1 for c in slack.calls if c.status == 429)
                        slack.calls.clear()
                        warm = raw["warmup"] or {"statuses": [], "ids": []}
                        for ids, statuses in ((raw["ids"], raw["statuses"]), (warm["ids"], warm["statuses"])):
                            for i, st in zip(ids, statuses, strict=True):
                                if st == 200:
                                    accepted += 1
                                    if i:
                                        accepted_ids.add(i)
                t_end = time.monotonic()
                settle_ok = await wait_until(settled, 90.0) and settle_ok
                settle_s = time.monotonic() - t_end
                stored_ids = {r["id"] for r in await conn.fetch("SELECT id FROM webhook_inbox")}
                incidents, published = await published_count(conn)
                alerts = await conn.fetchval("SELECT count(*) FROM alerts")
                objects_tracked = len(gc.get_objects())
            finally:
                await conn.close()
            calls = slack_calls + len(slack.calls)
            ratelimited = slack_429 + sum(1 for c in slack.calls if c.status == 429)
    finally:
        await runner.cleanup()

    base = pooled_stats(base_raw)
    ing = pooled_stats(ing_raw)
    missing = len(accepted_ids - stored_ids)
    ratio = ing["p99"] / base["p99"] if base["p99"] > 0 else math.inf
    extra = {
        "rounds": plan.rounds,
        "accepted_incl_warmup": accepted,
        "stored_rows": len(stored_ids),
        "accepted_ids_missing_from_inbox": missing,
        "settled": settle_ok,
        "settle_after_last_round_s": settle_s,
        "processed_s": processed_s,
        "published_s": published_s,
        "deliveries_per_round": plan.ingest_requests + plan.warmup_requests,
        "monitor": monitors,
        "objects_tracked": objects_tracked,
        "gc_frozen": gc.get_freeze_count(),
        "incidents": incidents,
        "incidents_published": published,
        "alerts": alerts,
        "slack_calls": calls,
        "slack_429": ratelimited,
        "p99_ratio": ratio,
        "round_ratios": [
            i["p99"] / b["p99"] if b["p99"] > 0 else math.inf
            for b, i in zip(base["rounds"], ing["rounds"], strict=True)
        ],
    }
    return base, ing, extra


async def phase_ingest(plan: Plan, report: Report, dsn: str, redis_url: str, workdir: Path) -> None:
    base, ing, extra = await measure_ingest(plan, dsn, redis_url, workdir, gc_freeze=plan.gc_freeze)
    report.figures["baseline"], report.figures["ingest"], report.figures["ingest_extra"] = base, ing, extra
    ratio = extra["p99_ratio"]
    accepted, stored, missing = (
        extra["accepted_incl_warmup"],
        extra["stored_rows"],
        extra["accepted_ids_missing_from_inbox"],
    )
    report.check(
        "ingest p99 vs bare handler p99",
        "<= 5x",
        f"{ms(ing['p99'])} / {ms(base['p99'])} = {ratio:.2f}x",
        ratio <= 5.0,
    )
    report.check(
        "ingest throughput", ">= 1,000 webhooks/s", f"{ing['rps']:,.0f} webhooks/s", ing["rps"] >= 1000
    )
    report.check(
        "ingest: accepted webhooks stored in webhook_inbox",
        "0 lost",
        f"{accepted} accepted, {stored} rows, {missing} missing",
        missing == 0 and stored == accepted and ing["ok"] == plan.rounds * plan.ingest_requests,
    )


async def phase_whatif(plan: Plan, report: Report, dsn: str, redis_url: str, workdir: Path) -> None:
    """The ingest phase again with gc.collect() + gc.freeze() after the bot's start-up: the fix proposed
    for the full-collection pauses. Reported beside the real figures; no target is judged on it."""
    try:
        base, ing, extra = await measure_ingest(plan, dsn, redis_url, workdir, gc_freeze=True)
    finally:
        gc.unfreeze()
    report.figures["whatif"] = {"baseline": base, "ingest": ing, "extra": extra}


# --------------------------------------------------------------------------------------------
# phase 3: the storm


def _target(call: RecordedCall) -> tuple[str, str, str, str]:
    a = call.args
    return (call.method, str(a.get("channel", "")), str(a.get("name", "")), str(a.get("ts", "")))


def retried_429s(calls: list[RecordedCall]) -> tuple[int, int]:
    """(429s, 429s followed by a later successful call of the same method on the same target)."""
    later_ok: dict[tuple[str, str, str, str], float] = {}
    for c in calls:
        if c.status == 200:
            key = _target(c)
            later_ok[key] = max(later_ok.get(key, 0.0), c.time)
    limited = [c for c in calls if c.status == 429]
    retried = sum(1 for c in limited if later_ok.get(_target(c), -1.0) >= c.time)
    return len(limited), retried


async def phase_storm(plan: Plan, report: Report, dsn: str, redis_url: str, workdir: Path) -> None:
    groups, rounds, step = plan.storm_groups, plan.storm_rounds, plan.storm_step
    webhooks = groups * rounds
    distinct_alerts = groups * rounds * step
    async with bot_and_slack(dsn, redis_url, plan.scale, gc_freeze=plan.gc_freeze) as (bot, slack):
        url = f"http://127.0.0.1:{bot.port}/webhooks/alertmanager"
        calls_before = len(slack.calls)
        raw = await run_loadgen(
            {
                "url": url,
                "token": TOKEN,
                "concurrency": plan.concurrency,
                "deadline_s": 120.0,
                "bodies": {"kind": "storm", "groups": groups, "rounds": rounds, "step": step},
            },
            workdir,
            "storm",
        )
        load = load_stats(raw)
        first_webhook = min(s for s, st in zip(raw["starts"], raw["statuses"], strict=True) if st != 0)
        conn = await asyncpg.connect(dsn)
        try:

            async def drained() -> bool:
                total, done = await inbox_state(conn)
                if done < total:
                    return False
                incidents, published = await published_count(conn)
                return incidents >= groups and published >= incidents

            drained_ok = await wait_until(drained, plan.storm_deadline_s)
            await quiet(slack)
            incidents, published = await published_count(conn)
            alerts = int(await conn.fetchval("SELECT count(*) FROM alerts"))
            inbox_total, inbox_done = await inbox_state(conn)
            stored_ids = {r["id"] for r in await conn.fetch("SELECT id FROM webhook_inbox")}
            msg_rows = await conn.fetch("SELECT card_ts, notification_ts FROM incidents")
        finally:
            await conn.close()
        calls = slack.calls[calls_before:]
        channels = len(slack.channels_with_prefix("inc-"))
        incident_channel_id = slack.incident_channel.id if slack.incident_channel else ""

    accepted_ids = {i for i, s in zip(raw["ids"], raw["statuses"], strict=True) if s == 200 and i}
    by_method = Counter(c.method for c in calls)
    ok_by_method = Counter(c.method for c in calls if c.status == 200 and c.ok)
    limited, retried = retried_429s(calls)
    posts_incident_ch = sum(
        1 for c in calls if c.method == "chat.postMessage" and c.args.get("channel") == incident_channel_id
    )  # notifications plus anything else the bot posts to #incident
    # Opening = create + setTopic + the card + the notification (identified by the ts stored in the
    # DB); every other chat.postMessage is enrichment (playbook, graphs note) or an announcement.
    card_ts = {str(r["card_ts"]) for r in msg_rows if r["card_ts"]}
    note_ts = {str(r["notification_ts"]) for r in msg_rows if r["notification_ts"]}
    posts_ok = [c for c in calls if c.method == "chat.postMessage" and c.status == 200]
    card_times = [c.time for c in posts_ok if str(c.response.get("ts")) in card_ts]
    note_times = [c.time for c in posts_ok if str(c.response.get("ts")) in note_ts]
    opening = by_method["conversations.create"] + by_method["conversations.setTopic"]
    opening += len(card_times) + len(note_times)
    other_posts = by_method["chat.postMessage"] - len(card_times) - len(note_times)
    n = max(1, incidents)
    last_call = max((c.time for c in calls), default=first_webhook)
    drain = last_call - first_webhook
    opened = max(card_times + note_times, default=first_webhook) - first_webhook
    floor = max(0.0, groups - BOT_TIER2_BURST) / (BOT_TIER2_PER_MIN * plan.scale / 60)  # last create's slot
    report.figures["storm"] = {
        "groups": groups,
        "webhooks": webhooks,
        "distinct_alerts": distinct_alerts,
        "load": load,
        "incidents": incidents,
        "incidents_published": published,
        "drained": drained_ok,
        "channels_inc": channels,
        "alerts_stored": alerts,
        "inbox_rows": inbox_total,
        "inbox_processed": inbox_done,
        "accepted": len(accepted_ids),
        "accepted_missing": len(accepted_ids - stored_ids),
        "calls_total": len(calls),
        "calls_by_method": dict(sorted(by_method.items())),
        "ok_by_method": dict(sorted(ok_by_method.items())),
        "notifications_posted": posts_incident_ch,
        "opening_calls_per_incident": opening / n,
        "cards": len(card_times),
        "notifications": len(note_times),
        "other_posts_per_incident": other_posts / n,
        "opened_s": opened,
        "opened_real_equiv_s": opened * plan.scale,
        "total_calls_per_incident": len(calls) / n,
        "chat_update_per_incident": by_method["chat.update"] / n,
        "ratelimited_429": limited,
        "ratelimited_retried": retried,
        "drain_s": drain,
        "drain_real_equiv_s": drain * plan.scale,
        "create_floor_s": floor,
        "scale": plan.scale,
    }
    report.check(
        "storm: incidents", f"exactly {groups}", str(incidents), incidents == groups and published == groups
    )
    report.check("storm: channels inc-*", f"exactly {groups}", str(channels), channels == groups)
    report.check(
        "storm: alerts stored",
        f"{distinct_alerts:,} (0 lost)",
        f"{alerts:,}; webhooks {len(accepted_ids)}/{webhooks} accepted, all in inbox and processed",
        alerts == distinct_alerts
        and len(accepted_ids) == webhooks
        and not (accepted_ids - stored_ids)
        and inbox_done == inbox_total,
    )
    report.check(
        "storm: opening Slack calls per incident",
        "<= 6",
        f"{opening / n:.2f} (all calls {len(calls) / n:.2f} incl. chat.update and enrichment posts)",
        opening / n <= 6,
    )
    report.check("storm: every Slack 429 retried", "all", f"{retried}/{limited} retried", retried == limited)


# --------------------------------------------------------------------------------------------
# phase 4: first message latency


def _latencies(
    rows: list[Any], calls: list[Any], sent: dict[str, float], acked: dict[str, float]
) -> tuple[list[float], list[float], list[float], list[float], list[float]]:
    """Seconds from each probe's send to: its card, its notification, its channel, its topic,
    its 2xx."""
    post_time = {
        str(c.response.get("ts")): c.time for c in calls if c.method == "chat.postMessage" and c.status == 200
    }
    create_time = {
        str(c.response["channel"]["id"]): c.time
        for c in calls
        if c.method == "conversations.create" and c.ok and "channel" in c.response
    }
    topic_time: dict[str, float] = {}
    for c in calls:
        if c.method == "conversations.setTopic" and c.ok:
            topic_time.setdefault(str(c.args.get("channel")), c.time)
    first_msg: list[float] = []
    notify: list[float] = []
    create: list[float] = []
    topic: list[float] = []
    ack: list[float] = []
    for r in rows:
        t0 = sent.get(r["group_key"])
        if t0 is None:
            continue
        ack.append(acked[r["group_key"]] - t0)
        if r["channel_id"] in create_time:
            create.append(create_time[r["channel_id"]] - t0)
        if r["channel_id"] in topic_time:
            topic.append(topic_time[r["channel_id"]] - t0)
        if r["card_ts"] in post_time:
            first_msg.append(post_time[r["card_ts"]] - t0)
        if r["notification_ts"] in post_time:
            notify.append(post_time[r["notification_ts"]] - t0)
    return first_msg, notify, create, topic, ack


async def phase_latency(plan: Plan, report: Report, dsn: str, redis_url: str) -> None:
    sent: dict[str, float] = {}
    acked: dict[str, float] = {}
    async with bot_and_slack(dsn, redis_url, 1.0, gc_freeze=plan.gc_freeze) as (bot, slack):
        url = f"http://127.0.0.1:{bot.port}/webhooks/alertmanager"
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        start = time.monotonic()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            for i in range(plan.probes):
                body = payloads.probe_body(i)
                key = json.loads(body)["groupKey"]
                # open loop: the i-th incident goes out at start + i * spacing
                delay = start + i * plan.probe_spacing_s - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                t_send = time.time()
                async with http.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    if resp.status == 200:
                        sent[key] = t_send
                        acked[key] = time.time()
        conn = await asyncpg.connect(dsn)
        try:

            async def published() -> bool:
                total, done = await published_count(conn)
                return total >= len(sent) and done >= total

            all_ok = await wait_until(published, 30.0)
            rows = await conn.fetch("SELECT group_key, channel_id, card_ts, notification_ts FROM incidents")
        finally:
            await conn.close()
        calls = list(slack.calls)

    first_msg, notify, create, topic, ack = _latencies(rows, calls, sent, acked)
    limited = sum(1 for c in calls if c.status == 429)
    report.figures["latency"] = {
        "probes": plan.probes,
        "spacing_s": plan.probe_spacing_s,
        "measured": len(first_msg),
        "all_published": all_ok,
        "ack": (pct(ack, 50), pct(ack, 95)),
        "create": (pct(create, 50), pct(create, 95)),
        "topic": (pct(topic, 50), pct(topic, 95)),
        "first_message": (pct(first_msg, 50), pct(first_msg, 95), max(first_msg, default=math.nan)),
        "notification": (pct(notify, 50), pct(notify, 95)),
        "slack_429": limited,
    }
    p95 = pct(first_msg, 95)
    report.check(
        "first message latency p95 (webhook -> card posted)",
        "< 1 s",
        f"p50 {ms(pct(first_msg, 50))}, p95 {ms(p95)} ({len(first_msg)}/{plan.probes} incidents)",
        len(first_msg) == plan.probes and p95 < 1.0,
    )


# --------------------------------------------------------------------------------------------
# output


def table(report: Report) -> str:
    f = report.figures
    lines = []
    if "baseline" in f:
        b, i, x = f["baseline"], f["ingest"], f["ingest_extra"]
        lines += [
            f"{'ingest':<12}{'requests':>9}{'ok':>7}{'p50':>11}{'p95':>11}{'p99':>11}{'max':>11}{'req/s':>9}",
            *(
                f"{name:<12}{s['requests']:>9}{s['ok']:>7}{ms(s['p50']):>11}{ms(s['p95']):>11}"
                f"{ms(s['p99']):>11}{ms(s['max']):>11}{s['rps']:>9,.0f}"
                for name, s in (("bare", b), ("durable", i))
            ),
            f"p99 ratio {x['p99_ratio']:.2f}x (per round: {', '.join(f'{v:.2f}x' for v in x['round_ratios'])});"
            f" body {i['body_bytes']:.0f} B; inbox rows {x['stored_rows']} for {x['accepted_incl_warmup']}"
            f" accepted (incl. warm-up), missing {x['accepted_ids_missing_from_inbox']}",
            f"workers done {', '.join(f'{v:.1f}s' for v in x['processed_s'])} after each round's first request;"
            f" published {', '.join(f'{v:.1f}s' for v in x['published_s'])}",
            *(
                f"{name:<8} loop stalls max {', '.join(ms(m['stall_max']) for m in x['monitor'][key])};"
                f" full GCs {', '.join(str(m['gc_full']) for m in x['monitor'][key])}"
                f" (longest {ms(max((m['gc_full_max'] for m in x['monitor'][key]), default=0.0))})"
                for name, key in (("bare", "baseline"), ("durable", "ingest"))
            ),
            "",
        ]
    if "whatif" in f:
        w = f["whatif"]
        wb, wi, wx = w["baseline"], w["ingest"], w["extra"]
        lines += [
            f"what-if gc.freeze(): bare p99 {ms(wb['p99'])}; bot p50 {ms(wi['p50'])} p95 {ms(wi['p95'])}"
            f" p99 {ms(wi['p99'])} max {ms(wi['max'])} {wi['rps']:,.0f} req/s; ratio {wx['p99_ratio']:.2f}x;"
            f" full GCs {sum(m['gc_full'] for m in wx['monitor']['ingest'])},"
            f" longest stall {ms(max(m['stall_max'] for m in wx['monitor']['ingest']))}",
            "",
        ]
    if "storm" in f:
        s = f["storm"]
        lines += [
            f"storm S={s['scale']:g}: {s['webhooks']} webhooks / {s['distinct_alerts']:,} alerts / {s['groups']} groups;"
            f" sent at {s['load']['rps']:,.0f}/s (p99 {ms(s['load']['p99'])})",
            f"  incidents {s['incidents']}  channels inc-* {s['channels_inc']}  alerts stored {s['alerts_stored']:,}",
            f"  Slack calls {s['calls_total']} ({s['total_calls_per_incident']:.2f}/incident:"
            f" opening {s['opening_calls_per_incident']:.2f}, chat.update {s['chat_update_per_incident']:.2f},"
            f" other posts {s['other_posts_per_incident']:.2f}): {s['calls_by_method']}",
            f"  429s {s['ratelimited_429']} (retried {s['ratelimited_retried']}); all opened after {s['opened_s']:.1f}s;"
            f" drain {s['drain_s']:.1f}s = {s['drain_real_equiv_s'] / 60:.1f} min at real rates"
            f" (conversations.create floor {s['create_floor_s']:.1f}s)",
            "",
        ]
    if "latency" in f:
        lat = f["latency"]
        lines += [
            f"first message ({lat['measured']}/{lat['probes']} incidents, one every {lat['spacing_s']}s, real rates):"
            f" p50 {ms(lat['first_message'][0])} p95 {ms(lat['first_message'][1])} max {ms(lat['first_message'][2])};"
            f" notification p50 {ms(lat['notification'][0])} p95 {ms(lat['notification'][1])}",
            "",
        ]
    width = max((len(c.name) for c in report.checks), default=10)
    for c in report.checks:
        lines.append(f"{verdict(c.ok):<5} {c.name:<{width}}  target {c.target:<20} measured {c.measured}")
    return "\n".join(lines)


def source_state() -> str:
    """The commit measured, and whether bot/ had uncommitted changes (others edit the tree)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True, cwd=BENCH_DIR
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "bot", "commands", "sandbox"],
            capture_output=True,
            text=True,
            check=True,
            cwd=BENCH_DIR,
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git)"
    return f"commit {head}" + (
        f" + {len(dirty)} uncommitted file(s) in bot/commands/sandbox" if dirty else ""
    )


def machine() -> str:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kb = int(Path("/proc/meminfo").read_text().splitlines()[0].split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    pg_dirs = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: p.parts[-3].zfill(4))
    pg_version = pg_dirs[-1].parts[-3] if pg_dirs else "?"
    return (
        f"nproc {os.cpu_count()} ({cpu or 'unknown CPU'}{mem}); Python {platform.python_version()};"
        f" {platform.system()} {platform.release()}; PostgreSQL {pg_version}; aiohttp {aiohttp.__version__}"
    )


def write_markdown(report: Report, command: str, elapsed: float, out: Path) -> None:
    f = report.figures
    p = report.plan
    md = [
        "## Ingest, storm and first-message benchmark (bench/ingest.py)",
        "",
        f"- Date: {report.started:%Y-%m-%d %H:%M} UTC",
        f"- Machine: {machine()}",
        f"- Code measured: {report.figures.get('source', '?')}",
        f"- Command: `{command}` (plan `{p.name}`, {elapsed:.0f} s wall time)",
        "",
        "### Targets",
        "",
        "| Target | Goal | Measured | Result |",
        "| --- | --- | --- | --- |",
        *(f"| {c.name} | {c.target} | {c.measured} | **{verdict(c.ok)}** |" for c in report.checks),
        "",
    ]
    if "baseline" in f:
        b, i, x = f["baseline"], f["ingest"], f["ingest_extra"]
        rows = [
            ("bare aiohttp handler (200 at once), all rounds", b),
            ("bot /webhooks/alertmanager, all rounds", i),
        ]
        for r, (br, ir) in enumerate(zip(b["rounds"], i["rounds"], strict=True)):
            rows += [(f"round {r + 1}: bare", br), (f"round {r + 1}: bot", ir)]
        md += [
            "### 1-2. Durable ingest vs a bare handler",
            "",
            f"{x['rounds']} interleaved round(s) (bare, bot, bare, bot, ...). Same load for both in every round:"
            f" {p.ingest_requests} POSTs of realistic Alertmanager v4 bodies (mean {i['body_bytes']:.0f} B,"
            f" {p.ingest_groups} new groups per round, 1-5 alerts per snapshot), {p.concurrency} in flight over one"
            f" aiohttp ClientSession (connector limit {p.concurrency}), after a {p.warmup_requests}-request"
            " warm-up in the same session (not measured). Percentiles are over all measured requests of all"
            " rounds; throughput is OK responses / time under load.",
            "",
            "| Server | OK | p50 | p95 | p99 | max | Throughput |",
            "| --- | --- | --- | --- | --- | --- | --- |",
            *(
                f"| {name} | {s['ok']}/{s['requests']} | {ms(s['p50'])} | {ms(s['p95'])} | {ms(s['p99'])} |"
                f" {ms(s['max'])} | {s['rps']:,.0f} req/s |"
                for name, s in rows
            ),
            "",
            f"- p99 ratio bot / bare: **{x['p99_ratio']:.2f}x** (per round: {', '.join(f'{v:.2f}x' for v in x['round_ratios'])})",
            f"- webhook_inbox: {x['stored_rows']} rows for {x['accepted_incl_warmup']} accepted deliveries"
            f" (incl. warm-up); accepted ids missing from the inbox: **{x['accepted_ids_missing_from_inbox']}**",
            f"- Intake workers (4) had turned every delivery of a round ({x['deliveries_per_round']}) into incidents"
            f" {', '.join(f'{v:.1f} s' for v in x['processed_s'])} after the round's first request;"
            f" all of the round's incidents were in Slack after {', '.join(f'{v:.1f} s' for v in x['published_s'])}"
            f" (phase total: {x['incidents']} incidents, {x['alerts']} alerts, {x['slack_calls']} Slack calls,"
            f" {x['slack_429']} Slack 429s; sandbox and bot scale {p.ingest_scale:g} in this phase).",
            "- Event loop of this process during each round (a 1 ms sleep that wakes late = a stall; gen-2 = full"
            " garbage collection, which stops the loop):",
            "",
            "| Round | Server | longest loop stall | stalls > 20 ms | full GCs | longest full GC |",
            "| --- | --- | --- | --- | --- | --- |",
            *(
                f"| {r + 1} | {name} | {ms(m['stall_max'])} | {m['stalls_over_20ms']} | {m['gc_full']} |"
                f" {ms(m['gc_full_max']) if m['gc_full'] else '-'} |"
                for r in range(x["rounds"])
                for name, key in (("bare", "baseline"), ("bot", "ingest"))
                for m in (x["monitor"][key][r],)
            ),
            "",
            f"GC-tracked objects in this process after the phase: {x['objects_tracked']:,}"
            f" (frozen by gc.freeze: {x['gc_frozen']:,}).",
            "",
        ]
    if "whatif" in f and "ingest" in f:
        w = f["whatif"]
        x = f["ingest_extra"]

        def row(label: str, b: dict[str, Any], i: dict[str, Any], e: dict[str, Any]) -> str:
            mon = e["monitor"]["ingest"]
            return (
                f"| {label} | {ms(b['p99'])} | {ms(i['p50'])} | {ms(i['p95'])} | {ms(i['p99'])} | {ms(i['max'])} |"
                f" {i['rps']:,.0f} req/s | {e['p99_ratio']:.2f}x | {sum(m['gc_full'] for m in mon)} |"
                f" {ms(max((m['stall_max'] for m in mon), default=0.0))} |"
            )

        md += [
            "### What-if: the same ingest phase with `gc.freeze()` after start-up",
            "",
            "Not the bot's behaviour today, and no target is judged on it: the bench repeats phase 1-2 on a fresh"
            " database after `gc.collect(); gc.freeze()` right after `BotServer.start()` (the fix proposed for the"
            " full-collection pauses: the ~120k objects created by importing and wiring the bot are moved out of"
            " the collector's reach, so a full collection no longer walks them).",
            "",
            "| Run | bare p99 | bot p50 | bot p95 | bot p99 | bot max | bot throughput | p99 ratio | full GCs in bot rounds | longest loop stall |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
            row("as is (above)", f["baseline"], f["ingest"], x),
            row("with gc.freeze()", w["baseline"], w["ingest"], w["extra"]),
            "",
        ]
    if "storm" in f:
        s = f["storm"]
        md += [
            "### 3. Alert storm against rate-limited Slack",
            "",
            f"{s['groups']} groups x {p.storm_rounds} deliveries whose snapshots grow by {p.storm_step} alerts each"
            f" (Alertmanager group_interval updates), sent round by round at {p.concurrency} in flight:"
            f" {s['webhooks']} webhooks carrying {s['distinct_alerts']:,} distinct alerts."
            f" Sandbox Slack `rate_scale={s['scale']:g}` and bot `slack_rate_scale={s['scale']:g}`.",
            "",
            "| Figure | Value |",
            "| --- | --- |",
            f"| webhooks accepted | {s['accepted']}/{s['webhooks']} at {s['load']['rps']:,.0f}/s"
            f" (p50 {ms(s['load']['p50'])}, p99 {ms(s['load']['p99'])}, mean body {s['load']['body_bytes'] / 1024:.1f} KiB) |",
            f"| incidents (published) | {s['incidents']} ({s['incidents_published']}) |",
            f"| Slack channels `inc-*` | {s['channels_inc']} |",
            f"| alerts in DB | {s['alerts_stored']:,} |",
            f"| Slack calls, total | {s['calls_total']} = {s['total_calls_per_incident']:.2f} per incident |",
            f"| opening calls (conversations.create + setTopic + card + notification) |"
            f" {s['opening_calls_per_incident']:.2f} per incident ({s['cards']} cards, {s['notifications']} notifications) |",
            f"| chat.update (coalesced card + notification updates) | {s['chat_update_per_incident']:.2f} per incident |",
            f"| other chat.postMessage (enrichment: playbook, graphs note; announcements) |"
            f" {s['other_posts_per_incident']:.2f} per incident |",
            f"| calls by method | {', '.join(f'{k} {v}' for k, v in s['calls_by_method'].items())} |",
            f"| Slack 429s / retried successfully | {s['ratelimited_429']} / {s['ratelimited_retried']} |",
            f"| all incidents opened (first webhook -> last card/notification) | {s['opened_s']:.1f} s"
            f" (= {s['opened_real_equiv_s'] / 60:.1f} min at real rates) |",
            f"| drain (first webhook -> last Slack call) | {s['drain_s']:.1f} s |",
            f"| equivalent at real rates (x{s['scale']:g}) | {s['drain_real_equiv_s']:.0f} s"
            f" = {s['drain_real_equiv_s'] / 60:.1f} min |",
            f"| floor set by our conversations.create budget | {s['create_floor_s']:.1f} s"
            f" ({s['groups']} creates, burst {BOT_TIER2_BURST}, {BOT_TIER2_PER_MIN:g}/min x {s['scale']:g}) |",
            "",
        ]
    if "latency" in f:
        lat = f["latency"]
        md += [
            "### 4. Time to first message",
            "",
            f"{lat['probes']} new incidents (one new group with 2 firing alerts each), one every {lat['spacing_s']} s,"
            f" sandbox and bot at real Slack rates (scale 1) with rate limits on. Latency = sandbox's recorded time of"
            f" the call minus the send time, both `time.time()` in this process.",
            "",
            "| Step (webhook sent ->) | p50 | p95 |",
            "| --- | --- | --- |",
            f"| 200 OK received | {ms(lat['ack'][0])} | {ms(lat['ack'][1])} |",
            f"| conversations.create recorded | {ms(lat['create'][0])} | {ms(lat['create'][1])} |",
            f"| conversations.setTopic recorded | {ms(lat['topic'][0])} | {ms(lat['topic'][1])} |",
            f"| **first chat.postMessage (incident card)** | **{ms(lat['first_message'][0])}** |"
            f" **{ms(lat['first_message'][1])}** |",
            f"| notification in #{INCIDENT_CHANNEL} | {ms(lat['notification'][0])} | {ms(lat['notification'][1])} |",
            "",
            f"Measured for {lat['measured']}/{lat['probes']} incidents; Slack 429s in this phase: {lat['slack_429']}.",
            "",
        ]
    if "cpu" in f:
        cores = os.cpu_count() or 1
        md += [
            "### Machine load during the run",
            "",
            "Busy CPU of the whole machine per phase, split into ours (this process, the load generator,"
            " our PostgreSQL and Redis) and other processes (the machine is shared; their load disturbs the"
            " figures above, mostly the tail latencies).",
            "",
            "| Phase | wall | machine busy | ours | other processes |",
            "| --- | --- | --- | --- | --- |",
            *(
                f"| {name} | {u['wall_s']:.1f} s | {u['busy_s']:.1f} CPU-s ({u['busy_s'] / max(u['wall_s'], 1e-9) / cores:.0%}"
                f" of {cores} cores) | {u['ours_s']:.1f} CPU-s | {u['others_s']:.1f} CPU-s |"
                for name, u in f["cpu"].items()
            ),
            "",
        ]
    md += ["### Method notes", "", *(f"- {n}" for n in report.notes), ""]
    # bench/RESULTS.md is shared: each benchmark owns the part between its own markers.
    write_section(out, "ingest.py", "\n".join(md))


METHOD_NOTES = [
    "Processes: PostgreSQL 15 (fsync and synchronous_commit on, the defaults) and Redis (AOF everysec)"
    " are separate processes started by `sandbox/services.py` in a temp dir. The bot (`bot.app.build`"
    " + `BotServer.start`, 4 intake workers, logging at WARNING), the sandbox Slack and the bare baseline"
    " handler share this process's event loop, as they would share a pod. The load for phases 1-3 comes from"
    " `bench/loadgen.py` in a child process (one aiohttp ClientSession, connector limit = concurrency), so"
    " client and server do not share an event loop; they do share the machine's 2 cores with PostgreSQL and"
    " Redis, so the absolute figures are a floor for a real deployment.",
    "Each phase gets a fresh database, its own Redis DB number, a fresh sandbox Slack and a fresh bot.",
    "Heap caveat: the in-process sandbox Slack keeps every channel, message and edit it has seen on this"
    " process's heap, so full garbage collections here walk more objects than in a bot-only process"
    " (importing and wiring the bot alone leaves ~120k tracked objects; a full collection of those takes"
    " ~70-80 ms on this machine). The bench clears the sandbox's call log between ingest rounds to limit"
    " this; the GC pauses it reports are somewhat longer than the bot alone would see, but they exist"
    " without the sandbox too.",
    "Phase 1-2 runs interleaved rounds (bare, bot, bare, bot, ...) and waits before every measurement until"
    " the bot is idle (every delivery processed, every incident published), so the bare handler never"
    " shares the loop with the bot's background work and each bot round starts from the same state. In"
    " this phase the sandbox and the bot use Slack rate scale 100 so that a round's 200+ new incidents are"
    " published within seconds; Slack limits are what phase 3 measures.",
    "Baseline: an aiohttp handler that reads the body and answers 200 with a small JSON at once; it gets"
    " exactly the same bodies, concurrency, request count and warm-up as the bot. Latency is measured in the"
    " client from just before the POST to the end of the response body.",
    "Durable ingest: the bot answers 200 only after the raw body is committed to `webhook_inbox`; the"
    " intake workers turn deliveries into incidents concurrently (and, in phase 1-2, publish the"
    " resulting incidents to the rate-limited sandbox Slack in the background), so the ingest figures"
    " include that competing work. 0 lost = every id returned with a 200 is a row of webhook_inbox.",
    "What keeps the durable p99 near the bare one: deliveries that arrive together are written by one"
    " multi-row INSERT and one commit (`bot/store/inbox.py`, at most 2 batches in flight, on 2"
    " connections of their own, each request answered after its own row is committed), and background work (worker steps, publish"
    " rounds, background Slack calls) yields to in-flight webhooks one unit at a time, each after at most"
    " 50 ms, until intake has been quiet for 10 ms (`bot/flows/gate.py`). Without the gate the"
    " publishing of the warm-up's incidents alone doubled the first 200 ms of each round's latencies.",
    "Storm time compression: Slack's limits are per minute (conversations.create and setTopic are"
    " Tier 2, 20/min), so the storm runs with the sandbox's `rate_scale=S` and the bot's"
    " `slack_rate_scale=S` (same S; bucket sizes are not scaled). The drain equivalent at real rates is"
    " drain x S, which slightly overstates it (intake work does not scale with S). `--real-rates` runs S=1.",
    "Storm Slack calls are everything the sandbox recorded during the phase, 429s included; `opening`"
    " counts conversations.create, conversations.setTopic and chat.postMessage (card in the incident"
    " channel + notification in #incident, identified by the ts stored in the DB); other posts (playbook"
    " enrichment, the 'graphs are off' note, announcements) and chat.update are reported separately and"
    " included in the total; a 429 counts as retried when a later successful call of the"
    " same method on the same target (channel / name / ts) was recorded.",
    "First-message latency runs at real rates (scale 1) with the limits on. Tier 2 refills one"
    " conversations.create per 3 s, so the incidents are spaced 3.1 s apart: the fastest sustained"
    " rate Slack allows (faster arrivals would measure our rate-limit queue, which the storm phase covers)."
    " Send and sandbox-record times are both `time.time()` in this process; the sandbox records a call"
    " when it answers it.",
]


def _machine_busy_s() -> float:
    """CPU-seconds the whole machine has spent busy (all cores) since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _group_cpu_s(pgids: set[int]) -> float:
    """CPU-seconds of the live processes in these process groups (with their reaped children)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            rest = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(rest[2]) in pgids:
            total += sum(int(x) for x in rest[11:15])
    return total / os.sysconf("SC_CLK_TCK")


@dataclass
class CpuMeter:
    """Splits the machine's busy CPU during a phase into ours (this process, its load generator
    children, our PostgreSQL and Redis) and everyone else's (other work sharing the machine)."""

    service_pgids: set[int]
    start: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)

    def _sample(self) -> tuple[float, float, float, float]:
        me = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return (
            time.monotonic(),
            _machine_busy_s(),
            me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime,
            _group_cpu_s(self.service_pgids),
        )

    def begin(self) -> None:
        self.start = self._sample()

    def end(self) -> dict[str, float]:
        t, busy, own, services = self._sample()
        wall = t - self.start[0]
        ours = (own - self.start[2]) + (services - self.start[3])
        total = busy - self.start[1]
        return {"wall_s": wall, "busy_s": total, "ours_s": ours, "others_s": max(0.0, total - ours)}


async def run_all(
    plan: Plan, report: Report, dsns: dict[str, str], redis_base: str, workdir: Path, pgids: set[int]
) -> None:
    phases = [
        ("ingest", lambda: phase_ingest(plan, report, dsns["ingest"], redis_base + "/1", workdir)),
        ("storm", lambda: phase_storm(plan, report, dsns["storm"], redis_base + "/2", workdir)),
        ("latency", lambda: phase_latency(plan, report, dsns["latency"], redis_base + "/3")),
        ("whatif", lambda: phase_whatif(plan, report, dsns["whatif"], redis_base + "/4", workdir)),
    ]
    for name, phase in phases:
        if name not in plan.phases:
            continue
        meter = CpuMeter(pgids)
        meter.begin()
        print(f"[bench] phase {name} ...", file=sys.stderr, flush=True)
        await phase()
        usage = meter.end()
        report.figures.setdefault("cpu", {})[name] = usage
        print(
            f"[bench] phase {name} done in {usage['wall_s']:.1f}s; machine busy {usage['busy_s']:.1f} CPU-s"
            f" (ours {usage['ours_s']:.1f}, other processes {usage['others_s']:.1f})",
            file=sys.stderr,
            flush=True,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller smoke run (< 1 min)")
    parser.add_argument("--real-rates", action="store_true", help="storm at Slack's real rates (S=1)")
    parser.add_argument(
        "--phases", default=",".join(ALL_PHASES), help="comma-separated subset of ingest,storm,latency"
    )
    parser.add_argument("--rounds", type=int, default=3, help="ingest rounds per server (full run)")
    parser.add_argument(
        "--what-if",
        dest="what_if",
        action="store_true",
        help="add an extra ingest run with gc.freeze() after start, reported beside the real figures",
    )
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="what-if: gc.collect() + gc.freeze() after each bot start (the proposed fix); writes no markdown"
        " unless --results is given",
    )
    parser.add_argument("--scale", type=float, default=20.0, help="storm time compression S (default 20)")
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help=f"markdown file to write (default {RESULTS_MD.name} for full runs; --quick writes none)",
    )
    parser.add_argument("--no-write", action="store_true", help="print only, write no markdown")
    args = parser.parse_args()
    plan = make_plan(args)
    command = ".venv/bin/python bench/ingest.py" + (" " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "")
    logs.configure("console", logging.WARNING)
    report = Report(plan=plan, started=datetime.now(UTC), notes=list(METHOD_NOTES))
    report.figures["source"] = source_state()
    started = time.monotonic()

    base = Path(tempfile.mkdtemp(prefix="incidentbot-bench-"))
    pg = redis = None
    try:
        pg = PostgresServer.start(base)
        redis = RedisServer.start(base)
        dsns = {name: pg.create_database(f"bench_{name}") for name in (*ALL_PHASES, "whatif")}
        redis_base = redis.url.rsplit("/", 1)[0]
        pgids = {pid for pid in (pg.pid, redis.pid) if pid is not None}
        workdir = base / "load"
        workdir.mkdir()

        async def bounded() -> None:
            async with asyncio.timeout(plan.total_deadline_s):
                await run_all(plan, report, dsns, redis_base, workdir, pgids)

        asyncio.run(bounded())
    finally:
        if redis is not None:
            redis.stop()
        if pg is not None:
            pg.stop()
        shutil.rmtree(base, ignore_errors=True)

    elapsed = time.monotonic() - started
    print(table(report))
    print(f"\n{len(report.checks)} checks, {sum(not c.ok for c in report.checks)} failed; {elapsed:.0f}s")
    partial = args.quick or args.gc_freeze or not set(ALL_PHASES) <= set(plan.phases)
    results = args.results or (None if partial else RESULTS_MD)
    if results is not None and not args.no_write:
        write_markdown(report, command, elapsed, results)
        print(f"wrote {results}")
    return 0 if all(c.ok for c in report.checks) else 1


if __name__ == "__main__":
    sys.exit(main())
