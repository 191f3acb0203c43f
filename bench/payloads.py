"""Alertmanager v4 webhook bodies for the ingest benchmark (shared by bench/ingest.py and bench/loadgen.py).

Everything is deterministic: the load generator (a separate process) rebuilds exactly the bodies
the orchestrator expects, from a few parameters.
"""

from __future__ import annotations

import json
from typing import Any

STARTS_AT = "2026-11-22T16:00:00Z"
GO_ZERO = "0001-01-01T00:00:00Z"


def _alert(group: str, alertname: str, index: int, fingerprint: str, severity: str) -> dict[str, Any]:
    return {
        "status": "firing",
        "labels": {
            "alertname": alertname,
            "namespace": group,
            "service": f"svc-{index % 7}",
            "pod": f"{group}-pod-{index:03d}",
            "instance": f"10.0.{index // 250}.{index % 250}:9100",
            "severity": severity,
        },
        "annotations": {
            "summary": f"{alertname} in {group}",
            "description": f"Error ratio above 5% for 5m on {group}-pod-{index:03d} (instance {index}).",
            "runbook_url": f"https://runbooks.example.com/{alertname.lower()}",
        },
        "startsAt": STARTS_AT,
        "endsAt": GO_ZERO,
        "generatorURL": "http://prometheus:9090/graph?g0.expr=rate%28http_errors_total%5B5m%5D%29+%3E+0.05",
        "fingerprint": fingerprint,
    }


def group_body(
    group: str, alertname: str, fingerprints: list[str], *, severity: str = "critical"
) -> dict[str, Any]:
    """One group snapshot (what Alertmanager sends on every group_interval): all its alerts firing."""
    alerts = [_alert(group, alertname, i, fp, severity) for i, fp in enumerate(fingerprints)]
    return {
        "receiver": "incidentbot",
        "status": "firing",
        "alerts": alerts,
        "groupLabels": {"alertname": alertname, "namespace": group},
        "commonLabels": {"alertname": alertname, "namespace": group, "severity": severity},
        # A distinct summary per group gives every incident its own title, hence its own channel name.
        "commonAnnotations": {"summary": f"{alertname} in {group}"},
        "externalURL": "http://alertmanager:9093",
        "version": "4",
        "groupKey": f'{{}}/{{severity="{severity}"}}:{{alertname="{alertname}", namespace="{group}"}}',
        "truncatedAlerts": 0,
    }


def ingest_bodies(requests: int, groups: int, prefix: str = "ingest") -> list[bytes]:
    """`requests` deliveries spread round-robin over `groups` groups. A group's k-th delivery is its
    snapshot with min(k+1, 5) firing alerts (a group growing to 5 alerts, then re-sent unchanged)."""
    bodies = []
    for n in range(requests):
        g, k = n % groups, n // groups
        group = f"{prefix}-{g:04d}"
        fps = [f"{prefix}{g:04d}a{i:02d}" for i in range(min(k + 1, 5))]
        bodies.append(json.dumps(group_body(group, "HighErrorRate", fps)).encode())
    return bodies


def storm_bodies(groups: int, rounds: int, step: int) -> list[bytes]:
    """Alertmanager during an outage: round r (1..rounds) re-sends every group with r*step alerts
    (group_interval updates), so groups*rounds deliveries carry groups*rounds*step distinct alerts.
    Round-major order: all groups' round-1 snapshots, then round 2, ..."""
    bodies = []
    for r in range(1, rounds + 1):
        for g in range(groups):
            group = f"storm-{g:04d}"
            fps = [f"storm{g:04d}a{i:04d}" for i in range(r * step)]
            bodies.append(json.dumps(group_body(group, "ServiceDown", fps)).encode())
    return bodies


def probe_body(index: int) -> bytes:
    """A brand-new incident (its own group) with two firing alerts."""
    group = f"probe-{index:04d}"
    fps = [f"probe{index:04d}a{i}" for i in range(2)]
    return json.dumps(group_body(group, "LatencyProbe", fps)).encode()


def build(spec: dict[str, Any]) -> list[bytes]:
    kind = spec["kind"]
    if kind == "ingest":
        return ingest_bodies(int(spec["requests"]), int(spec["groups"]), spec.get("prefix", "ingest"))
    if kind == "storm":
        return storm_bodies(int(spec["groups"]), int(spec["rounds"]), int(spec["step"]))
    raise ValueError(f"unknown body kind {kind!r}")
