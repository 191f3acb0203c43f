"""Storm mode at Slack's real rate limits (issue #13, target of point 2).

A 2,000-alert storm in 50 Alertmanager groups that belong to 8 root problems (the fixture: group g
belongs to root g % 8; each root's first group is critical, P1; 12 groups are warnings, P2; 30
are info, P4), all for one team (the catalog's default team, announced in #incident), sent as
Alertmanager sends an outage: 40 rounds, round r re-sending every group with r alerts, 8
deliveries in flight, each re-sent until answered 200. The sandbox Slack enforces Slack's real
per-method limits (rate_scale 1) and the bot is told the same.

Measured: every acknowledged delivery stored (inbox rows and the 2,000 distinct alerts), the
incidents opened (the bundled correlation rules: a group's alerts name its root problem's
workload, so later groups of a root attach to its incident; target <= 10), what the
notification channel shows (one digest; its posts and updates at
most one per second), 429s left unretried, and for every P1 incident the time from its group's
first delivery to its card in its channel (target 10 s).

Real PostgreSQL and Redis as processes (sandbox/services.py) in a temp dir; the bot and the
sandbox Slack in this process; only 127.0.0.1. Bounded: every wait has a deadline.

    .venv/bin/python bench/storm.py [--no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from payloads import group_body  # noqa: E402
from sections import RESULTS_MD, write_section  # noqa: E402

from bot.app import build  # noqa: E402
from bot.config.settings import BUNDLED_PLAYBOOKS, Settings  # noqa: E402
from sandbox.services import PostgresServer, RedisServer  # noqa: E402
from sandbox.slack import SlackSandbox  # noqa: E402

AM_TOKEN = "bench-alertmanager-token-0123456789"
GROUPS = 50
ROOTS = 8
ROUNDS = 40  # GROUPS * ROUNDS deliveries, one new alert per group per round: 2,000 alerts
IN_FLIGHT = 8
P2_GROUPS = 12
DEADLINE_S = 600.0
P1_TARGET_S = 10.0
ROOT_NAMES = [
    "DatabaseDown",
    "NodeNotReady",
    "RedisDown",
    "QueueBacklog",
    "DNSFailure",
    "CertificateExpired",
    "DiskPressure",
    "UpstreamTimeout",
]


def fixture() -> list[tuple[str, str, str]]:
    """(group, alertname, severity) for the 50 groups, in a fixed shuffled order."""
    groups = []
    for g in range(GROUPS):
        root = g % ROOTS
        severity = "critical" if g < ROOTS else "warning" if g < ROOTS + P2_GROUPS else "info"
        groups.append((f"storm-{g:02d}", f"{ROOT_NAMES[root]}{'' if g < ROOTS else f'Symptom{g}'}", severity))
    random.Random(13).shuffle(groups)  # a fixed order
    return groups


def body(group: str, alertname: str, severity: str, alerts: int) -> bytes:
    """A group's snapshot. Its alerts name their root problem's workload (namespace and
    deployment, as kube-state-metrics alerts do): what correlation can see of the fixture."""
    fps = [f"{group}a{i:03d}" for i in range(alerts)]
    payload = group_body(group, alertname, fps, severity=severity)
    root = int(group.rsplit("-", 1)[1]) % ROOTS
    workload = {"namespace": f"storm-root{root}", "deployment": ROOT_NAMES[root].lower()}
    for alert in payload["alerts"]:
        alert["labels"].update(workload)
    payload["commonLabels"].update(workload)
    return json.dumps(payload).encode()


def settings(slack: SlackSandbox, dsn: str, redis_url: str, playbooks: Path) -> Settings:
    return Settings(
        slack_bot_token=slack.bot_token,
        slack_signing_secret="bench-signing-secret-0123456789",
        slack_api_url=slack.api_url,
        incident_channel="incident",
        database_url=dsn,
        redis_url=redis_url,
        alertmanager_webhook_token=AM_TOKEN,
        http_host="127.0.0.1",
        http_port=0,
        log_format="console",
        sweep_interval_seconds=1.0,
        slack_rate_scale=1.0,
        playbooks_dir=playbooks,
    )


async def send_all(http: aiohttp.ClientSession, url: str) -> tuple[dict[str, float], int, int]:
    """Every delivery, IN_FLIGHT at a time, re-sent until answered 200. Returns each group's
    first send time (wall clock), deliveries acknowledged and re-sends."""
    groups = fixture()
    queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    for r in range(1, ROUNDS + 1):
        for group, alertname, severity in groups:
            queue.put_nowait((group, body(group, alertname, severity, r)))
    first: dict[str, float] = {}
    acked = resent = 0
    headers = {"Authorization": f"Bearer {AM_TOKEN}", "Content-Type": "application/json"}
    deadline = time.monotonic() + DEADLINE_S

    async def worker() -> None:
        nonlocal acked, resent
        while not queue.empty() and time.monotonic() < deadline:
            group, data = queue.get_nowait()
            first.setdefault(group, time.time())
            while time.monotonic() < deadline:
                async with http.post(url, data=data, headers=headers) as resp:
                    if resp.status == 200:
                        acked += 1
                        break
                resent += 1
                await asyncio.sleep(0.2)

    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
    return first, acked, resent


async def settled(conn: asyncpg.Connection) -> bool:
    """Every delivery applied, every incident published, every incident with a channel due has its
    card, every storm digest drawn."""
    row = await conn.fetchrow(
        "SELECT (SELECT count(*) FROM webhook_inbox WHERE processed_at IS NULL) AS inbox,"
        " (SELECT count(*) FROM incidents WHERE version > published_version) AS unpublished,"
        " (SELECT count(*) FROM incidents WHERE card_ts IS NULL AND coalesce(storm_role, 'own') <> 'waiting')"
        " AS uncarded,"
        " (SELECT count(*) FROM storms WHERE version > published_version) AS digests"
    )
    return bool(row is not None and not any(row.values()))


def digest_writes(slack: SlackSandbox, channel: str) -> tuple[str | None, list[float]]:
    """The digest's ts and the times of its post and updates (from the sandbox's call log)."""
    digest = next((m for m in slack.messages(channel) if "Incident storm" in m.text), None)
    if digest is None:
        return None, []
    times = [
        c.time
        for c in slack.calls
        if c.ok
        and (
            (c.method == "chat.update" and c.args.get("ts") == digest.ts)
            or (c.method == "chat.postMessage" and c.response.get("ts") == digest.ts)
        )
    ]
    return digest.ts, sorted(times)


def most_in_a_second(times: list[float]) -> int:
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


async def measure(base: Path) -> dict[str, Any]:
    pg = await asyncio.to_thread(PostgresServer.start, base)
    rd = await asyncio.to_thread(RedisServer.start, base)
    playbooks = base / "playbooks"
    shutil.copytree(BUNDLED_PLAYBOOKS, playbooks)
    try:
        dsn = pg.create_database("bench_storm")
        async with SlackSandbox(incident_channel="incident", rate_scale=1.0) as slack:
            server = await build(settings(slack, dsn, rd.url, playbooks))
            await server.start()
            conn = await asyncpg.connect(dsn)
            try:
                started = time.monotonic()
                async with aiohttp.ClientSession() as http:
                    first, acked, resent = await send_all(
                        http, f"http://127.0.0.1:{server.port}/webhooks/alertmanager"
                    )
                sent_s = time.monotonic() - started
                while time.monotonic() - started < DEADLINE_S and not await settled(conn):
                    await asyncio.sleep(0.25)
                done_s = time.monotonic() - started
                return await figures(conn, slack, first, acked, resent, sent_s, done_s)
            finally:
                await conn.close()
                await server.stop()
    finally:
        await asyncio.to_thread(rd.stop)
        await asyncio.to_thread(pg.stop)


async def figures(
    conn: asyncpg.Connection,
    slack: SlackSandbox,
    first: dict[str, float],
    acked: int,
    resent: int,
    sent_s: float,
    done_s: float,
) -> dict[str, Any]:
    stored = await conn.fetchval("SELECT count(*) FROM webhook_inbox WHERE source = 'alertmanager'")
    alerts = await conn.fetchval("SELECT count(*) FROM alerts")
    incidents = await conn.fetch(
        "SELECT id, group_key, severity, channel_id, card_ts, storm_role FROM incidents"
    )
    storms = await conn.fetchval("SELECT count(*) FROM storms")
    channel = slack.incident_channel
    assert channel is not None
    notifications = [
        m for m in slack.messages(channel.id) if "Incident storm" not in m.text and "is over" not in m.text
    ]
    digests = [m for m in slack.messages(channel.id) if "Incident storm" in m.text]
    _, writes = digest_writes(slack, channel.id)
    p1_times = []
    for inc in incidents:
        if inc["severity"] != "P1":
            continue
        group = next(g for g in first if f'namespace="{g}"' in inc["group_key"])
        card = float(inc["card_ts"]) if inc["card_ts"] else float("inf")
        p1_times.append(card - first[group])
    calls = Counter(c.method for c in slack.calls)
    limited = [c for c in slack.calls if c.status == 429]
    # A 429 is retried when the same method later succeeds for the same target.
    unretried = sum(
        not any(
            later.ok and later.method == c.method and later.time > c.time and later.args == c.args
            for later in slack.calls
        )
        for c in limited
    )
    return {
        "deliveries": GROUPS * ROUNDS,
        "acked": acked,
        "resent": resent,
        "stored": stored,
        "alerts": alerts,
        "incidents": len(incidents),
        "by_role": dict(Counter(str(i["storm_role"]) for i in incidents)),
        "channels": sum(i["channel_id"] is not None for i in incidents),
        "storms": storms,
        "notifications": len(notifications),
        "digests": len(digests),
        "digest_writes": len(writes),
        "digest_most_per_s": most_in_a_second(writes),
        "p1": sorted(p1_times),
        "calls": dict(calls),
        "429": len(limited),
        "429_unretried": unretried,
        "sent_s": sent_s,
        "done_s": done_s,
    }


def section(f: dict[str, Any], command: str) -> str:
    p1 = f["p1"]
    p1_ok = bool(p1) and max(p1) <= P1_TARGET_S
    ok = "✅" if p1_ok else "❌"
    stored_ok = (
        "✅" if f["stored"] == f["acked"] == f["deliveries"] and f["alerts"] == GROUPS * ROUNDS else "❌"
    )
    digest_ok = "✅" if f["digests"] == 1 and f["digest_most_per_s"] <= 1 else "❌"
    return f"""## Storm mode at Slack's real limits (bench/storm.py)

Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores, Python {platform.python_version()}: `{command}`

{GROUPS * ROUNDS:,} alerts in {GROUPS} groups of {ROOTS} root problems (8 P1, {P2_GROUPS} P2, {GROUPS - ROOTS - P2_GROUPS} P4), one
team, {ROUNDS} rounds as Alertmanager re-sends an outage, {IN_FLIGHT} deliveries in flight; the sandbox Slack
at Slack's real per-method limits (rate_scale 1), real PostgreSQL and Redis on 127.0.0.1. Storm policy: the
catalog default (more than 5 incidents within 120 s; P1/P2 channels at once, P4 waits in the digest).

| check | result | target |
|---|---|---|
| deliveries acknowledged / stored | {f["acked"]:,} / {f["stored"]:,} of {f["deliveries"]:,} ({f["resent"]} re-sent); {f["alerts"]:,} distinct alerts stored | every acknowledged one stored {stored_ok} |
| incidents | {f["incidents"]} ({", ".join(f"{k}: {v}" for k, v in sorted(f["by_role"].items()))}); {f["channels"]} channels | ≤ 10: {"met" if f["incidents"] <= 10 else "NOT met"} |
| notification channel | {f["notifications"]} notifications (before the storm) + {f["digests"]} digest, {f["digest_writes"]} digest writes, at most {f["digest_most_per_s"]} in any second | one digest, ≤ 1 post + updates per second {digest_ok} |
| P1 card after the group's first delivery | {", ".join(f"{t:.1f} s" for t in f["p1"])} | every one ≤ {P1_TARGET_S:.0f} s {ok} |
| Slack 429s | {f["429"]} ({f["429_unretried"]} not retried) | none left unretried |
| time | all sent in {f["sent_s"]:.1f} s; settled (every delivery applied, every due card and the digest drawn) after {f["done_s"]:.1f} s | |

Slack calls: {", ".join(f"{m} {n}" for m, n in sorted(f["calls"].items()))}.
"""


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--no-write", action="store_true", help="print the figures, leave RESULTS.md alone")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="incidentbot-storm-"))
    try:
        found = await measure(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(found, indent=2))
    text = section(
        found, ".venv/bin/python bench/storm.py" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else "")
    )
    print(text)
    if not args.no_write:
        write_section(RESULTS_MD, "storm.py", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
