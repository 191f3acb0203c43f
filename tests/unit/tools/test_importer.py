"""The runbook importer: seeds and sample runbooks round-trip to valid playbooks; kubectl,
PromQL and alert recognition; the CLI."""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.config.directory import validate_dir
from bot.config.playbooks import DEFAULT_PLAYBOOKS_DIR, load_playbooks
from bot.core.playbooks import Playbook
from bot.tools.importer import import_playbooks, import_runbook, kubectl_proposal

REPO = Path(__file__).resolve().parents[3]
RUNBOOKS = REPO / "tests" / "data" / "runbooks"
SEEDS = RUNBOOKS / "seeds"  # copies of the five seed runbooks (../shared/seeds)


def validated(tmp_path: Path, yaml_text: str, name: str = "draft.yaml") -> list[str]:
    """Problems of a directory holding the draft and the bundled policy.yaml."""
    (tmp_path / name).write_text(yaml_text, encoding="utf-8")
    shutil.copy(DEFAULT_PLAYBOOKS_DIR / "policy.yaml", tmp_path / "policy.yaml")
    return [str(p) for p in validate_dir(tmp_path)]


def alertnames(playbooks: list[dict[str, Any]]) -> set[str]:
    names: set[str] = set()
    for pb in playbooks:
        value = pb.get("match", {}).get("alertname")
        names.update([value] if isinstance(value, str) else value or [])
    return names


def by_alert(playbooks: list[dict[str, Any]], alertname: str) -> dict[str, Any]:
    found = [pb for pb in playbooks if pb.get("match", {}).get("alertname") == alertname]
    assert len(found) == 1, (alertname, [pb["name"] for pb in playbooks])
    return found[0]


def remediations(playbooks: list[dict[str, Any]], action: str | None = None) -> list[dict[str, Any]]:
    return [r for pb in playbooks for r in pb.get("remediations", []) if action in (None, r["action"])]


def one(markdown: str, **kwargs: Any) -> dict[str, Any]:
    playbooks = import_playbooks(markdown, **kwargs)
    assert len(playbooks) == 1, [pb["name"] for pb in playbooks]
    return playbooks[0]


# --------------------------------------------------------------------------- the five seeds

SEED_ALERTS = {
    # SkillQuest: the 12 rules of its Prometheus rule YAML (plain text, not fenced)
    "000_7991ec816a1f5bf4.txt": {
        "HighAPILatency",
        "HighAPIErrorRate",
        "APIDown",
        "DatabaseConnectionPoolExhausted",
        "SlowQueries",
        "DatabaseDiskSpaceLow",
        "RedisMemoryHigh",
        "RedisHitRateLow",
        "RedisDown",
        "AIHighLatency",
        "AIHighCost",
        "AIRateLimited",
    },
    # OnQuota: troubleshooting guides, no alert names -> on demand
    "001_cf6cf474154f90e9.txt": set(),
    # SkillForge: thresholds but no alert names -> on demand
    "002_434ae124254ae088.txt": set(),
    # SkillMeat: "**Alert**: `Name`" lines under "### High Error Rate" headings
    "003_912fabb1601a7028.txt": {
        "HighErrorRate",
        "HighLatency",
        "GitHubRateLimitLow",
        "MCPServerUnhealthy",
        "HighMemoryUsage",
    },
    # Birthday Scheduler: the 10 alert procedures ("##### 1. ServiceDown") and the
    # troubleshooting problems' "- Alert: HighQueueDepth" / "- Alert: WorkerCrashRecovery"
    "004_c6db637554e88bd3.txt": {
        "ServiceDown",
        "HighErrorRate",
        "DatabaseConnectionPoolExhausted",
        "QueueDepthCritical",
        "CircuitBreakerOpen",
        "DLQDepthHigh",
        "HighLatency",
        "MemoryUsageHigh",
        "SlowDatabaseQueries",
        "RetryRateHigh",
        "HighQueueDepth",
        "WorkerCrashRecovery",
    },
}


def test_the_seed_copies_are_all_here() -> None:
    assert sorted(p.name for p in SEEDS.glob("*.txt")) == sorted(SEED_ALERTS)


@pytest.mark.parametrize("seed", sorted(SEED_ALERTS))
def test_seed_round_trip_validates_and_matches_its_alerts(seed: str, tmp_path: Path) -> None:
    text = (SEEDS / seed).read_text(encoding="utf-8")
    yaml_text = import_runbook(text, source_name=seed)
    assert validated(tmp_path, yaml_text) == []
    playbooks = import_playbooks(text, source_name=seed)
    assert yaml.safe_load(yaml_text) == playbooks
    assert alertnames(playbooks) == SEED_ALERTS[seed]
    assert playbooks, seed
    names = [pb["name"] for pb in playbooks]
    assert len(names) == len(set(names))
    loaded = load_playbooks(tmp_path)
    for alertname in SEED_ALERTS[seed]:
        match = loaded.match({"alertname": alertname})
        assert match is not None and alertname in match.match.alertnames
    if not SEED_ALERTS[seed]:
        assert all(pb["on_demand"] is True and "match" not in pb for pb in playbooks)


def test_skillquest_rules_give_severity_graph_threshold_and_runbook_steps() -> None:
    playbooks = import_playbooks((SEEDS / "000_7991ec816a1f5bf4.txt").read_text(), "000.txt")
    assert {pb["system"] for pb in playbooks} == {"skillquest"}
    pool = by_alert(playbooks, "DatabaseConnectionPoolExhausted")
    assert pool["severity"] == "P1"  # labels: severity: critical
    assert pool["graphs"][0] == {
        "title": "DB connection pool above 85%",
        "query": "pg_stat_activity_count / pg_settings_max_connections",
        "unit": "ratio",
        "threshold": 0.85,
    }
    # "Runbook 1: Database Connection Pool Exhaustion" is attached to the rule by its title
    titles = [s["title"] for s in pool["steps"]]
    assert "Kill long-running queries" in titles
    assert "pg_terminate_backend" in pool["steps"][titles.index("Kill long-running queries")]["code"]
    latency = by_alert(playbooks, "HighAPILatency")
    assert latency["severity"] == "P2"  # warning
    assert latency["graphs"][0]["unit"] == "s"
    assert latency["graphs"][0]["threshold"] == 2
    assert by_alert(playbooks, "DatabaseDiskSpaceLow")["graphs"][0]["unit"] == "%"
    assert by_alert(playbooks, "APIDown")["graphs"][0]["query"] == 'up{job="skillquest-api"}'
    assert "AI_MAX_CONCURRENT=3" in str(by_alert(playbooks, "AIRateLimited")["steps"])


def test_skillmeat_steps_and_promql_graphs() -> None:
    playbooks = import_playbooks((SEEDS / "003_912fabb1601a7028.txt").read_text(), "003.txt")
    errors = by_alert(playbooks, "HighErrorRate")
    assert errors["system"] == "skillmeat"
    assert errors["severity"] == "P2"
    assert errors["graph_alert_expr"] is True  # no rule expression in the runbook
    steps = {s["title"]: s for s in errors["steps"]}
    assert steps["Check error distribution"]["language"] == "promql"
    assert "Common Causes" in steps
    assert steps["Immediate mitigation"]["code"].startswith("# Restart API service if needed")
    graphs = {g["title"]: g for g in errors["graphs"]}
    assert graphs["Identify affected endpoints"]["threshold"] == 0
    assert graphs["Check error distribution"]["unit"] == "req/s"
    memory = by_alert(playbooks, "HighMemoryUsage")
    assert memory["graphs"][0]["unit"] == "bytes"
    assert by_alert(playbooks, "MCPServerUnhealthy")["severity"] == "P1"


def test_birthday_scheduler_procedures_become_typed_proposals() -> None:
    playbooks = import_playbooks((SEEDS / "004_c6db637554e88bd3.txt").read_text(), "004.txt")
    assert {pb["system"] for pb in playbooks} == {"birthday-scheduler"}
    down = by_alert(playbooks, "ServiceDown")
    assert down["severity"] == "P1"
    assert [s["title"] for s in down["steps"][:4]] == [
        "Check pod status",
        "Check recent events",
        "Check logs for crash",
        "Check node health",
    ]
    assert down["graphs"][0]["query"] == 'up{job="birthday-scheduler"}'
    assert down["graphs"][0]["threshold"] == 0
    actions = {r["action"]: r["params"] for r in down["remediations"]}
    assert actions["rollout_restart"] == {
        "namespace": "${namespace:-default}",
        "deployment": "birthday-scheduler-api",
    }
    assert actions["drain"] == {"node": "$node", "ignore_daemonsets": True}
    assert actions["cordon"] == {"node": "$node"}
    assert actions["scale"]["replicas"] == 5
    kinds = {d["kind"] for d in down["diagnostics"]}
    assert kinds == {"pods", "events", "logs"}
    undo = remediations([by_alert(playbooks, "HighErrorRate")], "rollout_undo")
    assert undo[0]["params"] == {"namespace": "${namespace:-default}", "deployment": "birthday-scheduler-api"}
    # kubectl exec (psql in postgres-0) stays step text: no exec proposal anywhere
    assert remediations(playbooks, "exec") == []
    pool = by_alert(playbooks, "DatabaseConnectionPoolExhausted")
    assert "kubectl exec -it postgres-0" in str(pool["steps"])
    assert remediations([pool], "set_env")[0]["params"]["env"] == {"DATABASE_POOL_MAX": "50"}
    queue = by_alert(playbooks, "HighQueueDepth")
    resources = remediations([queue], "set_resources")[0]["params"]
    assert resources["limits"] == {"cpu": "2000m", "memory": "2Gi"}
    assert resources["requests"] == {"cpu": "1000m", "memory": "1Gi"}
    assert remediations([queue], "scale")[0]["params"]["replicas"] == 20
    # CircuitBreakerOpen is named twice (alert procedure and troubleshooting): one playbook
    breaker = by_alert(playbooks, "CircuitBreakerOpen")
    assert any(s["title"].startswith("Problem: Circuit Breaker Stuck Open") for s in breaker["steps"])


def test_onquota_troubleshooting_guides_are_on_demand() -> None:
    playbooks = import_playbooks((SEEDS / "001_cf6cf474154f90e9.txt").read_text(), "001.txt")
    titles = [pb["title"] for pb in playbooks]
    for guide in (
        "Service Won't Start",
        "Database Connection Failures",
        "High Memory Usage",
        "High CPU Usage",
        "Backup Failures",
        "Celery Task Queue Buildup",
        "Prometheus/Grafana Issues",
    ):
        assert guide in titles
    assert {pb["system"] for pb in playbooks} == {"onquota"}
    failures = playbooks[titles.index("Database Connection Failures")]
    assert [s["title"] for s in failures["steps"]] == [
        "Check PostgreSQL",
        "Verify connection string",
        "Check network",
        "Solution",
    ]
    assert "Cannot connect to database" in failures["summary"]


def test_skillforge_mitigations_scale_and_create_job() -> None:
    playbooks = import_playbooks((SEEDS / "002_434ae124254ae088.txt").read_text(), "002.txt")
    scale = {r["params"]["deployment"]: r["params"] for r in remediations(playbooks, "scale")}
    assert scale["search-api"] == {"namespace": "api", "deployment": "search-api", "replicas": 9}
    assert scale["analytics-event-router"] == {
        "namespace": "data-pipelines",
        "deployment": "analytics-event-router",
        "replicas": 4,
    }
    # the job name "search-cache-warm-manual-$(date +%s)" is not a valid name: left to the bot
    (job,) = remediations(playbooks, "create_job_from_cronjob")
    assert job["params"] == {"namespace": "api", "cronjob": "search-cache-warm"}
    # the annotate command is not a remediation
    assert {r["action"] for r in remediations(playbooks)} == {"scale", "create_job_from_cronjob"}
    search = next(pb for pb in playbooks if pb["title"].startswith("Search latency variance"))
    assert search["steps"][0]["title"] == "Scale `search-api` deployment from 6→9 replicas"


# --------------------------------------------------------------------------- the sample runbooks


@pytest.mark.parametrize("sample", sorted(p.name for p in RUNBOOKS.glob("*.md")))
def test_sample_runbooks_import_and_validate(sample: str, tmp_path: Path) -> None:
    text = (RUNBOOKS / sample).read_text(encoding="utf-8")
    assert validated(tmp_path, import_runbook(text, source_name=sample)) == []


def test_sample_pod_crash_looping_front_matter() -> None:
    pb = one((RUNBOOKS / "pod-crash-looping.md").read_text(), source_name="pod-crash-looping.md")
    assert pb["match"] == {"alertname": "PodCrashLooping"}
    assert pb["system"] == "payments"
    assert pb["severity"] == "P1"
    assert pb["title"] == "Payments API pods crash looping (PodCrashLooping)"
    assert "CrashLoopBackOff" in pb["summary"]
    assert [s["title"] for s in pb["steps"][:2]] == [
        "Find the crashing pods",
        "Read the logs of the previous container",
    ]
    actions = {r["action"]: r["params"] for r in pb["remediations"]}
    assert actions["rollout_undo"] == {
        "namespace": "$namespace",
        "deployment": "$deployment",
        "to_revision": 3,
    }
    assert actions["set_resources"] == {
        "namespace": "payments",
        "deployment": "payments-api",
        "container": "api",
        "limits": {"cpu": "1", "memory": "1Gi"},
        "requests": {"cpu": "500m", "memory": "512Mi"},
    }
    assert actions["delete_pod"] == {"namespace": "$namespace", "pod": "$pod", "grace_period_seconds": 10}
    assert "exec" not in actions
    # an inline `kubectl get pods` without -n gets the front matter's namespace as default
    assert {"kind": "pods", "namespace": "${namespace:-payments}"} in pb["diagnostics"]
    assert {"kind": "rollout_history", "namespace": "payments", "target": "payments-api"} in pb["diagnostics"]
    restarts = pb["graphs"][0]
    assert restarts["threshold"] == 3
    assert 'namespace="$namespace"' in restarts["query"]
    assert {"title": "Payments dashboard", "url": "https://grafana.example.com/d/payments"} in pb["links"]


def test_sample_kafka_consumer_lag_placeholders() -> None:
    pb = one((RUNBOOKS / "kafka-consumer-lag.md").read_text(), source_name="kafka-consumer-lag.md")
    assert pb["match"] == {"alertname": "KafkaConsumerLag"}
    assert pb["severity"] == "P2"
    assert pb["name"] == "kafka-consumer-lag"
    actions = {r["action"]: r["params"] for r in pb["remediations"]}
    assert actions["scale"] == {
        "namespace": "$namespace",
        "deployment": "$deployment",  # $CONSUMER_DEPLOYMENT names a deployment
        "replicas": 12,
    }
    assert actions["set_env"] == {
        "namespace": "$namespace",
        "deployment": "orders-consumer",
        "env": {"MAX_POLL_RECORDS": "200", "FETCH_MAX_BYTES": "1048576"},
    }
    assert actions["rollout_restart"] == {"namespace": "$namespace", "deployment": "orders-consumer"}
    assert actions["create_job_from_cronjob"] == {
        "namespace": "$namespace",
        "cronjob": "orders-replay",
        "job_name": "orders-replay-manual",
    }
    # 50 replicas is above the bundled policy's max_replicas (20): stays text
    assert len(remediations([pb], "scale")) == 1
    assert "--replicas=50" in str(pb["steps"])
    graphs = {g["title"]: g for g in pb["graphs"]}
    assert graphs["Is the lag still growing"]["threshold"] == 0
    assert graphs["Records consumed per second"]["unit"] == "/s"
    assert graphs["Time spent polling"]["unit"] == "s"
    assert graphs["Verification"] == {
        "title": "Verification",
        "query": 'sum(kafka_consumergroup_lag{consumergroup="orders"})',
        "threshold": 1000,
    }
    assert "Check the lag per partition" in graphs  # an indented code block


def test_sample_alerting_rules_and_several_alerts() -> None:
    playbooks = import_playbooks((RUNBOOKS / "checkout-alerts.md").read_text(), "checkout-alerts.md")
    assert alertnames(playbooks) == {"CheckoutHighErrorRate", "CheckoutLatencyHigh", "CheckoutPodsNotReady"}
    errors = by_alert(playbooks, "CheckoutHighErrorRate")
    assert errors["severity"] == "P1"
    assert errors["graphs"][0]["query"] == (
        'sum(rate(http_requests_total{service="checkout", code=~"5.."}[5m])) / '
        'sum(rate(http_requests_total{service="checkout"}[5m]))'
    )
    assert errors["graphs"][0]["threshold"] == 0.05
    assert errors["graphs"][0]["unit"] == "ratio"
    assert {"title": "Runbook", "url": "https://runbooks.example.com/checkout#high-error-rate"} in errors[
        "links"
    ]
    assert "$$value" in errors["summary"]  # the annotation's template is shown literally
    assert {r["action"] for r in errors["remediations"]} == {"rollout_undo", "set_env"}
    latency = by_alert(playbooks, "CheckoutLatencyHigh")
    assert latency["severity"] == "P2"
    assert (latency["graphs"][0]["unit"], latency["graphs"][0]["threshold"]) == ("s", 1.5)
    assert {r["action"]: r["params"] for r in latency["remediations"]}["set_resources"] == {
        "namespace": "shop",
        "deployment": "checkout",
        "limits": {"cpu": "2"},
        "requests": {"cpu": "1"},
    }
    nodes = by_alert(playbooks, "CheckoutPodsNotReady")  # "## Node pressure" + "**Alert**: `...`"
    actions = {r["action"]: r["params"] for r in nodes["remediations"]}
    assert actions == {
        "cordon": {"node": "$node"},
        "drain": {
            "node": "$node",
            "ignore_daemonsets": True,
            "delete_emptydir_data": True,
            "timeout_seconds": 300,
        },
        "uncordon": {"node": "$node"},
    }


# --------------------------------------------------------------------------- kubectl


@pytest.mark.parametrize(
    ("command", "action", "params"),
    [
        (
            "kubectl scale deployment/web --replicas=4 -n shop",
            "scale",
            {"namespace": "shop", "deployment": "web", "replicas": 4},
        ),
        (
            "kubectl scale --replicas 3 deploy web --namespace=shop",
            "scale",
            {"namespace": "shop", "deployment": "web", "replicas": 3},
        ),
        (
            "kubectl create job web-backfill --from=cronjob/web-nightly -n batch",
            "create_job_from_cronjob",
            {"namespace": "batch", "cronjob": "web-nightly", "job_name": "web-backfill"},
        ),
        (
            "kubectl create job --from=cronjob/nightly nightly-$(date +%s)",
            "create_job_from_cronjob",
            {"namespace": "${namespace:-default}", "cronjob": "nightly"},
        ),
        (
            "kubectl rollout undo deployment/web --to-revision=7",
            "rollout_undo",
            {"namespace": "${namespace:-default}", "deployment": "web", "to_revision": 7},
        ),
        (
            "kubectl rollout undo deploy web",
            "rollout_undo",
            {"namespace": "${namespace:-default}", "deployment": "web"},
        ),
        (
            'kubectl set env deployment/web A=1 B=two C="x y" -c app -n shop',
            "set_env",
            {
                "namespace": "shop",
                "deployment": "web",
                "container": "app",
                "env": {"A": "1", "B": "two", "C": "x y"},
            },
        ),
        (
            "kubectl set env deployment/web DB_URL=$DATABASE_URL",
            "set_env",
            {"namespace": "${namespace:-default}", "deployment": "web", "env": {"DB_URL": "$$DATABASE_URL"}},
        ),
        (
            "kubectl set resources deployment/web -c app --limits=cpu=200m,memory=512Mi --requests=memory=256Mi",
            "set_resources",
            {
                "namespace": "${namespace:-default}",
                "deployment": "web",
                "container": "app",
                "limits": {"cpu": "200m", "memory": "512Mi"},
                "requests": {"memory": "256Mi"},
            },
        ),
        (
            "kubectl delete pod web-0 -n shop --grace-period=5",
            "delete_pod",
            {"namespace": "shop", "pod": "web-0", "grace_period_seconds": 5},
        ),
        ("kubectl cordon worker-3", "cordon", {"node": "worker-3"}),
        ("kubectl uncordon $NODE", "uncordon", {"node": "$node"}),
        (
            "kubectl drain NODE_NAME --ignore-daemonsets --grace-period=60 --timeout=2m",
            "drain",
            {"node": "$node", "ignore_daemonsets": True, "grace_period_seconds": 60, "timeout_seconds": 120},
        ),
        (
            "kubectl -n $NAMESPACE rollout restart deployment/${DEPLOYMENT}",
            "rollout_restart",
            {"namespace": "$namespace", "deployment": "$deployment"},
        ),
        (
            "kubectl rollout restart deployment/<deployment-name> --namespace <namespace>",
            "rollout_restart",
            {"namespace": "$namespace", "deployment": "$deployment"},
        ),
        (
            "kubectl delete pod POD_NAME -n=$NS",
            "delete_pod",
            {"namespace": "$namespace", "pod": "$pod"},
        ),
        (
            "kubectl rollout restart deployment/$SERVICE-api",
            "rollout_restart",
            {"namespace": "${namespace:-default}", "deployment": "$service-api"},
        ),
    ],
)
def test_kubectl_commands_become_typed_proposals(command: str, action: str, params: dict[str, Any]) -> None:
    proposal = kubectl_proposal(command)
    assert proposal is not None, command
    assert proposal["action"] == action
    assert proposal["params"] == params


def test_default_namespace_for_commands_without_one() -> None:
    proposal = kubectl_proposal("kubectl rollout restart deploy api", default_namespace="payments")
    assert proposal is not None
    assert proposal["params"]["namespace"] == "${namespace:-payments}"


@pytest.mark.parametrize(
    "command",
    [
        "kubectl exec -it postgres-0 -- psql -c 'select 1'",  # exec needs a policy template
        "kubectl get pods -A",
        "kubectl top pods -l app=web",
        "kubectl rollout status deployment/web",
        "kubectl describe deployment web",
        "kubectl apply -f deploy.yaml",
        "kubectl rollout restart statefulset/redis",  # not a deployment
        "kubectl rollout restart deployment/My_App",  # not DNS-1123
        "kubectl scale deployment/web --replicas=50",  # above the policy's max_replicas
        "kubectl scale deployment/web --replicas=$REPLICAS",
        "kubectl set env deployment/web OLD_FLAG-",  # unsetting is not supported
        "kubectl set resources deployment/web --limits=cpu=lots",
        "kubectl delete pods -l app=web,tier=frontend",  # several terms: not one deployment
        "kubectl delete pods -l 'app in (web, api)'",
        "kubectl -n kube system rollout restart deployment/x",
        "helm rollback web 3",
    ],
)
def test_commands_that_stay_text(command: str) -> None:
    proposal = kubectl_proposal(command)
    assert proposal is None or "action" not in proposal, proposal


def test_read_only_kubectl_becomes_diagnostics() -> None:
    assert kubectl_proposal("kubectl logs deploy/web --tail=50 -c app -n shop") == {
        "namespace": "shop",
        "kind": "logs",
        "target": "web",
        "tail_lines": 50,
        "container": "app",
    }
    assert kubectl_proposal("kubectl logs $POD_NAME") == {
        "namespace": "${namespace:-default}",
        "kind": "logs",
        "target": "$pod",
        "target_kind": "pod",
    }
    assert kubectl_proposal("kubectl rollout history deployment/web -n shop") == {
        "namespace": "shop",
        "kind": "rollout_history",
        "target": "web",
    }
    assert kubectl_proposal("kubectl get events -n shop") == {"namespace": "shop", "kind": "events"}


def test_exec_and_read_only_commands_stay_step_text() -> None:
    pb = one(
        """# Payments

## Alert: PaymentsDown

1. Look at the pods:
   ```bash
   kubectl get pods -n payments
   kubectl describe deployment payments -n payments
   ```
2. Check the database from inside:
   ```bash
   kubectl exec -it payments-db-0 -n payments -- psql -c "select 1"
   ```
"""
    )
    assert "remediations" not in pb
    assert "kubectl exec -it payments-db-0" in pb["steps"][1]["code"]
    assert pb["steps"][0]["code"].startswith("kubectl get pods -n payments")
    assert pb["diagnostics"] == [{"kind": "pods", "namespace": "payments"}]


# --------------------------------------------------------------------------- alerts, steps and graphs


def test_alert_heading_forms() -> None:
    playbooks = import_playbooks(
        """# Service runbook

### HighErrorRate

1. Restart: `kubectl rollout restart deployment/web -n shop`

## Alert: BirthdaySchedulerDown

Check the scheduler.

```bash
kubectl logs deploy/birthday-scheduler -n shop
```

#### 1. ServiceDown (P0)

- Scale up: `kubectl scale deployment/web --replicas=6 -n shop`

### Database is slow

**Alert**: `SlowQueries`

1. Kill the queries.

### Queue lag

Alert name: QueueLagHigh
Severity: warning

1. Add consumers.
"""
    )
    assert [pb.get("match", {}).get("alertname") for pb in playbooks] == [
        "HighErrorRate",
        "BirthdaySchedulerDown",
        "ServiceDown",
        "SlowQueries",
        "QueueLagHigh",
    ]
    severities = {pb["match"]["alertname"]: pb.get("severity") for pb in playbooks}
    assert severities["ServiceDown"] == "P1"  # (P0) folds into P1
    assert severities["QueueLagHigh"] == "P2"
    assert {pb["system"] for pb in playbooks} == {"service"}
    assert [pb["title"] for pb in playbooks][3:] == [
        "Database is slow (SlowQueries)",
        "Queue lag (QueueLagHigh)",
    ]


def test_front_matter_alerts() -> None:
    # the front matter names the alert the title heading names too: one playbook, steps once
    pb = one(
        """---
alert: KubePodCrashLooping
severity: warning
---
# KubePodCrashLooping

## Diagnosis

1. List the pods: `kubectl get pods -n apps`
2. Read the logs.
"""
    )
    assert pb["match"] == {"alertname": "KubePodCrashLooping"}
    assert pb["severity"] == "P2"
    assert pb["system"] == "kube"
    assert [s["title"] for s in pb["steps"]] == ["List the pods", "Read the logs"]
    several = one(
        """---
title: Web down
alerts: [WebDown, WebUnreachable]
service: web
---
1. Restart: `kubectl rollout restart deployment/web -n web`
2. Check.
"""
    )
    assert several["match"] == {"alertname": ["WebDown", "WebUnreachable"]}
    assert several["title"] == "Web down (WebDown / WebUnreachable)"
    assert several["system"] == "web"


def test_alert_and_severity_in_a_key_value_table() -> None:
    pb = one(
        """# Disk runbook

## Disk almost full

| Field | Value |
|---|---|
| **Alert** | `NodeDiskAlmostFull` |
| Severity | critical |

1. Clean up: `kubectl delete pod cleaner-0 -n ops`
2. Check again.
"""
    )
    assert pb["match"] == {"alertname": "NodeDiskAlmostFull"}
    assert pb["severity"] == "P1"
    assert pb["remediations"][0]["params"] == {"namespace": "ops", "pod": "cleaner-0"}


def test_product_names_are_not_alert_headings() -> None:
    playbooks = import_playbooks(
        """# Ops

## PostgreSQL

1. Restart it: `kubectl rollout restart deployment/db -n data`
2. Check it.
"""
    )
    assert all(pb.get("on_demand") for pb in playbooks)


def test_same_alert_in_two_sections_is_one_playbook() -> None:
    playbooks = import_playbooks(
        """# Runbook

## CacheDown

1. Restart the cache: `kubectl rollout restart deployment/cache -n web`

## Troubleshooting: cache misses

- Alert: CacheDown

1. Flush it.
"""
    )
    (pb,) = playbooks
    assert [s["title"] for s in pb["steps"]] == [
        "Restart the cache",
        "Troubleshooting: cache misses: Flush it",
    ]


def test_steps_keep_markdown_and_code_language() -> None:
    pb = one(
        """# Alert: DiskFull

## Diagnosis

1. **Find the biggest directories**: run this on the node, then compare with
   the [dashboard](https://grafana.example.com/d/disk).
   ```sh
   du -xh / | sort -h | tail
   ```
   - look at `/var/log`
   - and at `/var/lib/docker`

## Resolution

Free space and check again:

```promql
node_filesystem_avail_bytes{mountpoint="/"} / node_filesystem_size_bytes{mountpoint="/"} * 100 < 10
```
"""
    )
    first, second = pb["steps"]
    assert first["title"] == "Find the biggest directories"
    assert first["language"] == "sh"
    assert first["code"] == "du -xh / | sort -h | tail\n"
    assert "- look at `/var/log`" in first["text"]
    assert "[dashboard](https://grafana.example.com/d/disk)" in first["text"]
    assert second["title"] == "Resolution"
    assert second["language"] == "promql"
    (graph,) = pb["graphs"]
    assert graph["unit"] == "%"
    assert graph["threshold"] == 10
    assert graph["query"].endswith("* 100")
    assert pb["links"] == [{"title": "dashboard", "url": "https://grafana.example.com/d/disk"}]


def test_numbered_comments_split_a_code_block_into_steps() -> None:
    pb = one(
        """## WorkerDown

**Diagnosis:**

```bash
# 1. Check pods
kubectl get pods -l app=worker

# 2. Check logs
kubectl logs deployment/worker --tail=100
```
"""
    )
    assert [(s["title"], s["code"]) for s in pb["steps"]] == [
        ("Check pods", "kubectl get pods -l app=worker\n"),
        ("Check logs", "kubectl logs deployment/worker --tail=100\n"),
    ]


def test_promql_blocks_become_graphs_with_thresholds_and_units() -> None:
    pb = one(
        """# Alert: ApiSlow

```promql
# p99 latency
histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{job="api"}[5m]))) > 0.5

# Error ratio
sum(rate(http_requests_total{code=~"5.."}[5m]))
  / sum(rate(http_requests_total[5m])) > 0.01

# Memory
container_memory_working_set_bytes{namespace="$namespace", pod=~"api-.*"}

# Throughput
sum(rate(http_requests_total{job="api"}[$__rate_interval]))
```

Also watch `up{job="api"} == 0` and this line:

rate(process_cpu_seconds_total{job="api"}[5m]) > 0.8
"""
    )
    graphs = {g["title"]: g for g in pb["graphs"]}
    assert graphs["p99 latency"]["unit"] == "s"
    assert graphs["p99 latency"]["threshold"] == 0.5
    assert graphs["Error ratio"]["query"] == (
        'sum(rate(http_requests_total{code=~"5.."}[5m])) / sum(rate(http_requests_total[5m]))'
    )
    assert (graphs["Error ratio"]["unit"], graphs["Error ratio"]["threshold"]) == ("ratio", 0.01)
    assert graphs["Memory"]["unit"] == "bytes"
    assert "threshold" not in graphs["Memory"]
    assert graphs["Throughput"]["query"] == 'sum(rate(http_requests_total{job="api"}[5m]))'
    assert graphs["Throughput"]["unit"] == "req/s"
    queries = [g["query"] for g in pb["graphs"]]
    assert 'up{job="api"}' in queries
    assert 'rate(process_cpu_seconds_total{job="api"}[5m])' in queries


def test_unsafe_promql_is_not_graphed() -> None:
    pb = one(
        """# Alert: Odd

```promql
up{job=$job}
sum(rate(x_total{pod="<pod>"}[5m]))
rate(y_total[<duration>])
```
"""
    )
    assert [g["query"] for g in pb.get("graphs", [])] == ['sum(rate(x_total{pod="$pod"}[5m]))']


def test_alert_rule_yaml_with_multiline_expr_and_record_rules() -> None:
    playbooks = import_playbooks(
        """# Rules

```yaml
groups:
- name: x
  rules:
  - record: job:up:sum
    expr: sum(up) by (job)
  - alert: TooFewReplicas
    expr: |
      kube_deployment_status_replicas_available{deployment="web"}
        < 2
    for: 10m
    labels:
      severity: page
    annotations:
      summary: "Only {{ $value }} replicas"
  - alert: CertExpiring
    expr: (probe_ssl_earliest_cert_expiry - time()) / 86400 < 14 and on() vector(1)
```
"""
    )
    assert alertnames(playbooks) == {"TooFewReplicas", "CertExpiring"}
    few = by_alert(playbooks, "TooFewReplicas")
    assert few["severity"] == "P1"
    assert few["graphs"] == [
        {
            "title": "Only {{ $$value }} replicas",
            "query": 'kube_deployment_status_replicas_available{deployment="web"}',
            "threshold": 2,
        }
    ]
    cert = by_alert(playbooks, "CertExpiring")
    assert "threshold" not in cert["graphs"][0]  # a set operation: no threshold split
    assert "severity" not in cert


def test_on_demand_guides_when_no_alert_is_named() -> None:
    playbooks = import_playbooks(
        """# Database guide

## Database connection issues

**Symptoms:** timeouts.

**Diagnosis:**

1. Check the pool: `kubectl logs deploy/api -n shop | grep pool`
2. Check the server.

**Resolution:**

1. Restart the API: `kubectl rollout restart deploy/api -n shop`

## Database connection issues

1. Second guide with the same title.
2. Scale: `kubectl scale deploy/api --replicas=4 -n shop`

## Glossary

Words.
"""
    )
    assert [pb["name"] for pb in playbooks] == [
        "database-connection-issues",
        "database-connection-issues-2",
    ]
    assert all(
        pb["on_demand"] is True and "match" not in pb and "graph_alert_expr" not in pb for pb in playbooks
    )
    assert playbooks[0]["system"] == "database"
    assert "timeouts" in playbooks[0]["summary"]
    assert [s["title"] for s in playbooks[0]["steps"]] == [
        "Check the pool",
        "Check the server",
        "Restart the API",
    ]


def test_alerts_present_means_unrelated_procedures_are_left_out() -> None:
    playbooks = import_playbooks(
        """# Web

## WebDown

1. Restart: `kubectl rollout restart deployment/web -n web`

## Database connection issues

**Diagnosis:**

1. Check the pool.
2. Check the server.
"""
    )
    assert [pb["match"]["alertname"] for pb in playbooks] == ["WebDown"]


def test_plain_text_runbook() -> None:
    pb = one(
        """Payments Operations Manual

Payments runs in namespace payments.

Runbook: Payments Down

Alert: PaymentsDown

Diagnosis:

# Check the pods
kubectl -n payments get pods

Resolution:

  1. Restart the API:
    kubectl -n payments rollout restart deployment/payments-api

  2. Tell the team.
"""
    )
    assert pb["match"] == {"alertname": "PaymentsDown"}
    assert pb["system"] == "payments"
    assert [s["title"] for s in pb["steps"]] == ["Diagnosis", "Restart the API", "Tell the team"]
    assert pb["remediations"][0]["params"] == {"namespace": "payments", "deployment": "payments-api"}


def test_output_always_validates(tmp_path: Path) -> None:
    weird = (
        """---
title: [not, a, string]
alert: Bad Alert Name!
namespace: NOT_DNS
---
# `${broken` runbook with $dollars and <html> & stuff

## Alert: Weird_Alert-1

1. ${unterminated: `kubectl scale deployment/$(whoami) --replicas=3`
2. `kubectl delete pod "x; rm -rf /"`
3. ```promql
   sum(rate(x{a="${b"}[5m])) > 1e400
   ```
4. """
        + "x" * 5000
        + """

| a | b |
|---|---|
| ${c} | d |
"""
    )
    text = import_runbook(weird, source_name="weird\nname.md")
    assert validated(tmp_path, text) == []
    data = yaml.safe_load(text)
    assert [pb["match"]["alertname"] for pb in data] == ["Weird_Alert-1"]
    for pb in data:
        Playbook.model_validate(pb)


FUZZ_TOKENS = [
    "# ", "## ", "### Alert: ", "HighErrorRate", "**Alert**: ", "`", "```", "```promql\n", "```bash\n",
    "\n", "\n\n", "  ", "    ", "- ", "1. ", "kubectl ", "scale ", "deployment/", "web", "$NAMESPACE",
    "${X}", "<pod>", "-n ", "--replicas=", "3", "rollout ", "restart ", "undo ", "set env ", "A=1 ",
    "set resources ", "--limits=cpu=1 ", "delete pod ", "drain ", "cordon ", "create job j --from=cronjob/c ",
    "rate(x_total[5m]) > 1", 'up{job="$job"}', "{", "}", '"', "'", "|", "| a | b |\n|---|---|\n",
    "- alert: Foo\n  expr: up == 0\n  labels:\n    severity: critical\n", "---\n", "alert: Bar\n", ":",
    "Diagnosis:", "**Resolution:**", "$", "$$", "${", "é", "\t", "\\", ">",
]  # fmt: skip


def test_random_markdown_never_breaks_the_output(tmp_path: Path) -> None:
    rnd = random.Random(20240611)
    for n in range(150):
        text = "".join(rnd.choice(FUZZ_TOKENS) for _ in range(rnd.randrange(1, 120)))
        directory = tmp_path / str(n)
        directory.mkdir()
        assert validated(directory, import_runbook(text, source_name="fuzz.md")) == [], text


def test_empty_runbook_gives_an_empty_list(tmp_path: Path) -> None:
    text = import_runbook("nothing to see here", source_name="empty.md")
    assert yaml.safe_load(text) == []
    assert validated(tmp_path, text) == []


def test_header_comment_names_the_source_and_what_to_review() -> None:
    text = import_runbook((RUNBOOKS / "checkout-alerts.md").read_text(), source_name="checkout-alerts.md")
    header = text.split("\n- name:", 1)[0]
    assert header.startswith("# yaml-language-server: $schema=./schema.json")
    assert "DRAFT" in header and "checkout-alerts.md" in header
    assert "Review" in header
    assert all(line.startswith("#") or not line.strip() for line in header.splitlines())


# --------------------------------------------------------------------------- the command line


def test_cli_import_then_validate(tmp_path: Path) -> None:
    out = tmp_path / "drafts" / "kafka.yaml"
    out.parent.mkdir()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bot",
            "playbooks",
            "import",
            str(RUNBOOKS / "kafka-consumer-lag.md"),
            "-o",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(out.read_text())[0]["match"] == {"alertname": "KafkaConsumerLag"}
    shutil.copy(DEFAULT_PLAYBOOKS_DIR / "policy.yaml", out.parent / "policy.yaml")
    result = subprocess.run(
        [sys.executable, "-m", "bot", "playbooks", "validate", str(out.parent)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_cli_import_to_stdout() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bot", "playbooks", "import", str(RUNBOOKS / "checkout-alerts.md")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert alertnames(yaml.safe_load(result.stdout)) == {
        "CheckoutHighErrorRate",
        "CheckoutLatencyHigh",
        "CheckoutPodsNotReady",
    }
