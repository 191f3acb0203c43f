"""Correlation: the storms of tests/fixtures/storms replayed through the real bot (pairwise
precision and recall of "same incident", incidents per storm, false attachments), and the cost
of the correlation decision per delivery, p99 with and without it in the same run (issue #13,
points 1 and 3; target ≤ 5 ms added p99).

The cost: NEW alert groups (each a group never seen, so the decision runs) applied with the
intake's own `apply_alertmanager` in a transaction that is rolled back, alternating with and
without the correlator, against open incidents that already hold correlated groups. Half of the
groups name a sandbox pod, so ownership is resolved through the sandbox apiserver (then cached,
as in a storm).

    .venv/bin/python bench/correlate.py [--samples 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sections import RESULTS_MD, write_section  # noqa: E402

from bot.app import BotServer  # noqa: E402
from bot.sources.alertmanager import AMPayload  # noqa: E402
from bot.store.incidents import IntakeTx  # noqa: E402
from sandbox.kubernetes import KubeSandbox  # noqa: E402
from sandbox.services import PostgresServer, RedisServer  # noqa: E402
from sandbox.slack import SlackSandbox  # noqa: E402
from tests.integration.replay import Score, delivery, load, replay, storm_files  # noqa: E402
from tests.integration.rig import bot_settings, playbooks_with_roles, running_bot  # noqa: E402


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def one_storm(path: Path, base: Path, pg: PostgresServer, redis_url: str, index: int) -> Score:
    slack = SlackSandbox(incident_channel="incident")
    kube = KubeSandbox(rollout_delay=0.05)
    kube.seed_demo()
    await slack.start()
    await kube.start()
    try:
        settings = bot_settings(
            slack,
            pg.create_database(f"bench_correlate_{index}"),
            redis_url,
            playbooks_dir=playbooks_with_roles(base / f"playbooks-{index}"),
            kubeconfig=str(kube.write_kubeconfig(base / f"kubeconfig-{index}")),
        )
        async with running_bot(settings) as bot, aiohttp.ClientSession() as http:
            return await replay(load(path), bot, http, kube)
    finally:
        await kube.stop()
        await slack.stop()


async def cost(bot: BotServer, kube: KubeSandbox, samples: int) -> tuple[list[float], list[float]]:
    pipeline = bot.parts.pipeline
    correlator = pipeline.correlator
    pods = sorted((p["metadata"]["namespace"], p["metadata"]["name"]) for p in kube.objects("pods", None))
    with_ms: list[float] = []
    without_ms: list[float] = []
    for i in range(samples * 2):
        namespace, pod = pods[i % len(pods)]
        labels = {"namespace": namespace, "severity": "warning", "job": f"job-{i % 7}"}
        if i % 4 < 2:
            labels["pod"] = pod
        body, _, _ = delivery({"alertname": f"BenchAlert{i % 13}", "minute": i % 9}, labels)
        body["groupKey"] = f"bench:{i}"
        payload = AMPayload.model_validate(body)
        use = i % 2 == 0
        pipeline.correlator = correlator if use else None
        async with bot.parts.store.pool.acquire() as conn:
            tr = conn.transaction()
            await tr.start()
            started = time.perf_counter()
            await pipeline.apply_alertmanager(IntakeTx(conn), payload, 10**9 + i)
            elapsed = (time.perf_counter() - started) * 1000
            await tr.rollback()
        (with_ms if use else without_ms).append(elapsed)
    pipeline.correlator = correlator
    return with_ms, without_ms


async def cost_run(
    base: Path, pg: PostgresServer, redis_url: str, samples: int
) -> tuple[list[float], list[float]]:
    slack = SlackSandbox(incident_channel="incident")
    kube = KubeSandbox(rollout_delay=0.05)
    kube.seed_demo()
    await slack.start()
    await kube.start()
    try:
        settings = bot_settings(
            slack,
            pg.create_database("bench_correlate_cost"),
            redis_url,
            playbooks_dir=playbooks_with_roles(base / "playbooks-cost"),
            kubeconfig=str(kube.write_kubeconfig(base / "kubeconfig-cost")),
        )
        async with running_bot(settings) as bot, aiohttp.ClientSession() as http:
            # Open incidents holding correlated groups: the storms' candidates.
            for path in storm_files():
                await replay(load(path), bot, http, kube)
            await cost(bot, kube, 50)  # warm-up: connections, caches
            return await cost(bot, kube, samples)
    finally:
        await kube.stop()
        await slack.stop()


async def main(samples: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        pg = PostgresServer.start(base)
        redis = RedisServer.start(base)
        try:
            scores = [await one_storm(path, base, pg, redis.url, i) for i, path in enumerate(storm_files())]
            with_ms, without_ms = await cost_run(base, pg, redis.url, samples)
        finally:
            redis.stop()
            pg.stop()
    lines = [
        "## Correlation (issue #13): replayed storms and the decision's cost",
        "",
        f"`.venv/bin/python bench/correlate.py --samples {samples}` on {platform.machine()},"
        f" Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}.",
        "",
        "| storm | alert pairs | precision | recall | incidents (expected) | false attachments |",
        "|---|---|---|---|---|---|",
    ]
    for s in scores:
        lines.append(
            f"| {s.name} | {s.pairs} | {s.precision:.2f} | {s.recall:.2f} | {s.incidents} ({s.expected_incidents})"
            f" | {s.false_attachments} |"
        )
    added = p(with_ms, 0.99) - p(without_ms, 0.99)
    lines += [
        "",
        f"Decision cost per NEW group delivery ({samples} each, interleaved, same run, rolled back):",
        "",
        "| | p50 ms | p99 ms | mean ms |",
        "|---|---|---|---|",
        f"| without correlation | {p(without_ms, 0.5):.2f} | {p(without_ms, 0.99):.2f} | {statistics.mean(without_ms):.2f} |",
        f"| with correlation | {p(with_ms, 0.5):.2f} | {p(with_ms, 0.99):.2f} | {statistics.mean(with_ms):.2f} |",
        "",
        f"Added p99: **{added:.2f} ms** (target ≤ 5 ms): {'met' if added <= 5 else 'NOT met'}.",
    ]
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    write_section(RESULTS_MD, "correlate", text)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000)
    asyncio.run(main(parser.parse_args().samples))
