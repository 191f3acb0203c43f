"""The chart's RBAC grants exactly what the remediation action table and the diagnostics need.

The needs are written here per `ActionName` (from the requests bot/clients/kubernetes/
sends, documented in docs/rbac.md): a new action fails this test until its needs are added here and
to helm/incidentbot/templates/rbac.yaml.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.core.actions import ActionName
from tests.deploy.conftest import FULL_VALUES, NAMESPACE, RELEASE, ROOT, Manifest, Render, of_kind

Grant = tuple[str, str, str]  # (apiGroup, resource, verb)

NAMESPACED = "namespaced"
CLUSTER = "cluster"


def grants(group: str, resource: str, *verbs: str) -> set[Grant]:
    return {(group, resource, verb) for verb in verbs}


DEPLOYMENT_PATCH = grants("apps", "deployments", "get", "patch")

# What each remediation action needs (a dry-run preview needs the same as the real request).
ACTION_NEEDS: dict[ActionName, dict[str, set[Grant]]] = {
    ActionName.ROLLOUT_RESTART: {NAMESPACED: DEPLOYMENT_PATCH},
    ActionName.SCALE: {
        NAMESPACED: grants("apps", "deployments", "get") | grants("apps", "deployments/scale", "patch")
    },
    ActionName.ROLLOUT_UNDO: {NAMESPACED: DEPLOYMENT_PATCH | grants("apps", "replicasets", "list")},
    ActionName.SET_ENV: {NAMESPACED: DEPLOYMENT_PATCH},
    ActionName.SET_RESOURCES: {NAMESPACED: DEPLOYMENT_PATCH},
    ActionName.DELETE_POD: {NAMESPACED: grants("", "pods", "get", "delete")},
    ActionName.CORDON: {CLUSTER: grants("", "nodes", "get", "patch")},
    ActionName.UNCORDON: {CLUSTER: grants("", "nodes", "get", "patch")},
    ActionName.DRAIN: {
        CLUSTER: grants("", "nodes", "get", "patch")
        | grants("", "pods", "list", "get")  # the node's pods in every namespace
        | grants("", "pods/eviction", "create")
    },
    ActionName.CREATE_JOB_FROM_CRONJOB: {
        NAMESPACED: grants("batch", "cronjobs", "get") | grants("batch", "jobs", "create")
    },
    # The exec WebSocket upgrade is authorized as create (newer apiservers) or get (older ones).
    ActionName.EXEC: {NAMESPACED: grants("", "pods", "get") | grants("", "pods/exec", "create", "get")},
}

# Read-only diagnostics and the post-action rollout wait, all namespaced.
DIAGNOSTIC_NEEDS: dict[str, set[Grant]] = {
    "pods(namespace, deployment)": grants("apps", "deployments", "get") | grants("", "pods", "list"),
    "pods(namespace, selector)": grants("", "pods", "list"),
    "events": grants("", "events", "list"),
    "rollout_history": grants("apps", "deployments", "get") | grants("apps", "replicasets", "list"),
    "rollout_status / wait_rollout": grants("apps", "deployments", "get"),
    "logs_tail": grants("", "pods/log", "get"),
}


def needed(scope: str) -> set[Grant]:
    out: set[Grant] = set()
    for needs in ACTION_NEEDS.values():
        out |= needs.get(scope, set())
    if scope == NAMESPACED:
        for diag in DIAGNOSTIC_NEEDS.values():
            out |= diag
    return out


def expand(rules: list[dict[str, Any]], where: str) -> set[Grant]:
    """Every (apiGroup, resource, verb) a rule list grants; wildcards and extras are refused."""
    out: set[Grant] = set()
    for rule in rules:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, f"{where}: unexpected rule fields {rule}"
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], f"{where}: wildcard in {field}: {rule}"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    out.add((group, resource, verb))
    return out


FULLNAME = f"{RELEASE}-incidentbot"


def test_every_action_has_its_needs_listed() -> None:
    assert set(ACTION_NEEDS) == set(ActionName)
    for action, needs in ACTION_NEEDS.items():
        assert needs and all(needs.values()), action


def test_roles_grant_exactly_the_namespaced_needs(
    full_manifests: list[Manifest], full_values: dict[str, Any]
) -> None:
    namespaces = full_values["rbac"]["namespaces"]
    roles = of_kind(full_manifests, "Role")
    bindings = of_kind(full_manifests, "RoleBinding")
    assert sorted(r["metadata"]["namespace"] for r in roles) == sorted(namespaces)
    assert sorted(b["metadata"]["namespace"] for b in bindings) == sorted(namespaces)
    expected = needed(NAMESPACED)
    for role in roles:
        where = f"Role {role['metadata']['namespace']}/{role['metadata']['name']}"
        granted = expand(role["rules"], where)
        assert granted - expected == set(), f"{where} grants more than the action table needs"
        for action, needs in ACTION_NEEDS.items():
            missing = needs.get(NAMESPACED, set()) - granted
            assert not missing, f"{where} lacks {sorted(missing)} for {action}"
        for diagnostic, wanted in DIAGNOSTIC_NEEDS.items():
            assert wanted <= granted, f"{where} lacks {sorted(wanted - granted)} for {diagnostic}"
    for binding in bindings:
        role_names = {
            r["metadata"]["name"]
            for r in roles
            if r["metadata"]["namespace"] == binding["metadata"]["namespace"]
        }
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": next(iter(role_names)),
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "incidentbot", "namespace": NAMESPACE}
        ]


def test_cluster_role_grants_exactly_the_node_operations(full_manifests: list[Manifest]) -> None:
    (cluster_role,) = of_kind(full_manifests, "ClusterRole")
    (binding,) = of_kind(full_manifests, "ClusterRoleBinding")
    granted = expand(cluster_role["rules"], "ClusterRole")
    assert granted == needed(CLUSTER)
    for action in (ActionName.CORDON, ActionName.UNCORDON, ActionName.DRAIN):
        assert ACTION_NEEDS[action][CLUSTER] <= granted
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": cluster_role["metadata"]["name"],
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "incidentbot", "namespace": NAMESPACE}]


def test_no_cluster_scope_unless_node_operations(render: Render) -> None:
    manifests = render(sets=("rbac.namespaces={checkout,api}",))
    assert len(of_kind(manifests, "Role")) == 2
    assert not of_kind(manifests, "ClusterRole") and not of_kind(manifests, "ClusterRoleBinding")
    service_account = of_kind(manifests, "ServiceAccount")[0]["metadata"]["name"]
    for binding in of_kind(manifests, "RoleBinding"):
        assert binding["subjects"][0]["name"] == service_account == FULLNAME


def test_rbac_off_renders_no_roles(render: Render) -> None:
    manifests = render(FULL_VALUES, sets=("rbac.create=false",))
    for kind in ("Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"):
        assert not of_kind(manifests, kind)


@pytest.mark.parametrize(("kind", "scope"), [("Role", NAMESPACED), ("ClusterRole", CLUSTER)])
def test_docs_rbac_md_agrees(kind: str, scope: str) -> None:
    text = (Path(ROOT) / "docs" / "rbac.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.S)
    documents = [d for block in blocks for d in yaml.safe_load_all(block) if d]
    (doc,) = [d for d in documents if d["kind"] == kind]
    assert expand(doc["rules"], f"docs/rbac.md {kind}") == needed(scope)
