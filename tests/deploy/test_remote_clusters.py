"""helm/incidentbot and several clusters: the remote clusters' kubeconfigs mounted from a Secret,
and the RBAC to install in each remote cluster, rendered on its own (`--show-only`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.deploy.conftest import CHART, FULL_VALUES, NAMESPACE, RELEASE, Manifest, Render, one, run_helm
from tests.deploy.test_helm_chart import FULLNAME, _validate_all, container

SECRET = "remoteClusters.kubeconfigSecret=skillforge-kubeconfigs"


def pod_spec(manifest: Manifest) -> dict[str, Any]:
    spec: dict[str, Any] = manifest["spec"]["template"]["spec"]
    return spec


def test_remote_kubeconfigs_are_mounted_from_the_secret(render: Render) -> None:
    deployment = one(render(FULL_VALUES, sets=(SECRET,)), "Deployment")
    volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
    assert volumes["remote-kubeconfigs"]["secret"] == {
        "secretName": "skillforge-kubeconfigs",
        "defaultMode": 0o440,
    }
    mounts = {m["name"]: m for m in container(deployment)["volumeMounts"]}
    assert mounts["remote-kubeconfigs"] == {
        "name": "remote-kubeconfigs",
        "mountPath": "/etc/incidentbot/kubeconfigs",
        "readOnly": True,
    }
    assert _validate_all(render(FULL_VALUES, sets=(SECRET, "remoteClusters.mountPath=/k"))) == []
    moved = one(render(FULL_VALUES, sets=(SECRET, "remoteClusters.mountPath=/k")), "Deployment")
    assert {m["mountPath"] for m in container(moved)["volumeMounts"]} >= {"/k"}


def test_no_secret_mounts_nothing(render: Render) -> None:
    for values in ((), (FULL_VALUES,)):
        deployment = one(render(*values), "Deployment")
        assert "remote-kubeconfigs" not in {v["name"] for v in pod_spec(deployment)["volumes"]}


def _remote_rbac(helm: Path, *sets: str) -> list[Manifest]:
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--values", str(FULL_VALUES)]
    for s in ("remoteClusters.rbac.render=true", *sets):
        args += ["--set", s]
    result = run_helm(helm, *args, "--show-only", "templates/remote-rbac.yaml")
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def test_remote_rbac_renders_alone_with_the_policys_roles(helm: Path) -> None:
    manifests = _remote_rbac(helm, "remoteClusters.rbac.namespace=incidentbot-remote")
    assert _validate_all(manifests) == []
    full = yaml.safe_load(FULL_VALUES.read_text())["rbac"]
    kinds = [m["kind"] for m in manifests]
    assert kinds.count("ServiceAccount") == 1 and kinds.count("Secret") == 1
    assert "Deployment" not in kinds
    [token] = [m for m in manifests if m["kind"] == "Secret"]
    assert token["type"] == "kubernetes.io/service-account-token"
    assert token["metadata"]["annotations"]["kubernetes.io/service-account.name"] == FULLNAME
    roles = {m["metadata"]["namespace"]: m for m in manifests if m["kind"] == "Role"}
    assert set(roles) == set(full["roles"])
    for namespace, role in roles.items():
        assert role["rules"] == full["roles"][namespace]["rules"]
    subject = {"kind": "ServiceAccount", "name": FULLNAME, "namespace": "incidentbot-remote"}
    bindings = [m for m in manifests if m["kind"] in ("RoleBinding", "ClusterRoleBinding")]
    assert bindings and all(b["subjects"] == [subject] for b in bindings)
    if full["clusterRole"]["rules"]:
        [cluster_role] = [m for m in manifests if m["kind"] == "ClusterRole"]
        assert cluster_role["rules"] == full["clusterRole"]["rules"]


def test_remote_rbac_is_not_rendered_by_default(render: Render) -> None:
    for values in ((), (FULL_VALUES,)):
        names = {m["metadata"]["name"] for m in render(*values)}
        assert f"{FULLNAME}-token" not in names
