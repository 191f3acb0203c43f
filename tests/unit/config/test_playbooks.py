"""Playbooks: the bundled directory, the schema, problems with file:line, matching, generic."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import jsonschema
import pytest
import yaml

from bot.config.directory import main, validate_dir
from bot.config.playbooks import DEFAULT_PLAYBOOKS_DIR, PlaybookError, load_playbooks
from bot.core.actions import HOST_ACTIONS, ActionName, ExecParams, HostCommandParams, ScaleParams
from bot.core.catalog import CATALOG_FILES
from bot.core.clusters import ClusterCatalog
from bot.core.correlation import correlation_json_schema
from bot.core.incident import Severity
from bot.core.playbooks import (
    TARGET_PARAMS,
    Graph,
    Match,
    Playbook,
    PlaybookSet,
    TargetNotAllowed,
    alert_expression_graph,
    generic_playbook,
    parse_duration,
    playbook_json_schema,
    policy_json_schema,
    split_threshold,
)
from bot.core.policy import Policy
from bot.core.templating import TemplateError, render_promql, render_text, template_variables


def matched(playbooks: PlaybookSet, labels: dict[str, str]) -> str:
    playbook = playbooks.match(labels)
    assert playbook is not None, labels
    return playbook.name


# --------------------------------------------------------------------------- the bundled playbooks


@pytest.fixture(scope="module")
def bundled() -> PlaybookSet:
    return load_playbooks(DEFAULT_PLAYBOOKS_DIR)


def test_bundled_directory_has_no_problems() -> None:
    assert [str(p) for p in validate_dir(DEFAULT_PLAYBOOKS_DIR)] == []


def test_schema_files_are_up_to_date() -> None:
    for name, schema in (
        ("schema.json", playbook_json_schema()),
        ("policy.schema.json", policy_json_schema()),
    ):
        committed = json.loads((DEFAULT_PLAYBOOKS_DIR / name).read_text(encoding="utf-8"))
        assert committed == schema, f"{name} is stale: run python -m bot.config.directory --write-schema"


def test_bundled_files_satisfy_the_json_schemas() -> None:
    playbook_validator = jsonschema.Draft202012Validator(playbook_json_schema())
    policy_validator = jsonschema.Draft202012Validator(policy_json_schema())
    clusters_validator = jsonschema.Draft202012Validator(ClusterCatalog.model_json_schema())
    for path in sorted(DEFAULT_PLAYBOOKS_DIR.glob("*.yaml")):
        if path.name in CATALOG_FILES:
            continue  # the service catalog: tests/unit/config/test_catalog.py
        validator = {
            "policy.yaml": policy_validator,
            "clusters.yaml": clusters_validator,
            "correlation.yaml": jsonschema.Draft202012Validator(correlation_json_schema()),
        }.get(path.name, playbook_validator)
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            errors = [e.message for e in validator.iter_errors(doc)]
            assert errors == [], (path.name, errors[:3])


# Every alert of the five seeds, extracted by hand, with the labels its rule implies.
SEED_ALERTS: list[tuple[dict[str, str], str]] = [
    # SkillQuest: the 12 Prometheus rules, and DatabaseDown (disaster recovery scenario 1).
    ({"alertname": "HighAPILatency", "service": "api", "severity": "warning"}, "skillquest-high-api-latency"),
    (
        {"alertname": "HighAPIErrorRate", "service": "api", "severity": "critical"},
        "skillquest-high-api-error-rate",
    ),
    ({"alertname": "APIDown", "job": "skillquest-api", "severity": "critical"}, "skillquest-api-down"),
    (
        {"alertname": "DatabaseConnectionPoolExhausted", "severity": "critical"},
        "skillquest-db-connection-pool",
    ),
    ({"alertname": "SlowQueries", "state": "active", "severity": "warning"}, "skillquest-slow-queries"),
    ({"alertname": "DatabaseDiskSpaceLow", "severity": "warning"}, "skillquest-database-disk-space"),
    ({"alertname": "RedisMemoryHigh", "severity": "warning"}, "skillquest-redis-memory"),
    ({"alertname": "RedisHitRateLow", "severity": "warning"}, "skillquest-redis-hit-rate"),
    ({"alertname": "RedisDown", "severity": "critical"}, "skillquest-redis-down"),
    ({"alertname": "AIHighLatency", "severity": "warning"}, "skillquest-ai-high-latency"),
    ({"alertname": "AIHighCost", "severity": "warning"}, "skillquest-ai-high-cost"),
    ({"alertname": "AIRateLimited", "severity": "warning"}, "skillquest-ai-rate-limited"),
    ({"alertname": "DatabaseDown"}, "skillquest-database-down"),
    # SkillMeat: the five alert runbooks (defaults for the shared names).
    ({"alertname": "HighErrorRate", "job": "skillmeat", "severity": "warning"}, "skillmeat-high-error-rate"),
    ({"alertname": "HighLatency", "job": "skillmeat", "severity": "warning"}, "skillmeat-high-latency"),
    ({"alertname": "GitHubRateLimitLow", "severity": "warning"}, "skillmeat-github-rate-limit-low"),
    ({"alertname": "MCPServerUnhealthy", "severity": "critical"}, "skillmeat-mcp-server-unhealthy"),
    ({"alertname": "HighMemoryUsage", "severity": "warning"}, "skillmeat-high-memory-usage"),
    # Birthday Scheduler: the ten alert procedures plus the two alerts of its troubleshooting.
    (
        {"alertname": "ServiceDown", "job": "birthday-scheduler", "severity": "critical"},
        "birthday-service-down",
    ),
    (
        {"alertname": "HighErrorRate", "job": "birthday-scheduler", "severity": "critical"},
        "birthday-high-error-rate",
    ),
    (
        {"alertname": "DatabaseConnectionPoolExhausted", "job": "birthday-scheduler", "severity": "critical"},
        "birthday-db-connection-pool",
    ),
    ({"alertname": "QueueDepthCritical", "job": "birthday-scheduler"}, "birthday-queue-depth-critical"),
    ({"alertname": "CircuitBreakerOpen", "job": "birthday-scheduler"}, "birthday-circuit-breaker-open"),
    ({"alertname": "DLQDepthHigh", "job": "birthday-scheduler"}, "birthday-dlq-depth-high"),
    (
        {"alertname": "HighLatency", "job": "birthday-scheduler-api", "severity": "warning"},
        "birthday-high-latency",
    ),
    ({"alertname": "MemoryUsageHigh", "job": "birthday-scheduler"}, "birthday-memory-usage-high"),
    ({"alertname": "SlowDatabaseQueries", "job": "birthday-scheduler"}, "birthday-slow-database-queries"),
    ({"alertname": "RetryRateHigh", "job": "birthday-scheduler"}, "birthday-retry-rate-high"),
    ({"alertname": "HighQueueDepth", "job": "birthday-scheduler"}, "birthday-high-queue-depth"),
    ({"alertname": "WorkerCrashRecovery", "job": "birthday-scheduler"}, "birthday-worker-crash-recovery"),
    # SkillForge: the P1/P2 thresholds (alert names defined by the playbooks) and the guardrails.
    ({"alertname": "SkillForgeAPIErrorRate", "namespace": "api"}, "skillforge-api-error-rate"),
    ({"alertname": "SkillForgeLatencyP95High", "service": "search-api"}, "skillforge-search-latency"),
    ({"alertname": "SkillForgeLatencyP95High", "service": "search"}, "skillforge-search-latency"),
    ({"alertname": "SkillForgeLatencyP95High", "service": "auth-api"}, "skillforge-auth-latency"),
    ({"alertname": "SkillForgeLatencyP95High", "service": "recommendation-api"}, "skillforge-api-latency"),
    ({"alertname": "SkillForgeQueueDepthHigh"}, "skillforge-queue-depth"),
    ({"alertname": "SkillForgeDeploymentFailed", "deployment": "user-api"}, "skillforge-deployment-failed"),
    ({"alertname": "SkillForgeCacheHitRatioLow"}, "skillforge-cache-hit-ratio"),
    ({"alertname": "SkillForgeDatabaseReplicationLag"}, "skillforge-db-replication-lag"),
    ({"alertname": "SkillForgeDatabaseStorageHigh"}, "skillforge-db-storage"),
    ({"alertname": "SkillForgeSyntheticUptimeLow"}, "skillforge-synthetic-uptime"),
    ({"alertname": "SkillForgeETLJobDelayed", "cronjob": "onet-refresh"}, "skillforge-etl-job-delayed"),
    ({"alertname": "SkillForgeDataFreshnessStale"}, "skillforge-data-freshness"),
    (
        {"alertname": "AnalyticsConsumerLagHigh", "namespace": "data-pipelines"},
        "skillforge-analytics-backlog",
    ),
    ({"alertname": "SkillForgeAnalyticsBacklog"}, "skillforge-analytics-backlog"),
]

ON_DEMAND = {
    "onquota-service-wont-start",
    "onquota-database-connection-failures",
    "onquota-high-memory-usage",
    "onquota-high-cpu-usage",
    "onquota-backup-failures",
    "onquota-celery-queue-buildup",
    "onquota-prometheus-grafana-issues",
    "skillquest-maintenance-mode",
    "skillquest-data-corruption",
    "skillquest-infrastructure-loss",
    "birthday-messages-not-sending",
    "birthday-database-performance",
    "birthday-rollback",
}


@pytest.mark.parametrize(
    ("labels", "expected"), SEED_ALERTS, ids=[f"{name}:{labels['alertname']}" for labels, name in SEED_ALERTS]
)
def test_every_seed_alert_resolves_to_its_playbook(
    bundled: PlaybookSet, labels: dict[str, str], expected: str
) -> None:
    playbook = bundled.match(labels)
    assert playbook is not None
    assert playbook.name == expected


def test_every_alert_playbook_is_reached_by_a_seed_alert(bundled: PlaybookSet) -> None:
    reached = {name for _, name in SEED_ALERTS}
    alert_playbooks = {pb.name for pb in bundled if not pb.on_demand}
    assert alert_playbooks == reached


def test_on_demand_guides(bundled: PlaybookSet) -> None:
    assert {pb.name for pb in bundled.on_demand()} == ON_DEMAND
    assert {pb.system for pb in bundled.on_demand() if pb.name.startswith("onquota")} == {"onquota"}
    for pb in bundled.on_demand():
        assert bundled.match({"alertname": pb.name}) is None


def test_one_file_per_seed_system(bundled: PlaybookSet) -> None:
    files = {p.name for p in DEFAULT_PLAYBOOKS_DIR.glob("*.yaml")}
    assert files == {
        "skillquest.yaml",
        "skillmeat.yaml",
        "birthday-scheduler.yaml",
        "skillforge.yaml",
        "onquota.yaml",
        "policy.yaml",
        "services.yaml",
        "clusters.yaml",
        "correlation.yaml",
    }
    assert {pb.system for pb in bundled} == {
        "skillquest",
        "skillmeat",
        "birthday-scheduler",
        "skillforge",
        "onquota",
    }


def test_unknown_alert_has_no_playbook(bundled: PlaybookSet) -> None:
    assert bundled.match({"alertname": "SomethingElse"}) is None


REALISTIC = {
    "namespace": "skillquest",
    "service": "api",
    "job": "birthday-scheduler",
    "deployment": "user-api",
    "pod": "birthday-scheduler-worker-7d9f8-x2x1z",
    "node": "ip-10-0-1-23.ec2.internal",
    "cronjob": "onet-refresh",
}


def test_every_bundled_template_renders_for_a_realistic_alert(bundled: PlaybookSet) -> None:
    for pb in bundled:
        for labels in (REALISTIC, {}):
            render_text(pb.summary, labels)
            for step in pb.steps:
                render_text(step.text, labels)
                if step.check:
                    step.check.render_query(labels)
            for graph in pb.graphs:
                render_promql(graph.query, labels)
                assert graph.range_seconds > 0
            for link in pb.links:
                assert link.render_url(labels).startswith("http")
            for diag in pb.diagnostics:
                try:
                    diag.render_namespace(labels)
                    diag.render_target(labels)
                except TemplateError:
                    assert not labels  # only a missing label may fail
            for rem in pb.remediations:
                # A host action without `host`: the alert's labels select one when proposed.
                host = {"host": "skillmeat"} if rem.action in HOST_ACTIONS else None
                try:
                    params = rem.render_params(labels, defaults=host)
                except TargetNotAllowed:
                    assert labels  # a playbook's own defaults are always inside its targets
                    continue
                except TemplateError as exc:
                    assert not labels, (pb.name, rem.title, exc)
                    continue
                assert params.model_dump()


def test_bundled_proposals_render_to_typed_params(bundled: PlaybookSet) -> None:
    search = bundled.by_name("skillforge-search-latency")
    assert search is not None
    scale = search.remediations[0].render_params({})
    assert isinstance(scale, ScaleParams)
    assert (scale.namespace, scale.deployment, scale.replicas) == ("api", "search-api", 9)
    job = search.remediations[1]
    assert job.action is ActionName.CREATE_JOB_FROM_CRONJOB
    pool = bundled.by_name("skillquest-db-connection-pool")
    assert pool is not None
    exec_params = pool.remediations[0].render_params({})
    assert isinstance(exec_params, ExecParams)
    assert exec_params.template == "pg_terminate_long_running"
    argv = bundled.policy.exec_templates[exec_params.template].render(exec_params.args)
    assert argv[0] == "psql"
    maintenance = bundled.by_name("skillquest-maintenance-mode")
    assert maintenance is not None
    assert [r.action for r in maintenance.remediations] == [ActionName.SET_ENV, ActionName.SET_ENV]
    # The Birthday Scheduler namespace follows the alert, defaulting to `default`, and is pinned
    # to the Birthday Scheduler's namespaces.
    restart = bundled.by_name("birthday-service-down")
    assert restart is not None
    assert restart.remediations[0].render_params({}).model_dump()["namespace"] == "default"
    rendered = restart.remediations[0].render_params({"namespace": "birthday-scheduler"})
    assert rendered.model_dump()["namespace"] == "birthday-scheduler"
    with pytest.raises(TargetNotAllowed, match=r"namespace `skillquest` .*alert label `namespace`"):
        restart.remediations[0].render_params({"namespace": "skillquest"})


def test_bundled_host_remediations_render_to_allow_listed_argvs(bundled: PlaybookSet) -> None:
    restart = bundled.by_name("skillmeat-high-error-rate")
    assert restart is not None
    params = restart.remediations[0].render_params({}, defaults={"host": "skillmeat"})
    assert isinstance(params, HostCommandParams)
    template = bundled.policy.host_templates[params.template]
    assert template.command(params.args) == ["sudo", "-n", "systemctl", "restart", "skillmeat-api"]
    assert template.preview_command(params.args) == [
        "sudo",
        "-n",
        "systemctl",
        "show",
        "-p",
        "ActiveState,SubState,MainPID",
        "skillmeat-api",
    ]
    backup = bundled.by_name("onquota-backup-failures")
    assert backup is not None
    argvs = [
        bundled.policy.host_templates[p.template].command(p.args)
        for p in (r.render_params({}) for r in backup.remediations)
        if isinstance(p, HostCommandParams)
    ]
    assert argvs == [
        ["sudo", "-n", "docker", "exec", "onquota_backup", "/scripts/backup/backup-postgres.sh"],
        ["sudo", "-n", "docker", "exec", "onquota_backup", "/scripts/backup/verify-backups.sh"],
    ]
    with pytest.raises(ValueError, match="does not match"):
        bundled.policy.host_templates["skillmeat_mcp_restart"].command({"server": "a; rm -rf /"})


def test_hostile_labels_cannot_reach_a_proposal(bundled: PlaybookSet) -> None:
    crash = bundled.by_name("birthday-worker-crash-recovery")
    assert crash is not None
    delete_pod = next(r for r in crash.remediations if r.action is ActionName.DELETE_POD)
    with pytest.raises(TemplateError) as info:
        delete_pod.render_params({"pod": "x; rm -rf /"})
    assert info.value.label == "pod"
    # kube-system is a valid name, but outside the playbook's targets; and the policy refuses it too.
    with pytest.raises(TargetNotAllowed, match="kube-system"):
        delete_pod.render_params({"pod": "birthday-scheduler-worker-1", "namespace": "kube-system"})
    with pytest.raises(TargetNotAllowed, match="coredns-1"):
        delete_pod.render_params({"pod": "coredns-1", "namespace": "birthday-scheduler"})
    assert not bundled.policy.rule_for(delete_pod.action, delete_pod.approval).allows_namespace("kube-system")
    down = bundled.by_name("skillquest-api-down")
    assert down is not None
    query = down.graphs[0].render_query({"job": '"} or vector(1) #'})
    assert query == 'up{job="\\"} or vector(1) #"}'


def test_every_target_taken_from_an_alert_label_is_pinned(bundled: PlaybookSet) -> None:
    """A bundled remediation whose target comes from the alert's labels never leaves its system:
    its namespace is fixed or pinned by `targets`, and a node taken from a label is constrained."""
    for pb in bundled:
        for rem in pb.remediations:
            from_labels = [
                key
                for key in TARGET_PARAMS
                if isinstance(rem.params.get(key), str) and template_variables(rem.params[key])
            ]
            if not from_labels:
                continue
            pinned = "node" if "node" in rem.params else "namespace"
            assert pinned in rem.targets, (pb.name, rem.title, from_labels)


def test_label_derived_targets_outside_the_targets_are_refused(bundled: PlaybookSet) -> None:
    failed = bundled.by_name("skillforge-deployment-failed")
    assert failed is not None
    rollback = failed.remediations[0]
    other_system = {"namespace": "skillquest", "deployment": "skillquest-api"}
    with pytest.raises(TargetNotAllowed, match=r"namespace `skillquest` \(from alert label `namespace`\)"):
        rollback.render_params(other_system)
    assert rollback.target_labels({"deployment": "search-api"}) == ["deployment"]
    assert rollback.target_labels({"namespace": "api", "deployment": "search-api"}) == [
        "namespace",
        "deployment",
    ]
    errors = bundled.by_name("skillforge-api-error-rate")
    assert errors is not None
    with pytest.raises(TargetNotAllowed, match="deployment `postgres`"):
        errors.remediations[0].render_params({"deployment": "postgres"})
    assert (
        errors.remediations[0].render_params({"deployment": "search-api"}).model_dump()["namespace"] == "api"
    )
    down = bundled.by_name("birthday-service-down")
    assert down is not None
    drain = next(r for r in down.remediations if r.action is ActionName.DRAIN)
    with pytest.raises(TargetNotAllowed, match="node `cp-control-plane-1`"):
        drain.render_params({"node": "cp-control-plane-1"})
    assert drain.render_params({"node": "ip-10-0-1-23.ec2.internal"}).model_dump()["node"]


TARGETS_PLAYBOOK = """\
- name: targets
  title: Targets
  system: demo
  match: {alertname: Targets}
  remediations:
    - action: rollout_restart
      title: unanchored
      targets: {deployment: "api"}
      params: {namespace: default, deployment: $deployment}
    - action: rollout_restart
      title: no such parameter
      targets: {pod: "^x"}
      params: {namespace: default, deployment: api}
    - action: rollout_restart
      title: default outside
      targets: {namespace: "^api$"}
      params: {namespace: "${namespace:-default}", deployment: api}
    - action: rollout_restart
      title: fine
      targets: {namespace: "^(api|default)$", deployment: "^api-"}
      params: {namespace: "${namespace:-default}", deployment: $deployment}
"""


def test_targets_are_validated_at_load_with_lines(tmp_path: Path) -> None:
    (tmp_path / "targets.yaml").write_text(TARGETS_PLAYBOOK)
    rendered = [str(p) for p in validate_dir(tmp_path)]
    path = str(tmp_path / "targets.yaml")
    expect = {
        line_of(TARGETS_PLAYBOOK, 'targets: {deployment: "api"}'): "must be anchored with ^",
        line_of(TARGETS_PLAYBOOK, 'targets: {pod: "^x"}'): "has no pod parameter to constrain",
        line_of(
            TARGETS_PLAYBOOK, 'targets: {namespace: "^api$"}'
        ): "namespace 'default' (without the alert's labels)",
    }
    for line, fragment in expect.items():
        assert any(r.startswith(f"{path}:{line}: ") and fragment in r for r in rendered), (
            line,
            fragment,
            rendered,
        )
    assert len(rendered) == 3, rendered


def test_bundled_severity_overrides(bundled: PlaybookSet) -> None:
    search = bundled.by_name(
        matched(bundled, {"alertname": "SkillForgeLatencyP95High", "service": "search-api"})
    )
    reco = bundled.by_name(matched(bundled, {"alertname": "SkillForgeLatencyP95High", "service": "reco"}))
    assert search is not None
    assert reco is not None
    assert search.severity is Severity.P1
    assert reco.severity is Severity.P2


# --------------------------------------------------------------------------- problems with file:line


def line_of(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


BROKEN_POLICY = """\
roles:
  sre: {users: [U0SRE]}
approvals:
  default: {approvers: [sre], namespaces_allow: ["*"]}
  scale: {approvers: [sre], max_replicas: 10, namespaces_allow: ["*"]}
exec_templates:
  pg_terminate: {argv: [psql, -c, "SELECT {minutes}"], args: {minutes: {pattern: "[0-9]+"}}}
"""

BROKEN_PLAYBOOKS = """\
- name: good-one
  title: Fine
  system: demo
  match: {alertname: Fine}

- name: Bad_Name
  system: demo
  match: {alertname: X}

- name: checks
  title: Checks
  system: demo
  match:
    alertname: Checks
    labels_regex:
      job: "broken(regex"
  steps:
    - title: step one
      check:
        query: up
        op: "=>"
        value: 1
  graphs:
    - title: unquoted
      query: up{namespace=$namespace}
  unknown_field: 1

- name: actions
  title: Actions
  system: demo
  match: {alertname: Actions}
  remediations:
    - action: reboot_everything
      title: nope
    - action: scale
      title: too many
      params: {namespace: default, deployment: api, replicas: 50}
    - action: scale
      title: bad names
      params: {namespace: $namespace, deployment: Not_A_Name, replicas: 2}
    - action: exec
      title: unknown template
      params: {namespace: default, pod: db-0, template: rm_rf, args: {}}
    - action: exec
      title: bad argument
      params: {namespace: default, pod: db-0, template: pg_terminate, args: {minutes: "5; drop"}}
    - action: rollout_restart
      title: unknown approval
      approval: nobody-knows
      params: {namespace: default, deployment: api}
    - action: rollout_restart
      title: bad label default
      params: {namespace: "${namespace:-Not_OK}", deployment: api}

- name: good-one
  title: Duplicate
  system: demo
  match: {alertname: Other}

- name: same-matchers
  title: Shadowed
  system: demo
  match: {alertname: Fine}

- name: demand
  title: On demand with a match
  system: demo
  on_demand: true
  match: {alertname: Y}

- name: no-match
  title: Matches nothing
  system: demo
"""

BROKEN_SYNTAX = """\
- name: ok
  title: [unclosed
  system: demo
"""

DUPLICATE_KEY = """\
name: dup-key
title: One
title: Two
system: demo
match: {alertname: Dup}
"""


@pytest.fixture
def broken_dir(tmp_path: Path) -> Path:
    (tmp_path / "policy.yaml").write_text(BROKEN_POLICY)
    (tmp_path / "a.yaml").write_text(BROKEN_PLAYBOOKS)
    (tmp_path / "b.yaml").write_text(BROKEN_SYNTAX)
    (tmp_path / "c.yml").write_text(DUPLICATE_KEY)
    return tmp_path


def test_broken_directory_reports_every_problem_with_its_line(broken_dir: Path) -> None:
    problems = validate_dir(broken_dir)
    rendered = [str(p) for p in problems]
    a, b, c = (str(broken_dir / n) for n in ("a.yaml", "b.yaml", "c.yml"))
    text = BROKEN_PLAYBOOKS
    expected = [
        (a, line_of(text, "- name: Bad_Name"), "name"),  # bad slug (at the name's line)
        (a, line_of(text, "- name: Bad_Name"), "title: Field required"),
        (a, line_of(text, 'job: "broken(regex"'), "invalid regular expression"),
        (a, line_of(text, 'op: "=>"'), "steps.0.check.op"),
        (a, line_of(text, "query: up{namespace=$namespace}"), "outside a quoted string"),
        (a, line_of(text, "unknown_field"), "Extra inputs are not permitted"),
        (a, line_of(text, "action: reboot_everything"), "remediations.0.action"),
        (a, line_of(text, "replicas: 50}"), "above the policy maximum of 10"),
        (a, line_of(text, "deployment: Not_A_Name"), "Not_A_Name"),
        (a, line_of(text, "template: rm_rf"), "exec template 'rm_rf' is not in policy.yaml"),
        (a, line_of(text, 'minutes: "5; drop"'), "does not match"),
        (a, line_of(text, "approval: nobody-knows"), "approval rule 'nobody-knows' is not defined"),
        (a, line_of(text, 'namespace: "${namespace:-Not_OK}"'), "default of ${namespace}"),
        (a, line_of(text, "- name: good-one\n  title: Duplicate"), "duplicate playbook name 'good-one'"),
        (a, line_of(text, "- name: same-matchers"), "same matchers as 'good-one'"),
        (a, line_of(text, "match: {alertname: Y}"), "on-demand playbooks are never matched"),
        (a, line_of(text, "- name: no-match"), "needs a match"),
        (b, 3, "YAML syntax error"),
        (c, 3, "duplicate key 'title'"),
    ]
    for file, line, fragment in expected:
        prefix = f"{file}:{line}: "
        assert any(r.startswith(prefix) and fragment in r for r in rendered), (prefix, fragment, rendered)
    # The valid playbook of the broken file produced no problem.
    assert not any(r.startswith(f"{a}:1:") for r in rendered)
    assert problems == sorted(problems)


def test_the_name_line_is_used_for_a_bad_name(broken_dir: Path) -> None:
    rendered = [str(p) for p in validate_dir(broken_dir)]
    line = line_of(BROKEN_PLAYBOOKS, "- name: Bad_Name")
    assert any(f"a.yaml:{line}: playbook 'Bad_Name': name:" in r for r in rendered)


def test_load_playbooks_raises_with_every_problem(broken_dir: Path) -> None:
    with pytest.raises(PlaybookError) as info:
        load_playbooks(broken_dir)
    assert len(info.value.problems) >= 19
    assert str(info.value).count("\n") == len(info.value.problems) - 1


def test_missing_directory(tmp_path: Path) -> None:
    problems = validate_dir(tmp_path / "nope")
    assert len(problems) == 1
    assert "not found" in str(problems[0])


def test_multi_document_files(tmp_path: Path) -> None:
    (tmp_path / "multi.yaml").write_text(
        "name: one\ntitle: One\nsystem: demo\nmatch: {alertname: One}\n---\n"
        "- name: two\n  title: Two\n  system: demo\n  match: {alertname: Two}\n---\n"
    )
    playbooks = load_playbooks(tmp_path)
    assert [pb.name for pb in playbooks] == ["one", "two"]


def test_cli_validate(broken_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(DEFAULT_PLAYBOOKS_DIR)]) == 0
    assert capsys.readouterr().out == ""
    assert main(["validate", str(broken_dir)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(validate_dir(broken_dir))
    assert all(":" in line for line in out)


def test_cli_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--schema"]) == 0
    assert json.loads(capsys.readouterr().out) == playbook_json_schema()


# --------------------------------------------------------------------------- matching precedence


def pb(name: str, on_demand: bool = False, **match: object) -> Playbook:
    return Playbook.model_validate(
        {"name": name, "title": name, "system": "demo", "on_demand": on_demand, "match": match}
        if match
        else {"name": name, "title": name, "system": "demo", "on_demand": on_demand}
    )


def test_more_specific_playbook_wins_regardless_of_order() -> None:
    broad = pb("broad", alertname="HighErrorRate")
    narrow = pb("narrow", alertname="HighErrorRate", labels={"namespace": "api"})
    for order in ([broad, narrow], [narrow, broad]):
        playbooks = PlaybookSet(order)
        assert matched(playbooks, {"alertname": "HighErrorRate", "namespace": "api"}) == "narrow"
        assert matched(playbooks, {"alertname": "HighErrorRate", "namespace": "web"}) == "broad"


def test_equality_beats_regex_and_alertname_beats_labels() -> None:
    regex = pb("regex", alertname="A", labels_regex={"job": "api.*", "env": "prod|staging"})
    equal = pb("equal", alertname="A", labels={"job": "api"})
    labels_only = pb("labels-only", labels={"job": "api", "env": "prod", "team": "x"})
    playbooks = PlaybookSet([regex, labels_only, equal])
    alert = {"alertname": "A", "job": "api", "env": "prod", "team": "x"}
    assert [p.name for p in playbooks.candidates(alert)] == ["equal", "regex", "labels-only"]
    assert matched(playbooks, {"alertname": "B", "job": "api", "env": "prod", "team": "x"}) == "labels-only"


def test_ties_go_to_the_first_playbook() -> None:
    first = pb("first", alertname="A", labels={"x": "1"})
    second = pb("second", alertname=["A", "B"], labels={"y": "2"})
    playbooks = PlaybookSet([first, second])
    assert matched(playbooks, {"alertname": "A", "x": "1", "y": "2"}) == "first"
    assert matched(playbooks, {"alertname": "B", "x": "1", "y": "2"}) == "second"


def test_regex_is_a_full_match_and_missing_label_is_empty() -> None:
    playbooks = PlaybookSet(
        [pb("r", alertname="A", labels_regex={"job": "api"}), pb("e", alertname="A", labels={"x": ""})]
    )
    assert playbooks.match({"alertname": "A", "job": "api-2", "x": "set"}) is None
    assert matched(playbooks, {"alertname": "A", "job": "api-2"}) == "e"


def test_severity_matcher_uses_the_policy_mapping() -> None:
    policy = Policy.model_validate({"severity_mapping": {"warning": "P3"}})
    playbooks = PlaybookSet([pb("any", alertname="A"), pb("p1", alertname="A", severity="P1")], policy)
    assert matched(playbooks, {"alertname": "A", "severity": "critical"}) == "p1"
    assert matched(playbooks, {"alertname": "A", "severity": "warning"}) == "any"


def test_on_demand_and_lookup() -> None:
    guide = pb("guide", on_demand=True)
    playbooks = PlaybookSet([guide, pb("alerting", alertname="A")])
    assert playbooks.on_demand() == [guide]
    assert playbooks.by_name("guide") is guide
    assert playbooks.by_name("missing") is None
    assert playbooks.match({"alertname": "guide"}) is None
    assert len(playbooks) == 2
    with pytest.raises(ValueError, match="duplicate"):
        PlaybookSet([guide, guide])


def test_match_specificity_is_documented_order() -> None:
    assert Match(alertname="A").specificity() == (1, 0, 0)
    assert Match(alertname="A", labels={"a": "1"}, severity=Severity.P1).specificity() == (1, 2, 0)
    assert Match(labels_regex={"a": ".*"}).specificity() == (0, 0, 1)


# --------------------------------------------------------------------------- the generic playbook


def generator_url(expr: str) -> str:
    return f"http://prometheus:9090/graph?g0.expr={quote(expr)}&g0.tab=1"


def test_generic_playbook_graphs_the_alert_expression() -> None:
    expr = 'sum(rate(http_requests_total{job="api",status=~"5.."}[5m])) / sum(rate(http_requests_total{job="api"}[5m])) > 0.05'
    playbook = generic_playbook(
        {"alertname": "HighErrorRate", "job": "api"},
        {"summary": "5xx > 5%", "runbook_url": "https://runbooks.example.com/high-error-rate"},
        generator_url(expr),
    )
    assert playbook.name == "generic"
    assert render_text(playbook.title, {}) == "HighErrorRate"
    [graph] = playbook.graphs
    assert graph.threshold == 0.05
    assert graph.render_query({}) == expr.removesuffix(" > 0.05")
    urls = {link.title: link.render_url({}) for link in playbook.links}
    assert urls["Runbook"] == "https://runbooks.example.com/high-error-rate"
    assert urls["Source in Prometheus"].startswith("http://prometheus:9090/graph?g0.expr=")
    assert "5xx &gt; 5%" in render_text(playbook.summary, {})


def test_generic_playbook_treats_alert_text_as_data() -> None:
    playbook = generic_playbook(
        {"alertname": "<!channel> $namespace", "namespace": "prod", "pod": "api-1"},
        {"description": "cost $100 <https://evil|x> ${namespace}", "runbook_url": "javascript:alert(1)"},
        generator_url('up{job="a$b"} == 0'),
    )
    assert render_text(playbook.title, {}) == "&lt;!channel&gt; $namespace"
    summary = render_text(playbook.summary, {})
    assert "cost $100 &lt;https://evil|x&gt; ${namespace}" in summary
    assert [link.title for link in playbook.links] == ["Source in Prometheus"]  # javascript: dropped
    assert playbook.graphs[0].render_query({}) == 'up{job="a$b"}'
    assert playbook.graphs[0].threshold == 0
    assert [d.kind for d in playbook.diagnostics] == ["logs", "events"]
    assert playbook.diagnostics[0].render_target({"pod": "api-1"}) == "api-1"


def test_generic_playbook_without_generator_url_or_annotations() -> None:
    playbook = generic_playbook({}, {}, "")
    assert playbook.graphs == []
    assert playbook.links == []
    assert render_text(playbook.title, {}) == "Alert"
    huge = generic_playbook({"alertname": "A" * 500}, {"description": "$" * 5000}, "")
    assert len(huge.title) <= 150
    assert len(huge.summary) <= 3000


def test_resolve_falls_back_to_generic(bundled: PlaybookSet) -> None:
    assert bundled.resolve({"alertname": "APIDown"}, {}).name == "skillquest-api-down"
    assert bundled.resolve({"alertname": "Nope"}, {}, generator_url("up == 0")).name == "generic"


@pytest.mark.parametrize(
    ("expr", "query", "threshold"),
    [
        ("up{job='x'} == 0", "up{job='x'}", 0.0),
        (
            "histogram_quantile(0.99, rate(x_bucket[5m])) > 2",
            "histogram_quantile(0.99, rate(x_bucket[5m]))",
            2.0,
        ),
        ("a / b > 0.01", "a / b", 0.01),
        ("x < 1e3", "x", 1000.0),
        ("a > 1 and b < 2", "a > 1 and b < 2", None),
        ("x > bool 1", "x > bool 1", None),
        ("x > y", "x > y", None),
        ('x{a=">"}', 'x{a=">"}', None),
        ("count(x > 5)", "count(x > 5)", None),
        ("rate(x[5m])", "rate(x[5m])", None),
    ],
)
def test_split_threshold(expr: str, query: str, threshold: float | None) -> None:
    assert split_threshold(expr) == (query, threshold)


def test_alert_expression_graph_edge_cases() -> None:
    assert alert_expression_graph("") is None
    assert alert_expression_graph("http://prom/graph") is None
    assert alert_expression_graph("http://prom/graph?g0.expr=") is None
    graph = alert_expression_graph(generator_url("rate(x[5m])"))
    assert isinstance(graph, Graph)
    assert graph.threshold is None


def test_parse_duration() -> None:
    assert parse_duration("1h30m") == 5400
    assert parse_duration("2d") == 172800
    assert parse_duration("500ms") == 0.5
    with pytest.raises(ValueError):
        parse_duration("1 hour")
