"""`incidentbot send-test-alert`: post a realistic Alertmanager v4 webhook to a running bot."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote


def build_payload(
    alertname: str,
    labels: dict[str, str],
    *,
    resolve: bool,
    starts_at: datetime,
    now: datetime,
    annotations: dict[str, str] | None = None,
    external_url: str = "http://alertmanager.local:9093",
) -> dict[str, Any]:
    """One-alert group exactly as Alertmanager 0.25 sends it (protocols.md A.1)."""
    all_labels = {"alertname": alertname, "severity": "critical", **labels}
    fingerprint = hashlib.sha256(json.dumps(sorted(all_labels.items())).encode()).hexdigest()[:16]
    status = "resolved" if resolve else "firing"
    group_labels = {k: all_labels[k] for k in ("alertname", "namespace") if k in all_labels}
    group_key = "{}:{" + ", ".join(f'{k}="{v}"' for k, v in sorted(group_labels.items())) + "}"
    alert_annotations = annotations or {
        "summary": f"{alertname} is firing" + (f" in {labels['namespace']}" if "namespace" in labels else ""),
        "description": f"Test alert sent by incidentbot send-test-alert at {now:%Y-%m-%d %H:%M:%S} UTC.",
    }
    expr = f'ALERTS{{alertname="{alertname}"}}'
    return {
        "receiver": "incidentbot",
        "status": status,
        "alerts": [
            {
                "status": status,
                "labels": all_labels,
                "annotations": alert_annotations,
                "startsAt": starts_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
                "endsAt": now.isoformat().replace("+00:00", "Z") if resolve else "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.local:9090/graph?g0.expr="
                + quote(expr, safe="")
                + "&g0.tab=1",
                "fingerprint": fingerprint,
            }
        ],
        "groupLabels": group_labels,
        "commonLabels": all_labels,
        "commonAnnotations": alert_annotations,
        "externalURL": external_url,
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
    }
