"""The chart's RBAC is derived from the policy and is exactly what the adapter really sends.

Every action runs (preview and execute) against the sandbox apiserver, which records what each
request is authorized as (tests/deploy/adapter_requests.py). Those recordings are compared with
`bot.tools.rbac.ACCESS` (the table the generator uses), and with the Roles `helm template`
renders from `incidentbot rbac`'s output for a policy: a namespace gets exactly the recorded
requests of the actions the policy allows there, plus the diagnostics, and nothing else.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.core.actions import KUBERNETES_ACTIONS, ActionName
from bot.tools.rbac import ACCESS, DIAGNOSTICS, INVESTIGATOR, Grant, cluster_scoped
from tests.deploy.adapter_requests import DIAGNOSTICS as DIAGNOSTICS_SCENARIO
from tests.deploy.adapter_requests import INVESTIGATOR as INVESTIGATOR_SCENARIO
from tests.deploy.adapter_requests import Recorded, record_every_action
from tests.deploy.conftest import CHART, NAMESPACE, ROOT, Render, of_kind, run_helm

pytestmark = pytest.mark.timeout(180)

FULL_RECORDED = dict[ActionName | str, Recorded]

# A policy with a different answer in every namespace; the expectations below are what its
# rules say, read by a person.
POLICY = """\
roles:
  sre:
    users: [U0123456789]
approvals:
  default:
    requesters: [sre]
    approvers: [sre]
    namespaces_allow: [shop, search, "team-*"]
    namespaces_deny: [kube-system, team-secret]
  scale:
    requesters: [sre]
    approvers: [sre]
    namespaces_allow: [search]
  exec:
    requesters: [sre]
    approvers: [sre]
    namespaces_allow: [shop]
  pods-only:
    requesters: [sre]
    approvers: [sre]
    namespaces_allow: [cache]
  cordon:
    requesters: [sre]
    approvers: [sre]
    namespaces_allow: ["*"]
  drain:
    requesters: [sre]
    approvers: [sre]
    approvals_needed: 2
    namespaces_allow: ["*"]
exec_templates:
  uptime: [uptime]
"""
PLAYBOOK = """\
- name: cache-stuck
  title: "Cache stuck"
  system: cache
  match:
    alertname: CacheStuck
  steps:
    - title: Replace the pod
  remediations:
    - title: Delete the stuck pod
      action: delete_pod
      approval: pods-only
      params:
        namespace: cache
        pod: $pod
"""
NAMESPACED = [a for a in KUBERNETES_ACTIONS if not cluster_scoped(a)]


def allowed(*, but: tuple[ActionName, ...] = (), only: tuple[ActionName, ...] = ()) -> list[ActionName]:
    """Namespaced actions in the order of ActionName (the generator's order)."""
    return [a for a in NAMESPACED if (a in only if only else a not in but)]


DEFAULT_ACTIONS = allowed(but=(ActionName.SCALE, ActionName.EXEC))
EXPECTED_ACTIONS: dict[str, list[ActionName]] = {
    "shop": allowed(but=(ActionName.SCALE,)),
    "search": allowed(but=(ActionName.EXEC,)),
    "team-a": DEFAULT_ACTIONS,  # named with --namespace, allowed by the glob team-*
    "cache": allowed(only=(ActionName.DELETE_POD,)),  # only through the rule a playbook names
}
EXPECTED_CLUSTER = [ActionName.CORDON, ActionName.DRAIN]  # uncordon falls to "default": no


@pytest.fixture(scope="module")
async def recorded() -> FULL_RECORDED:
    return await record_every_action()


def expand(rules: list[dict[str, Any]], where: str) -> set[Grant]:
    """Every (apiGroup, resource, verb) a rule list grants; wildcards and extras are refused."""
    out: set[Grant] = set()
    for rule in rules:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, f"{where}: unexpected rule fields {rule}"
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[key], f"{where}: wildcard in {key}: {rule}"
        out |= {Grant(g, r, v) for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    return out


def run_rbac(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", "rbac", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )


def recorded_union(recorded: FULL_RECORDED, actions: list[ActionName], *, diagnostics: bool) -> set[Grant]:
    out: set[Grant] = set(recorded[DIAGNOSTICS_SCENARIO].grants) if diagnostics else set()
    for action in actions:
        out |= recorded[action].grants
    return out


# --------------------------------------------------------------------------- what the adapter sends


@pytest.mark.parametrize("action", [*KUBERNETES_ACTIONS, DIAGNOSTICS_SCENARIO, INVESTIGATOR_SCENARIO])
def test_the_access_table_is_what_the_adapter_sends(
    recorded: FULL_RECORDED, action: ActionName | str
) -> None:
    record = recorded[action]
    assert record.access, f"{action}: no request recorded"
    assert record.failed == [], f"{action}: requests failed: {record.failed}"
    # Discovery is readable by every authenticated user (the default system:discovery role).
    assert record.non_resource <= {"/version", "/api", "/apis"}
    expected = {DIAGNOSTICS_SCENARIO: DIAGNOSTICS, INVESTIGATOR_SCENARIO: INVESTIGATOR}.get(action) or ACCESS[
        ActionName(action)
    ]
    assert record.grants == expected, (
        f"{action}: sent {sorted(record.grants - expected)} beyond bot/tools/rbac.py, "
        f"which grants {sorted(expected - record.grants)} never sent"
    )


def test_namespaced_actions_stay_in_their_namespace(recorded: FULL_RECORDED) -> None:
    """A namespaced action touches only its target's namespace, so a Role there is enough;
    node actions reach the cluster scope (nodes, the node's pods in all namespaces)."""
    for action in KUBERNETES_ACTIONS:
        namespaces = recorded[action].namespaces
        if cluster_scoped(action):
            assert None in namespaces, action
        else:
            assert len(namespaces) == 1 and None not in namespaces, (action, namespaces)
    assert set(ACCESS) == set(KUBERNETES_ACTIONS)


# --------------------------------------------------------------------------- rendered from a policy


@pytest.fixture(scope="module")
def policy_values(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    directory = tmp_path_factory.mktemp("playbooks")
    (directory / "policy.yaml").write_text(POLICY)
    (directory / "cache.yaml").write_text(PLAYBOOK)
    out = directory.parent / "rbac-values.yaml"
    result = run_rbac(
        "--policy",
        str(directory / "policy.yaml"),
        "--namespace",
        "team-a",
        "--namespace",
        "team-secret",
        "--namespace",
        "kube-system",
        "-o",
        str(out),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out, result.stderr


def test_roles_rendered_from_the_policy_are_the_recorded_requests(
    render: Render, recorded: FULL_RECORDED, policy_values: tuple[Path, str]
) -> None:
    values, _ = policy_values
    manifests = render(values)
    roles = {r["metadata"]["namespace"]: r for r in of_kind(manifests, "Role")}
    assert sorted(roles) == sorted(EXPECTED_ACTIONS), "denied and unnamed namespaces get no Role"
    for namespace, actions in EXPECTED_ACTIONS.items():
        role = roles[namespace]
        granted = expand(role["rules"], f"Role {namespace}")
        wanted = recorded_union(recorded, actions, diagnostics=True)
        assert granted == wanted, (
            f"Role {namespace}: grants {sorted(granted - wanted)} never sent for {actions}; "
            f"lacks {sorted(wanted - granted)}"
        )
        assert role["metadata"]["annotations"]["incidentbot/actions"] == ",".join(actions)
    (cluster_role,) = of_kind(manifests, "ClusterRole")
    assert expand(cluster_role["rules"], "ClusterRole") == recorded_union(
        recorded, EXPECTED_CLUSTER, diagnostics=False
    )
    bindings = of_kind(manifests, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == sorted(EXPECTED_ACTIONS)
    for binding in bindings:
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": roles[binding["metadata"]["namespace"]]["metadata"]["name"],
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "rel-incidentbot", "namespace": NAMESPACE}
        ]
    (cluster_binding,) = of_kind(manifests, "ClusterRoleBinding")
    assert cluster_binding["roleRef"]["name"] == cluster_role["metadata"]["name"]


def test_no_exec_where_no_rule_allows_it(render: Render, policy_values: tuple[Path, str]) -> None:
    roles = {r["metadata"]["namespace"]: r for r in of_kind(render(policy_values[0]), "Role")}
    for namespace, role in roles.items():
        resources = {g.resource for g in expand(role["rules"], namespace)}
        assert ("pods/exec" in resources) is (namespace == "shop"), namespace
        assert ("deployments/scale" in resources) is (namespace == "search"), namespace
    cache = {(g.resource, g.verb) for g in expand(roles["cache"]["rules"], "cache")}
    assert ("deployments", "patch") not in cache and ("pods", "delete") in cache


def test_globs_are_reported_with_what_they_covered(tmp_path: Path, policy_values: tuple[Path, str]) -> None:
    (tmp_path / "policy.yaml").write_text(POLICY)
    (tmp_path / "cache.yaml").write_text(PLAYBOOK)
    result = run_rbac("--policy", str(tmp_path))
    assert result.returncode == 0, result.stderr
    warning = "namespaces_allow 'team-*' (rule default) is a glob: it covers only the namespaces named (none;"
    assert warning in result.stderr
    assert f"# WARNING: {warning}" in result.stdout
    assert "named (team-a, team-secret; deny lists still apply)" in policy_values[1], "what it covered"
    values = yaml.safe_load(result.stdout)
    assert sorted(values["rbac"]["roles"]) == ["cache", "search", "shop"]


def test_the_generator_refuses_bad_input(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text("approvals:\n  default:\n    namespaces_allow: [Bad_NS]\n")
    invalid = run_rbac("--policy", str(tmp_path))
    assert invalid.returncode == 1 and "policy.yaml:3:" in invalid.stderr and not invalid.stdout
    missing = run_rbac("--policy", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "no such playbooks directory" in missing.stderr
    (tmp_path / "other.yaml").write_text("")
    misnamed = run_rbac("--policy", str(tmp_path / "other.yaml"))
    assert misnamed.returncode == 2 and "must be named policy.yaml" in misnamed.stderr
    bad_namespace = run_rbac("--namespace", "Not_A_Namespace")
    assert bad_namespace.returncode == 2 and "--namespace must be" in bad_namespace.stderr
    unwritable = run_rbac("-o", str(tmp_path / "no" / "such" / "dir.yaml"))
    assert unwritable.returncode == 2 and "cannot write" in unwritable.stderr
    for result in (invalid, missing, misnamed, bad_namespace, unwritable):
        assert "Traceback" not in result.stderr


def test_the_bundled_policy(render: Render, tmp_path: Path, recorded: FULL_RECORDED) -> None:
    out = tmp_path / "rbac.yaml"
    result = run_rbac("--policy", str(ROOT / "playbooks" / "policy.yaml"), "-o", str(out))
    assert result.returncode == 0, result.stderr
    roles = {r["metadata"]["namespace"]: r for r in of_kind(render(out), "Role")}
    assert "kube-system" not in roles and "platform" not in roles and "observability" not in roles
    for namespace, role in roles.items():
        actions = [ActionName(a) for a in role["metadata"]["annotations"]["incidentbot/actions"].split(",")]
        granted = expand(role["rules"], namespace)
        assert granted == recorded_union(recorded, actions, diagnostics=True), namespace


DOCS = ROOT / "docs" / "rbac.md"
_PERMISSION = re.compile(r"^([a-z]+)(?:\.([a-z0-9.]+))?(/[a-z]+)?: ([a-z, ]+)$")


def test_docs_example_is_the_generators_output(tmp_path: Path) -> None:
    """docs/rbac.md's example output is what the generator prints for the example policy."""
    text = DOCS.read_text()
    policy, output = re.findall(r"this policy:\n\n```yaml\n(.*?)```.*?```yaml\n(.*?)```", text, flags=re.S)[0]
    (tmp_path / "policy.yaml").write_text(policy)
    result = subprocess.run(
        [sys.executable, "-m", "bot", "rbac", "--policy", "policy.yaml"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert output == result.stdout


def test_docs_table_is_the_access_table() -> None:
    rows = {}
    for line in DOCS.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and (cells[0].startswith("`") or cells[0] in ("diagnostics", "investigator")):
            grants: set[Grant] = set()
            for part in cells[1].split("; "):
                match = _PERMISSION.fullmatch(part)
                assert match, f"docs/rbac.md: cannot read {part!r}"
                resource, group, sub, verbs = match.groups()
                grants |= {Grant(group or "", resource + (sub or ""), v) for v in verbs.split(", ")}
            for name in re.findall(r"`([a-z_]+)`", cells[0]) or [cells[0]]:
                rows[name] = grants
    assert rows.pop("diagnostics") == DIAGNOSTICS
    assert rows.pop("investigator") == INVESTIGATOR
    assert rows == {a.value: ACCESS[a] for a in KUBERNETES_ACTIONS}


# --------------------------------------------------------------------------- the chart's side


def test_full_values_rbac_is_generated_from_their_policy(tmp_path: Path, full_values: dict[str, Any]) -> None:
    """tests/deploy/values-full.yaml carries `incidentbot rbac`'s output for its own playbooks."""
    for name, content in full_values["playbooks"]["override"].items():
        (tmp_path / name).write_text(content)
    result = run_rbac("--policy", str(tmp_path))
    assert result.returncode == 0, result.stderr
    generated = yaml.safe_load(result.stdout)["rbac"]
    assert {k: v for k, v in full_values["rbac"].items() if k != "create"} == generated


def test_investigator_reads_only_when_asked_for(
    render: Render, tmp_path: Path, recorded: FULL_RECORDED, policy_values: tuple[Path, str]
) -> None:
    """`--investigator` adds exactly the investigator's recorded reads to the Role of every
    namespace its rule (here `default`: shop, search, team-*) lets it read, never a Secret;
    without it, none of them."""
    plain = {r["metadata"]["namespace"]: r for r in of_kind(render(policy_values[0]), "Role")}
    (tmp_path / "policy.yaml").write_text(POLICY)
    (tmp_path / "cache.yaml").write_text(PLAYBOOK)
    out = tmp_path / "rbac.yaml"
    names = ("--namespace", "team-a", "--namespace", "team-secret", "--namespace", "kube-system")
    result = run_rbac("--policy", str(tmp_path), *names, "--investigator", "-o", str(out))
    assert result.returncode == 0, result.stderr
    roles = {r["metadata"]["namespace"]: r for r in of_kind(render(out), "Role")}
    assert sorted(roles) == sorted(plain)
    reads = recorded[INVESTIGATOR_SCENARIO].grants
    for namespace, role in roles.items():
        granted = expand(role["rules"], namespace)
        extra = reads if namespace in ("shop", "search", "team-a") else frozenset()
        assert granted == expand(plain[namespace]["rules"], namespace) | extra, namespace
        assert not [g for g in granted if g.resource == "secrets"]
    # The control: not granted by default, nor where only another rule (pods-only) allows actions.
    assert not reads <= expand(plain["shop"]["rules"], "shop")
    assert not reads <= expand(roles["cache"]["rules"], "cache")


def test_a_namespace_only_the_investigator_reads_gets_a_role_of_reads(
    render: Render, tmp_path: Path, recorded: FULL_RECORDED
) -> None:
    """An `investigate` rule naming a namespace no action may touch: a Role with the
    diagnostics and the investigator's reads there, nothing else; and only with the flag."""
    investigate = "  investigate:\n    requesters: [sre]\n    approvers: [sre]\n    namespaces_allow: [observability, shop]\n"
    policy = tmp_path / "playbooks"
    policy.mkdir()
    (policy / "policy.yaml").write_text(POLICY.replace("exec_templates:", investigate + "exec_templates:"))
    (policy / "cache.yaml").write_text(PLAYBOOK)
    out = tmp_path / "rbac.yaml"
    result = run_rbac("--policy", str(policy), "--investigator", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "namespace observability: no action + the investigator's reads" in out.read_text()
    roles = {r["metadata"]["namespace"]: r for r in of_kind(render(out), "Role")}
    reads = recorded[INVESTIGATOR_SCENARIO].grants
    assert (
        expand(roles["observability"]["rules"], "observability")
        == reads | recorded[DIAGNOSTICS_SCENARIO].grants
    )
    assert reads <= expand(roles["shop"]["rules"], "shop")
    assert not reads <= expand(roles["search"]["rules"], "search")  # `default` no longer decides
    without = tmp_path / "plain.yaml"
    assert run_rbac("--policy", str(policy), "-o", str(without)).returncode == 0
    assert "observability" not in {r["metadata"]["namespace"] for r in of_kind(render(without), "Role")}


def test_without_generated_values_nothing_is_granted(render: Render) -> None:
    manifests = render()
    for kind in ("Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"):
        assert not of_kind(manifests, kind), kind


def test_rbac_off_renders_no_roles(render: Render, policy_values: tuple[Path, str]) -> None:
    manifests = render(policy_values[0], sets=("rbac.create=false",))
    for kind in ("Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"):
        assert not of_kind(manifests, kind), kind


def test_schema_knows_every_action() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    enum = schema["definitions"]["generatedRole"]["properties"]["actions"]["items"]["enum"]
    assert sorted(enum) == sorted(a.value for a in KUBERNETES_ACTIONS)


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (
            (
                "rbac.roles.api.actions={scale}",
                "rbac.roles.api.rules[0].apiGroups={apps}",
                "rbac.roles.api.rules[0].resources={deployments}",
                "rbac.roles.api.rules[0].verbs={*}",
            ),
            "verbs",
        ),
        (
            (
                "rbac.roles.api.actions={scale}",
                "rbac.roles.api.rules[0].apiGroups={apps}",
                "rbac.roles.api.rules[0].resources={*}",
                "rbac.roles.api.rules[0].verbs={get}",
            ),
            "resources",
        ),
        (("rbac.roles.api.actions={rm_rf}", "rbac.roles.api.rules={}"), "actions"),
        (("rbac.roles.Bad_NS.actions={scale}", "rbac.roles.Bad_NS.rules={}"), "Bad_NS"),
        (("rbac.namespaces={api}",), "namespaces"),
        (("rbac.nodeOperations=true",), "nodeOperations"),
    ],
)
def test_schema_refuses_hand_written_grants(helm: Path, sets: tuple[str, ...], message: str) -> None:
    args = ["template", "rel", str(CHART)]
    for s in sets:
        args += ["--set", s]
    result = run_helm(helm, *args)
    assert result.returncode != 0, f"{sets} was accepted"
    assert message in result.stderr
