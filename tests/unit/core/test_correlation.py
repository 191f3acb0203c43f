"""The correlation rules (bot.core.correlation): order, windows, strengths, learned links,
reasons; and the rules file's problems with file:line (bot.config.correlation)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.config.catalog import load_catalog
from bot.config.correlation import check_correlation
from bot.config.directory import validate_dir
from bot.config.playbooks import DEFAULT_PLAYBOOKS_DIR, load_playbooks
from bot.core.catalog import Catalog
from bot.core.correlation import (
    Candidate,
    CorrelationRules,
    Decision,
    GroupFacts,
    LearnedLink,
    Link,
    Outcome,
    Workload,
    decide,
    pair,
    workload_from_labels,
)

T0 = datetime(2026, 11, 22, 16, 0, tzinfo=UTC)
CATALOG: Catalog = load_catalog(DEFAULT_PLAYBOOKS_DIR, load_playbooks(DEFAULT_PLAYBOOKS_DIR).policy)
API = Workload(
    "default", "skillquest", "Deployment", "skillquest-api", "owner of pod skillquest-api-7d9f8b6c5-abcde"
)


def facts(
    *names: str,
    team: str = "skillquest",
    service: str | None = "api",
    minutes: float = 0,
    workloads: tuple[Workload, ...] = (),
    nodes: tuple[str, ...] = (),
    node_level: bool = False,
    labels: dict[str, str] | None = None,
    cluster: str = "default",
) -> GroupFacts:
    return GroupFacts(
        alertnames=names,
        team=team,
        service=service,
        cluster=cluster,
        started_at=T0 + timedelta(minutes=minutes),
        workloads=workloads,
        nodes=nodes,
        node_level=node_level,
        labels=labels or {},
    )


def run(
    new: GroupFacts,
    *olds: GroupFacts,
    rules: CorrelationRules | None = None,
    learned: dict[tuple[str, str], LearnedLink] | None = None,
) -> Decision:
    candidates = [Candidate(i + 1, old) for i, old in enumerate(olds)]
    return decide(
        new,
        candidates,
        rules or CorrelationRules(),
        depends=CATALOG.depends,
        title=lambda team, service: CATALOG.service_title(team, service) or CATALOG.team_title(team),
        learned=learned,
    )


def test_same_deployment_attaches_with_the_reason() -> None:
    old = facts("KubePodCrashLooping", service=None, team="operations", workloads=(API,))
    new = facts("HighAPIErrorRate", service=None, team="operations", minutes=2, workloads=(API,))
    decision = run(new, old)
    assert decision.outcome is Outcome.ATTACHED and decision.rule == "topology" and decision.incident_id == 1
    assert decision.reason == (
        "same deployment skillquest/skillquest-api (owner of pod skillquest-api-7d9f8b6c5-abcde), started 2 m after"
    )


def test_node_links_only_with_a_node_level_alert() -> None:
    node = facts("KubeNodeNotReady", team="operations", service=None, nodes=("worker-2",), node_level=True)
    pod = facts("KubePodNotReady", team="birthday-scheduler", service="api", minutes=1, nodes=("worker-2",))
    other_pod = facts("KubePodNotReady", team="skillforge", service="search", minutes=1, nodes=("worker-2",))
    assert run(pod, node).rule == "topology"
    assert "same node worker-2" in run(pod, node).reason
    assert run(other_pod, pod).outcome is Outcome.OPENED  # two pods on a node are not one problem


def test_declared_dependency_either_way_within_its_window() -> None:
    database = facts("DatabaseConnectionPoolExhausted", service="database")
    latency = facts("HighAPILatency", service="api", minutes=3)
    decision = run(latency, database)
    assert decision.outcome is Outcome.ATTACHED and decision.rule == "dependencies"
    assert decision.reason == "SkillQuest API depends on PostgreSQL (service catalog), started 3 m after"
    assert run(database, facts("HighAPILatency", service="api", minutes=-3)).rule == "dependencies"
    assert run(facts("HighAPILatency", minutes=31), database).rule != "dependencies"


def test_same_service_attaches_same_team_suggests_and_windows_bound_both() -> None:
    assert run(facts("B", minutes=5), facts("A")).rule == "same_service"
    suggested = run(facts("B", service="ai", minutes=5), facts("A", service="cache"))
    assert suggested.outcome is Outcome.SUGGESTED and suggested.rule == "same_team"
    assert run(facts("B", service="ai", minutes=11), facts("A", service="cache")).outcome is Outcome.OPENED


def test_another_cluster_is_never_the_same_problem() -> None:
    """Dev and prod of one service, at the same minute: no rule links them (positive control:
    the same pair within one cluster)."""
    prod = facts("HighAPILatency", service="api", cluster="skillforge-prod")
    dev_api = facts("HighAPIErrorRate", service="api", minutes=1, cluster="skillforge-dev")
    dev_db = facts("DatabaseConnectionPoolExhausted", service="database", minutes=1, cluster="skillforge-dev")
    labels = {"namespace": "x", "job": "j"}
    assert run(dev_api, prod).outcome is Outcome.OPENED
    assert run(dev_db, prod).outcome is Outcome.OPENED
    assert run(facts("B", service="ai", cluster="b"), facts("A", service="cache", cluster="a")).outcome is (
        Outcome.OPENED
    )
    assert (
        run(
            facts("B", team="t1", service=None, labels=labels, cluster="b"),
            facts("A", team="t1", service=None, labels=labels, cluster="a"),
        ).outcome
        is Outcome.OPENED
    )
    assert run(facts("HighAPIErrorRate", service="api", minutes=1, cluster="skillforge-prod"), prod).rule == (
        "same_service"
    )


def test_label_similarity_ignores_volatile_labels_and_needs_a_window() -> None:
    old = facts("A", team="t1", service=None, labels={"namespace": "x", "job": "j"})
    near = facts("B", team="t2", service=None, minutes=5, labels={"namespace": "x", "job": "j"})
    far = facts("B", team="t2", service=None, minutes=11, labels={"namespace": "x", "job": "j"})
    one = facts("B", team="t2", service=None, minutes=5, labels={"namespace": "x", "job": "other"})
    decision = run(near, old)
    assert decision.outcome is Outcome.SUGGESTED and decision.reason.startswith(
        "shared labels namespace=x, job=j"
    )
    assert run(far, old).outcome is Outcome.OPENED
    assert run(one, old).outcome is Outcome.OPENED


def test_learned_links_come_first() -> None:
    old = facts("DiskFull", team="t1", service=None)
    new = facts("BackupFailed", team="t2", service=None, minutes=30)
    attach = {
        pair("DiskFull", "BackupFailed"): LearnedLink(1, *pair("DiskFull", "BackupFailed"), Link.ATTACH)
    }
    decision = run(new, old, learned=attach)
    assert decision.outcome is Outcome.ATTACHED and decision.rule == "learned"
    same = facts("A")
    separate = {pair("A", "B"): LearnedLink(2, *pair("A", "B"), Link.OFF)}
    assert run(facts("B", minutes=1), same).outcome is Outcome.ATTACHED
    assert run(facts("B", minutes=1), same, learned=separate).outcome is Outcome.OPENED


def test_disabled_rules_open_every_group() -> None:
    rules = CorrelationRules(enabled=False)
    assert run(facts("B"), facts("A"), rules=rules).outcome is Outcome.OPENED


def test_workload_from_labels() -> None:
    assert workload_from_labels({"namespace": "n", "statefulset": "pg"}, "c") == Workload(
        "c", "n", "StatefulSet", "pg", "label statefulset"
    )
    found = workload_from_labels({"namespace": "n", "pod": "search-api-5f7b9c8d4-x2k9p"}, "c")
    assert found is not None and (found.kind, found.name) == ("Deployment", "search-api")
    assert workload_from_labels({"namespace": "n", "pod": "postgres-0"}, "c") is None


def test_facts_round_trip() -> None:
    original = facts("A", workloads=(API,), nodes=("n1",), node_level=True, labels={"job": "x"})
    assert GroupFacts.from_json(original.to_json()) == original


def test_rules_file_problems_have_lines(tmp_path: Path) -> None:
    (tmp_path / "correlation.yaml").write_text(
        "topology:\n  link: sometimes\nlabels:\n  labels: [namespace, pod]\n  window_minutes: 0\n",
        encoding="utf-8",
    )
    _, problems = check_correlation(tmp_path)
    text = [str(p) for p in problems]
    assert any(":2:" in t and "link" in t for t in text), text
    assert any(":5:" in t and "window_minutes" in t for t in text), text
    assert any("volatile" in t or "labels" in t for t in text), text
    assert validate_dir(DEFAULT_PLAYBOOKS_DIR) == []


def test_unknown_dependency_is_a_catalog_problem() -> None:
    catalog = Catalog.model_validate(
        {
            "default_team": "a",
            "teams": {"a": {"services": {"x": {"match": [{"alertname": "X"}], "depends_on": ["nope", "x"]}}}},
        }
    )
    messages = [msg for _, msg in catalog.problems([])]
    assert any("unknown service 'nope'" in m for m in messages)
    assert any("itself" in m for m in messages)
