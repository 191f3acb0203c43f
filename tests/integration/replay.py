"""Replay recorded Alertmanager storms (tests/fixtures/storms/*.json) through a running bot and
score its grouping against the fixture's labels.

A fixture is a list of steps: a delivery (one alert as its own Alertmanager group: alertname,
labels, start minute, status, the expected root problem `expect`, or null for one that must
open nothing) or `{"resolve": "<expect>"}` (a human resolves that problem's incident). Labels
may name the sandbox cluster's objects: `{node:N}` is the N-th node, `pod_on_node: [N, i]` the
i-th pod on it (its namespace and name), so topology resolves through the real API.

Pairwise scoring over the alerts that have an expected problem: a pair is "same" when both are
in one incident; precision and recall of "same incident" against the fixture."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import combinations
from pathlib import Path
from typing import Any

import aiohttp

from bot.app import BotServer
from sandbox.kubernetes import KubeSandbox
from tests.integration.rig import post_alert

STORMS = Path(__file__).parent.parent / "fixtures" / "storms"
T0 = datetime(2026, 11, 22, 16, 0, tzinfo=UTC)


@dataclass
class Score:
    name: str
    pairs: int
    precision: float
    recall: float
    incidents: int
    expected_incidents: int
    false_attachments: int
    # expected problem → the incident ids its alerts ended in
    placed: dict[str, set[int]] = field(default_factory=dict)
    unplaced: list[str] = field(default_factory=list)  # alerts expected to open nothing, with an incident


def storm_files() -> list[Path]:
    return sorted(STORMS.glob("*.json"))


def _resolve_labels(step: dict[str, Any], kube: KubeSandbox) -> dict[str, str]:
    nodes = sorted(n["metadata"]["name"] for n in kube.objects("nodes", None))
    labels = {
        k: v.replace("{node:0}", nodes[0]) if isinstance(v, str) else v for k, v in step["labels"].items()
    }
    for index, name in enumerate(nodes):
        labels = {k: v.replace(f"{{node:{index}}}", name) for k, v in labels.items()}
    if "pod_on_node" in step:
        node_index, pod_index = step["pod_on_node"]
        pods = sorted(
            (p["metadata"]["namespace"], p["metadata"]["name"]) for p in kube.pods_on_node(nodes[node_index])
        )
        if pod_index >= len(pods):
            raise ValueError(f"the sandbox node {nodes[node_index]} runs only {len(pods)} pods")
        labels["namespace"], labels["pod"] = pods[pod_index]
    return labels


def delivery(step: dict[str, Any], labels: dict[str, str]) -> tuple[dict[str, Any], str, datetime]:
    """The Alertmanager body of one step, the alert's fingerprint and start."""
    name = step["alertname"]
    full = {"alertname": name, **labels}
    starts = T0 + timedelta(minutes=float(step.get("minute", 0)))
    identity = ",".join(f"{k}={v}" for k, v in sorted(full.items()) if k != "severity")
    fingerprint = f"{abs(hash(identity)) % (1 << 60):016x}"
    status = step.get("status", "firing")
    body = {
        "receiver": "incidentbot",
        "status": status,
        "alerts": [
            {
                "status": status,
                "labels": full,
                "annotations": {"summary": f"{name} ({labels.get('namespace') or labels.get('node') or ''})"},
                "startsAt": starts.isoformat().replace("+00:00", "Z"),
                "endsAt": (starts + timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
                if status == "resolved"
                else "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
                "fingerprint": fingerprint,
            }
        ],
        "groupLabels": {"alertname": name},
        "commonLabels": full,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "version": "4",
        "groupKey": "{}:{" + identity + "}",
        "truncatedAlerts": 0,
    }
    return body, fingerprint, starts


async def drained(bot: BotServer, timeout: float = 30.0) -> None:
    """Until every stored delivery has been applied (bounded)."""
    deadline = time.monotonic() + timeout
    while await bot.parts.store.pool.fetchval(
        "SELECT count(*) FROM webhook_inbox WHERE processed_at IS NULL AND attempts < 10"
    ):
        if time.monotonic() > deadline:
            raise TimeoutError("deliveries were not applied in time")
        await asyncio.sleep(0.02)


async def replay(
    storm: dict[str, Any], bot: BotServer, http: aiohttp.ClientSession, kube: KubeSandbox
) -> Score:
    expected: dict[tuple[str, datetime], str | None] = {}
    for step in storm["steps"]:
        if "resolve" in step:
            await _resolve(bot, expected, step["resolve"])
            continue
        body, fingerprint, starts = delivery(step, _resolve_labels(step, kube))
        status, answer = await post_alert(http, bot, body)
        if status != 200:
            raise RuntimeError(f"delivery refused: {status} {answer}")
        expected[(fingerprint, starts)] = step.get("expect")
        await drained(bot)
    return await score(storm["name"], bot, expected)


async def _resolve(bot: BotServer, expected: dict[tuple[str, datetime], str | None], label: str) -> None:
    incidents = await _placement(bot, expected)
    for key, problem in expected.items():
        if problem == label and incidents.get(key) is not None:
            incident = await bot.parts.store.get_incident(incidents[key] or 0)
            assert incident is not None
            await bot.parts.flows.incidents.resolve(incident, "U0ALICE", "replay: resolved")
            return
    raise ValueError(f"no incident holds problem {label!r}")


async def _placement(
    bot: BotServer, expected: dict[tuple[str, datetime], str | None]
) -> dict[tuple[str, datetime], int | None]:
    rows = await bot.parts.store.pool.fetch(
        "SELECT fingerprint, starts_at, incident_id FROM alerts WHERE fingerprint = ANY($1::text[])",
        [f for f, _ in expected],
    )
    return {(r["fingerprint"], r["starts_at"]): r["incident_id"] for r in rows}


async def score(name: str, bot: BotServer, expected: dict[tuple[str, datetime], str | None]) -> Score:
    placed = await _placement(bot, expected)
    labelled = [(k, v) for k, v in expected.items() if v is not None]
    tp = fp = fn = 0
    for (a, la), (b, lb) in combinations(labelled, 2):
        same = placed.get(a) is not None and placed.get(a) == placed.get(b)
        if same and la == lb:
            tp += 1
        elif same:
            fp += 1
        elif la == lb:
            fn += 1
    by_problem: dict[str, set[int]] = {}
    for key, problem in labelled:
        by_problem.setdefault(problem, set()).add(placed.get(key) or 0)
    incidents = {placed.get(k) for k, _ in labelled if placed.get(k) is not None}
    # An alert in an incident whose majority problem is another one was attached falsely.
    majority: dict[int, str] = {}
    for incident in incidents:
        assert incident is not None
        counts = Counter(p for k, p in labelled if placed.get(k) == incident)
        majority[incident] = counts.most_common(1)[0][0]
    false = sum(1 for k, p in labelled if placed.get(k) is not None and majority[placed[k] or 0] != p)
    return Score(
        name=name,
        pairs=tp + fp + fn,
        precision=tp / (tp + fp) if tp + fp else 1.0,
        recall=tp / (tp + fn) if tp + fn else 1.0,
        incidents=len(incidents),
        expected_incidents=len(by_problem),
        false_attachments=false,
        placed=by_problem,
        unplaced=[
            f"{k[0]}@{k[1]:%H:%M}" for k, v in expected.items() if v is None and placed.get(k) is not None
        ],
    )


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data
