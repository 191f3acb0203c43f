"""clusters.yaml: the catalog model, cluster selection by alert label, per-cluster policy rules,
and every problem reported with file:line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bot.clients.prometheus import PrometheusSources
from bot.config.clusters import CLUSTERS_SCHEMA_FILE, check_clusters, clusters_schema_text, load_clusters
from bot.config.playbooks import DEFAULT_PLAYBOOKS_DIR, PlaybookError, load_playbooks
from bot.core.clusters import IMPLICIT_CLUSTER, ClusterCatalog, UnknownClusterError
from bot.core.policy import Policy

SKILLFORGE = """\
label: cluster
default: skillforge-dev
clusters:
  skillforge-dev: {context: skillforge-dev}
  skillforge-prod:
    context: skillforge-prod
    kubeconfig: /etc/incidentbot/kubeconfigs/skillforge-prod
"""


def test_bundled_catalog_is_the_single_cluster_of_before() -> None:
    catalog = load_clusters(DEFAULT_PLAYBOOKS_DIR, load_playbooks(DEFAULT_PLAYBOOKS_DIR).policy)
    assert catalog.implicit
    # Without listed clusters the label chooses nothing: alerts that carry one still run as before.
    assert catalog.select({"cluster": "anything"}) == IMPLICIT_CLUSTER
    assert catalog.select(None) == IMPLICIT_CLUSTER


def test_no_file_is_the_single_cluster(tmp_path: Path) -> None:
    assert check_clusters(tmp_path) == (ClusterCatalog(), [])


def test_selection_by_label_and_default() -> None:
    import yaml

    catalog = ClusterCatalog.model_validate(yaml.safe_load(SKILLFORGE))
    assert catalog.select({"cluster": "skillforge-prod"}) == "skillforge-prod"
    assert catalog.select({"alertname": "X"}) == "skillforge-dev"
    assert catalog.select({"cluster": " "}) == "skillforge-dev"
    with pytest.raises(UnknownClusterError, match=r"`skillforge-staging`.*not one of the configured"):
        catalog.select({"cluster": "skillforge-staging"})
    # The sender's text is shown only when it is a plain name.
    with pytest.raises(UnknownClusterError, match=r"\(not a valid name\)"):
        catalog.select({"cluster": "<!here> `x`"})
    other = ClusterCatalog.model_validate({"label": "k8s_cluster", "default": "a", "clusters": {"a": {}}})
    assert other.select({"cluster": "zzz", "k8s_cluster": "a"}) == "a"


def test_problems_have_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "clusters.yaml").write_text(
        "default: missing\n"
        "clusters:\n"
        "  Bad_Name: {context: x}\n"
        "  ok:\n"
        "    in_cluster: true\n"
        "    context: also\n"
        "  other: {contxt: typo}\n"
    )
    _, problems = check_clusters(tmp_path)
    text = [str(p) for p in problems]
    where = str(tmp_path / "clusters.yaml")
    assert any(t.startswith(f"{where}:3:") and "Bad_Name" in t for t in text), text
    assert any(t.startswith(f"{where}:7:") and "contxt" in t for t in text), text
    assert any(t.startswith(f"{where}:4:") and "in_cluster" in t for t in text), text
    with pytest.raises(PlaybookError):
        load_clusters(tmp_path)


def test_several_clusters_need_a_default(tmp_path: Path) -> None:
    (tmp_path / "clusters.yaml").write_text("clusters:\n  a: {}\n  b: {}\n")
    [problem] = check_clusters(tmp_path)[1]
    assert problem.line == 1 and "name the default one" in problem.message


def test_policy_rules_must_name_listed_clusters(tmp_path: Path) -> None:
    directory = tmp_path / "playbooks"
    shutil.copytree(DEFAULT_PLAYBOOKS_DIR, directory)
    policy = load_playbooks(directory).policy
    (directory / "clusters.yaml").write_text("default: skillforge-dev\nclusters:\n  skillforge-dev: {}\n")
    problems = check_clusters(directory, policy)[1]
    assert [p.message for p in problems] == [
        "approvals.default.clusters.skillforge-prod: unknown cluster 'skillforge-prod'"
        " (not listed in clusters.yaml)"
    ]
    lines = (directory / "policy.yaml").read_text().splitlines()
    assert "skillforge-prod:" in lines[problems[0].line - 1]
    (directory / "clusters.yaml").write_text(SKILLFORGE)
    assert check_clusters(directory, policy)[1] == []


def test_per_cluster_rules_replace_fields() -> None:
    policy = load_playbooks(DEFAULT_PLAYBOOKS_DIR).policy
    base = policy.rule_for("rollout_undo")
    prod = policy.rule_for("rollout_undo", cluster="skillforge-prod")
    dev = policy.rule_for("rollout_undo", cluster="skillforge-dev")
    assert (base.required_approvals, prod.required_approvals, dev.required_approvals) == (1, 2, 1)
    assert prod.allows_namespace("api") and not prod.allows_namespace("skillquest")
    assert base.allows_namespace("skillquest")
    assert prod.approvers == base.approvers  # what a cluster does not change stays
    assert policy.rule_for("rollout_undo", cluster="elsewhere") is base


def test_per_cluster_rules_are_validated_like_rules() -> None:
    with pytest.raises(ValueError, match=r"clusters.prod: approvals_needed: Input should be greater"):
        Policy.model_validate({"approvals": {"default": {"clusters": {"prod": {"approvals_needed": 0}}}}})
    with pytest.raises(ValueError, match="cannot name clusters again"):
        Policy.model_validate({"approvals": {"default": {"clusters": {"prod": {"clusters": {}}}}}})
    policy = Policy.model_validate(
        {"roles": {"sre": {}}, "approvals": {"default": {"clusters": {"prod": {"approvers": ["ghost"]}}}}}
    )
    assert policy.problems() == [
        (
            ("approvals", "default", "clusters", "prod", "approvers", 0),
            "unknown role 'ghost' (define it under roles)",
        )
    ]


def test_schema_file_is_up_to_date() -> None:
    assert (DEFAULT_PLAYBOOKS_DIR / CLUSTERS_SCHEMA_FILE).read_text(
        encoding="utf-8"
    ) == clusters_schema_text()


def test_a_clusters_prometheus_is_validated_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "clusters.yaml").write_text(
        "default: dev\n"
        "clusters:\n"
        "  dev: {prometheus_url: 'http://prom-dev:9090'}\n"
        "  prod:\n"
        "    prometheus_url: 'prom-prod:9090 ; x'\n"
    )
    [problem] = check_clusters(tmp_path)[1]
    assert problem.line == 5 and "prometheus_url" in problem.message, problem


def test_each_cluster_reads_its_own_prometheus_and_the_rest_read_prometheus_url() -> None:
    catalog = ClusterCatalog.model_validate(
        {
            "default": "dev",
            "clusters": {
                "dev": {"prometheus_url": "http://prom-dev:9090/"},
                "prod": {"prometheus_url": "https://prom-prod.example:9090/prometheus"},
                "staging": {"prometheus_url": "http://prom-dev:9090"},  # shares dev's
                "lab": {},
            },
        }
    )
    sources = PrometheusSources.connect(catalog, "http://thanos:10902", timeout=5)

    def url(labels: dict[str, str]) -> str | None:
        client = sources.for_labels(labels)
        return client.url if client else None

    try:
        assert url({"cluster": "prod"}) == "https://prom-prod.example:9090/prometheus"
        assert url({"cluster": "dev"}) == url({}) == "http://prom-dev:9090"  # default: dev
        assert url({"cluster": "lab"}) == url({"cluster": "unlisted"}) == "http://thanos:10902"
        # Clusters sharing a Prometheus share one client; a host's run reads PROMETHEUS_URL.
        assert sources.for_cluster("staging") is sources.for_cluster("dev")
        assert sources.for_cluster("skillmeat-host") is sources.default
        assert sorted(sources.urls) == [
            "http://prom-dev:9090",
            "http://thanos:10902",
            "https://prom-prod.example:9090/prometheus",
        ]
    finally:
        sources.close()
    # Without PROMETHEUS_URL only the clusters that name one have graphs.
    alone = PrometheusSources.connect(catalog, None, timeout=5)
    assert alone.configured and alone.for_labels({"cluster": "lab"}) is None
    assert not PrometheusSources.connect(ClusterCatalog(), None, timeout=5).configured
