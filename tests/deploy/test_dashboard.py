"""helm/incidentbot/dashboards/incidentbot.json: the panels asked for, metric names the bot exports,
and PromQL that Prometheus parses (promtool)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from bot.obs.metrics import Metrics
from tests.deploy.conftest import CHART

DASHBOARD = CHART / "dashboards" / "incidentbot.json"
# Exported by the remediation engine once it lands; the dashboard and the alerts use it already.
NOT_YET_EXPORTED = {"incidentbot_remediations_total"}
METRIC = re.compile(r"\b(incidentbot_[a-z0-9_]+)")


def load() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text())
    assert isinstance(data, dict)
    return data


def panels() -> list[dict[str, Any]]:
    return [p for p in load()["panels"] if p["type"] != "row"]


def exported_sample_names() -> set[str]:
    """Every series name the bot's registry exports, whether or not it has samples yet (a labelled
    counter has none until first used): counters as NAME_total, histograms as NAME_bucket/_sum/_count."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    return {family.name + s for family in Metrics().registry.collect() for s in suffixes[family.type]}


def test_dashboard_shape() -> None:
    dashboard = load()
    assert dashboard["uid"] == "incidentbot"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert variables == {"datasource", "job"}
    for panel in panels():
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["gridPos"]["x"] >= 0 and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24


def test_required_panels() -> None:
    by_title = {p["title"]: " ".join(t["expr"] for t in p["targets"]) for p in panels()}

    def has(metric: str, *, by: str = "") -> bool:
        return any(metric in expr and by in expr for expr in by_title.values())

    assert has("incidentbot_webhooks_received_total")
    assert has("incidentbot_webhooks_rejected_total", by="reason")
    assert has("incidentbot_inbox_oldest_pending_seconds")
    assert has("incidentbot_processing_lag_seconds_bucket")
    assert has("incidentbot_slack_calls_total", by="method")
    assert has("incidentbot_slack_ratelimited_total", by="method")
    assert has("incidentbot_remediations_total", by="action, result")
    assert has("incidentbot_incidents_opened_total")
    heatmaps = [p for p in panels() if p["type"] == "heatmap"]
    assert any("incidentbot_publish_seconds_bucket" in t["expr"] for p in heatmaps for t in p["targets"])


def test_every_metric_is_exported_by_the_bot() -> None:
    exported = exported_sample_names()
    used = {m for p in panels() for t in p["targets"] for m in METRIC.findall(t["expr"])}
    assert used - exported - NOT_YET_EXPORTED == set()
    # The PrometheusRule alerts use these too.
    rule_template = (CHART / "templates" / "prometheusrule.yaml").read_text()
    assert set(METRIC.findall(rule_template)) - exported - NOT_YET_EXPORTED == set()


def test_every_expression_parses(promtool: str, tmp_path: Path) -> None:
    # Grafana's variables replaced by what they stand for, then checked as recording rules.
    rules = []
    for i, panel in enumerate(panels()):
        for target in panel["targets"]:
            expr = target["expr"].replace("$__rate_interval", "5m").replace('"$job"', '".+"')
            assert "$" not in expr, expr
            rules.append({"record": f"dashboard:panel{i}:{target['refId'].lower()}", "expr": expr})
    rules_file = tmp_path / "dashboard-rules.yaml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(rules_file)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
