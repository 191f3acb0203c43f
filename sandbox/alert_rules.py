"""The seed systems' alert rules the sandbox's Prometheus evaluates, and where each one's fault
is cured: their expressions are the seed runbooks' rules (as the bundled playbooks state them),
their labels what the service catalog and the playbooks' remediation targets expect."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = ["ALERT_RULES", "AlertRule", "write_rules"]


@dataclass(frozen=True, slots=True)
class AlertRule:
    alert: str
    expr: str
    labels: dict[str, str]
    summary: str
    #: the deployment (namespace, name) whose restart or rollback cures the fault
    cured_by: tuple[str, str] | None = None


ALERT_RULES: tuple[AlertRule, ...] = (
    AlertRule(
        "APIDown",
        'up{job="skillquest-api"} == 0',
        {"namespace": "skillquest", "service": "api", "severity": "critical"},
        "SkillQuest API is down",
        ("skillquest", "skillquest-api"),
    ),
    AlertRule(
        "HighAPIErrorRate",
        'sum(rate(http_requests_total{service="api", status=~"5.."}[5m]))'
        ' / sum(rate(http_requests_total{service="api"}[5m])) > 0.01',
        {"namespace": "skillquest", "service": "api", "severity": "critical"},
        "SkillQuest API 5xx error rate above 1%",
        ("skillquest", "skillquest-api"),
    ),
    AlertRule(
        "ServiceDown",
        'up{job="birthday-scheduler"} == 0',
        {"namespace": "birthday-scheduler", "severity": "critical"},
        "Birthday Scheduler API is down",
        ("birthday-scheduler", "birthday-scheduler-api"),
    ),
    AlertRule(
        "SkillForgeLatencyP95High",
        'search_latency_p95{service="search"} > 0.35',
        {"namespace": "api", "deployment": "search-api", "severity": "critical"},
        "search-api p95 latency above the SLO",
        ("api", "search-api"),
    ),
)


def write_rules(path: Path, rules: tuple[AlertRule, ...] = ALERT_RULES) -> Path:
    """A Prometheus rule file of ``rules``; they fire at once (no ``for``) so the demo is quick."""
    group: dict[str, Any] = {
        "name": "seed-systems",
        "rules": [
            {
                "alert": rule.alert,
                "expr": rule.expr,
                "labels": rule.labels,
                "annotations": {
                    "summary": rule.summary,
                    "description": f"Fired by the sandbox Prometheus: {rule.expr}",
                },
            }
            for rule in rules
        ],
    }
    path.write_text(yaml.safe_dump({"groups": [group]}, sort_keys=False), encoding="utf-8")
    return path
