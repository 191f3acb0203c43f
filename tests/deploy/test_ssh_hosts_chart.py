"""helm/incidentbot and SSH hosts: the private keys mounted read-only from a Secret."""

from __future__ import annotations

from typing import Any

from tests.deploy.conftest import FULL_VALUES, Manifest, Render, one
from tests.deploy.test_helm_chart import _validate_all, container

SECRET = "sshHosts.keySecret=incidentbot-ssh-keys"


def pod_spec(manifest: Manifest) -> dict[str, Any]:
    spec: dict[str, Any] = manifest["spec"]["template"]["spec"]
    return spec


def test_ssh_keys_are_mounted_read_only_from_the_secret(render: Render) -> None:
    deployment = one(render(FULL_VALUES, sets=(SECRET,)), "Deployment")
    volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
    assert volumes["ssh-keys"]["secret"] == {"secretName": "incidentbot-ssh-keys", "defaultMode": 0o440}
    mounts = {m["name"]: m for m in container(deployment)["volumeMounts"]}
    assert mounts["ssh-keys"] == {"name": "ssh-keys", "mountPath": "/etc/incidentbot/ssh", "readOnly": True}
    assert _validate_all(render(FULL_VALUES, sets=(SECRET, "sshHosts.mountPath=/keys"))) == []


def test_no_secret_mounts_no_keys(render: Render) -> None:
    for values in ((), (FULL_VALUES,)):
        deployment = one(render(*values), "Deployment")
        assert "ssh-keys" not in {v["name"] for v in pod_spec(deployment)["volumes"]}
