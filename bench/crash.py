"""kill -9 of the bot in the middle of a stream of new alert groups, side by side with the same
stream undisturbed (issue #11, point 3).

Each run: fresh PostgreSQL database, flushed Redis, a fresh sandbox Slack (per-method limits
compressed RATE_SCALE times, the bot told the same), the bot as a separate process
(`python -m bot run`). GROUPS groups are sent, IN_FLIGHT at a time, as Alertmanager does:
a delivery that is not answered 200 is sent again until it is. In the crash run the bot is
killed with SIGKILL once KILL_AT channels exist and restarted at once; what is measured is the
time after the restart (the bot ready again) until every acknowledged group has its channel,
card and notification. Lost: acknowledged groups with no incident. Duplicated: channels beyond
one per incident, and repeated card or notification keys.

Two crash runs: the process restarted under the same replica name (REPLICA_NAME, the pod's name
in the Helm chart, which a container restart keeps), and a replacement under a new name (a new
pod), which must wait for the dead process's publish leases to lapse. The time after the restart
is set against the Slack-limit floor for the work left: the undisturbed run's time to complete
as many incidents as were left open at the restart.

    .venv/bin/python bench/crash.py [--groups 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from payloads import group_body  # noqa: E402
from sections import RESULTS_MD, write_section  # noqa: E402

from bot.config.settings import BUNDLED_PLAYBOOKS  # noqa: E402
from sandbox.services import PostgresServer, RedisServer, free_port  # noqa: E402
from sandbox.slack import SlackSandbox  # noqa: E402

AM_TOKEN = "bench-alertmanager-token-0123456789"
# BENCH_RATE_SCALE=100 halves the Slack-limit floor (the section is then recorded apart).
RATE_SCALE = float(os.environ.get("BENCH_RATE_SCALE", "50"))
IN_FLIGHT = 8
KILL_AT = 60
RESEND_PAUSE_S = 0.2
DEADLINE_S = 120.0
TARGET_S = 15.0


def uncorrelated_playbooks() -> Path:
    """The bundled playbooks with correlation and storm mode off: the stream's groups name one
    service, which correlation would rightly make one incident; this measures the recovery of
    300 incidents, each with its channel, card and notification."""
    target = Path(tempfile.mkdtemp(prefix="incidentbot-crash-playbooks-")) / "playbooks"
    shutil.copytree(BUNDLED_PLAYBOOKS, target)
    (target / "correlation.yaml").write_text("enabled: false\n", encoding="utf-8")
    # Nor storm mode: every incident's own notification is what is counted.
    with (target / "services.yaml").open("a", encoding="utf-8") as catalog:
        catalog.write("\nstorm: {incidents: 1000, window_seconds: 5}\n")
    return target


PLAYBOOKS = uncorrelated_playbooks()


def bot_env(slack: SlackSandbox, dsn: str, redis_url: str, port: int, replica: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "PAGERDUTY_"))}
    env.update(
        PLAYBOOKS_DIR=str(PLAYBOOKS),
        SLACK_BOT_TOKEN=slack.bot_token,
        SLACK_SIGNING_SECRET="bench-signing-secret-0123456789",
        SLACK_API_URL=slack.api_url,
        DATABASE_URL=dsn,
        REDIS_URL=redis_url,
        ALERTMANAGER_WEBHOOK_TOKEN=AM_TOKEN,
        HTTP_HOST="127.0.0.1",
        HTTP_PORT=str(port),
        INCIDENT_CHANNEL="incident",
        SWEEP_INTERVAL_SECONDS="1",
        SLACK_RATE_SCALE=str(RATE_SCALE),
        LOG_FORMAT="console",
        REPLICA_NAME=replica,
    )
    return env


def start_bot(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "bot", "run"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )


async def wait_ready(http: aiohttp.ClientSession, url: str, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while True:
            try:
                async with http.get(url + "/readyz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)


async def complete(dsn: str, groups: set[str]) -> tuple[int, int]:
    """(acknowledged groups with channel, card and notification; acknowledged groups with no
    incident at all)."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT group_key, channel_id IS NOT NULL AND card_ts IS NOT NULL"
            " AND notification_ts IS NOT NULL AS done FROM incidents"
        )
    finally:
        await conn.close()
    done = {r["group_key"] for r in rows if r["done"]}
    known = {r["group_key"] for r in rows}
    return len(groups & done), len(groups - known)


def duplicates(slack: SlackSandbox, incidents: int) -> int:
    channels = len(slack.channels_with_prefix("inc-"))
    keys: Counter[str] = Counter()
    for channel in slack.channels.values():
        for m in slack.messages(channel.id):
            key = ((m.metadata or {}).get("event_payload") or {}).get("key")
            if isinstance(key, str) and key.startswith(("card:", "notification:")):
                keys[key] += 1
    return max(0, channels - incidents) + sum(n - 1 for n in keys.values())


async def run(
    pg: PostgresServer, redis_url: str, groups: int, *, crash: bool, tag: str, new_name: bool = False
) -> dict[str, Any]:
    dsn = pg.create_database(f"crash_{tag}")
    client = aioredis.Redis.from_url(redis_url)
    await client.flushall()
    await client.aclose()
    slack = SlackSandbox(incident_channel="incident", rate_scale=RATE_SCALE)
    await slack.start()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = bot_env(slack, dsn, redis_url, port, "bench-bot-0")
    subprocess.run(
        [sys.executable, "-m", "bot", "migrate"], env=env, cwd=ROOT, check=True, capture_output=True
    )
    bodies = {
        f"crash-{tag}-{i}": group_body(f"crash-{tag}-{i}", "HighErrorRate", [f"f{i}"]) for i in range(groups)
    }
    acked: set[str] = set()

    def keys(names: set[str]) -> set[str]:
        return {str(bodies[name]["groupKey"]) for name in names}

    bot = start_bot(env)
    result: dict[str, Any] = {"groups": groups, "crash": crash, "new_name": new_name}
    try:
        async with aiohttp.ClientSession() as http:
            await wait_ready(http, url)
            started = time.monotonic()
            gate = asyncio.Semaphore(IN_FLIGHT)

            async def send(group: str) -> None:
                async with gate:
                    while group not in acked:
                        try:
                            async with http.post(
                                url + "/webhooks/alertmanager",
                                json=bodies[group],
                                headers={"Authorization": f"Bearer {AM_TOKEN}"},
                            ) as resp:
                                if resp.status == 200:
                                    acked.add(group)
                                    return
                        except aiohttp.ClientError:
                            pass
                        await asyncio.sleep(RESEND_PAUSE_S)  # Alertmanager retries after a pause

            restarted = started
            sending = asyncio.gather(*(send(g) for g in bodies))
            if crash:
                await slack.wait_for(
                    lambda s: len(s.channels_with_prefix("inc-")) >= KILL_AT or None, timeout=60
                )
                bot.send_signal(signal.SIGKILL)
                await asyncio.to_thread(bot.wait, 10)
                result["acked_before_kill"] = len(acked)
                result["complete_at_kill"] = (await complete(dsn, keys(acked)))[0]
                bot = start_bot(env | {"REPLICA_NAME": "bench-bot-1"} if new_name else env)
                await wait_ready(http, url)
                restarted = time.monotonic()
                result["complete_at_restart"] = (await complete(dsn, keys(acked)))[0]
            await sending
            result["acked"] = len(acked)
            result["all_acked_s"] = time.monotonic() - started
            # (seconds after the first send, incidents complete): the undisturbed pace.
            progress: list[tuple[float, int]] = []
            async with asyncio.timeout(DEADLINE_S):
                while (done := (await complete(dsn, keys(acked)))[0]) < len(acked):
                    progress.append((time.monotonic() - started, done))
                    await asyncio.sleep(0.1)
            result["progress"] = progress
            finished = time.monotonic()
            result["total_s"] = finished - started
            result["after_restart_s"] = finished - restarted if crash else None
            result["lost"] = (await complete(dsn, keys(acked)))[1]
            result["open_at_restart"] = len(acked) - result.get("complete_at_restart", 0)
            conn = await asyncpg.connect(dsn)
            try:
                incidents = await conn.fetchval("SELECT count(*) FROM incidents")
            finally:
                await conn.close()
            result["incidents"] = incidents
            result["duplicated"] = duplicates(slack, incidents)
    finally:
        if bot.poll() is None:
            bot.send_signal(signal.SIGTERM)
            await asyncio.to_thread(bot.wait, 30)
        await slack.stop()
    return result


def undisturbed_time_for(calm: dict[str, Any], incidents: int) -> float:
    """Seconds the undisturbed run took from its first send until `incidents` were complete."""
    reached = [t for t, done in calm["progress"] if done >= incidents]
    return reached[0] if reached else calm["total_s"]


def crash_row(label: str, crashed: dict[str, Any], calm: dict[str, Any]) -> str:
    after = crashed["after_restart_s"]
    left = crashed["open_at_restart"]
    floor = undisturbed_time_for(calm, left)
    ok = after <= TARGET_S and crashed["lost"] == 0 and crashed["duplicated"] == 0
    return (
        f"| {label} | {crashed['acked']}/{crashed['groups']} ({crashed['acked_before_kill']} before the kill,"
        f" {crashed['complete_at_kill']} of them complete then) | {crashed['lost']} | {crashed['duplicated']}"
        f" | {crashed['total_s']:.1f} s | **{after:.1f} s** for {left} incidents | {floor:.1f} s"
        f" | {after - floor:+.1f} s | ≤ {TARGET_S:.0f} s: {'PASS' if ok else 'FAIL'} |"
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--groups", type=int, default=300)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="incidentbot-crash-"))
    pg = await asyncio.to_thread(PostgresServer.start, base)
    rd = await asyncio.to_thread(RedisServer.start, base)
    try:
        calm = await run(pg, rd.url, args.groups, crash=False, tag="calm")
        same = await run(pg, rd.url, args.groups, crash=True, tag="kill")
        renamed = await run(pg, rd.url, args.groups, crash=True, tag="newname", new_name=True)
    finally:
        await asyncio.to_thread(rd.stop)
        await asyncio.to_thread(pg.stop)
    shown = {
        k: {f: v for f, v in r.items() if f != "progress"}
        for k, r in {"undisturbed": calm, "kill -9, same name": same, "kill -9, new name": renamed}.items()
    }
    print(json.dumps(shown, indent=2))
    table = f"""
| run | acknowledged | lost | duplicated | every group in Slack after the first send | after the restart | undisturbed, same number of incidents | overhead | target |
|---|---|---|---|---|---|---|---|---|
| undisturbed | {calm["acked"]}/{calm["groups"]} | {calm["lost"]} | {calm["duplicated"]} | {calm["total_s"]:.1f} s | — | — | — | — |
{crash_row(f"kill -9 at {KILL_AT} channels, restarted under the same replica name", same, calm)}
{crash_row(f"kill -9 at {KILL_AT} channels, replaced under a new replica name", renamed, calm)}
"""
    print(table)
    scale_env = f"BENCH_RATE_SCALE={RATE_SCALE:.0f} " if RATE_SCALE != 50 else ""
    command = (
        scale_env + ".venv/bin/python bench/crash.py" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else "")
    )
    write_section(
        RESULTS_MD,
        "crash.py" if RATE_SCALE == 50 else f"crash.py-{RATE_SCALE:.0f}x",
        f"## Faults: kill -9 mid-stream (bench/crash.py, Slack limits {RATE_SCALE:.0f}x faster)\n\n"
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores, Python"
        f" {platform.python_version()}: `{command}`\n\n"
        f"Real PostgreSQL and Redis on 127.0.0.1, the sandbox Slack with Slack's per-method limits"
        f" {RATE_SCALE:.0f}x faster (the bot told the same), the bot as a separate process. {args.groups} new"
        f" groups, {IN_FLIGHT} in flight, each re-sent until answered 200 (as Alertmanager does). 'After the"
        " restart': from the restarted bot answering /readyz until every acknowledged group has its channel,"
        " card and notification. 'Undisturbed, same number of incidents': how long the undisturbed run took"
        " from its first send to complete as many incidents as were still open at the restart, which is the"
        " floor Slack's limits set for that work (conversations.create: 17 at once, then"
        f" {0.3 * RATE_SCALE:.0f} a second at this scale); 'overhead' is the difference. Same replica name: the process restarted as a container"
        " restart in its pod would be (REPLICA_NAME is the pod's name in the Helm chart); new name: a"
        " replacement pod, which waits for the dead process's publish leases (6 s, renewed every 2 s) to"
        " lapse. Duplicated: channels beyond one per incident plus repeated card or notification messages"
        " (by their metadata keys).\n" + table,
    )


if __name__ == "__main__":
    asyncio.run(main())
