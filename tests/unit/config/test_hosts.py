"""clusters.yaml `hosts`: the model, selection by alert labels, per-host policy rules, and every
problem reported with file:line before the bot starts."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from bot.config.clusters import check_clusters
from bot.config.directory import validate_dir
from bot.config.playbooks import DEFAULT_PLAYBOOKS_DIR, load_playbooks
from bot.core.hosts import HostSpec, UnknownHostError, host_for

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH5Zo0j3y1Qb0xJt0I4mRkFvA8uBq2Yy5oFh9xI1hX3u"


def ssh_host(team: str, select: dict[str, str], **ssh: object) -> dict[str, object]:
    access = {
        "address": "10.0.0.5",
        "user": "incidentbot",
        "private_key": "/etc/incidentbot/ssh/key",
        "host_key": KEY,
    }
    return {"team": team, "transport": "ssh", "ssh": {**access, **ssh}, "select": select}


def test_selection_by_labels_is_unambiguous() -> None:
    hosts = {
        "skillmeat": HostSpec.model_validate(ssh_host("skillmeat", {"job": "skillmeat"})),
        "onquota": HostSpec.model_validate(ssh_host("onquota", {"compose_project": "onquota"})),
        "twin": HostSpec.model_validate(ssh_host("onquota", {"compose_project": "onquota", "env": "prod"})),
    }
    assert host_for(hosts, {"job": "skillmeat", "severity": "critical"}) == "skillmeat"
    assert host_for(hosts, {"compose_project": "onquota"}) == "onquota"
    with pytest.raises(UnknownHostError, match="several hosts"):
        host_for(hosts, {"compose_project": "onquota", "env": "prod"})
    with pytest.raises(UnknownHostError, match=r"no host in clusters\.yaml"):
        host_for(hosts, {"job": "other"})
    with pytest.raises(UnknownHostError, match=r"no host in clusters\.yaml"):
        host_for(hosts, None)


def test_known_hosts_lines_and_public_keys_are_both_pins() -> None:
    HostSpec.model_validate(ssh_host("t", {}, host_key=f"[10.0.0.5]:2222 {KEY}"))
    HostSpec.model_validate(ssh_host("t", {}, host_key=f"{KEY} root@box"))


def test_problems_have_file_and_line(tmp_path: Path) -> None:
    bad_key = ssh_host("skillmeat", {"job": "skillmeat"}, host_key="please trust me on first use")
    docker_tcp = {
        "team": "onquota",
        "transport": "docker",
        "docker": {"url": "tcp://10.0.0.6:2376", "projects": ["onquota"]},
    }
    mixed = {
        "team": "onquota",
        "transport": "ssh",
        "docker": {"url": "unix:///var/run/docker.sock", "projects": ["onquota"]},
    }
    relative = ssh_host("x", {}, private_key="id_ed25519")
    text = yaml.safe_dump(
        {
            "clusters": {"shared": {}},
            "hosts": {
                "skillmeat": bad_key,
                "onquota": docker_tcp,
                "mixed": mixed,
                "rel": relative,
                "shared": ssh_host("x", {}),
            },
        },
        sort_keys=False,
    )
    (tmp_path / "clusters.yaml").write_text(text, encoding="utf-8")
    _, problems = check_clusters(tmp_path)
    shown = "\n".join(str(p) for p in problems)
    assert all(str(p).startswith(f"{tmp_path / 'clusters.yaml'}:") for p in problems)
    assert "host_key must be a public key" in shown
    assert "tcp:// needs tls_ca, tls_cert and tls_key" in shown
    assert "transport ssh takes an `ssh:` section" in shown
    assert "hosts.rel.ssh.private_key" in shown
    assert len(problems) == 4  # the shared name is reported once the hosts themselves are valid


def test_a_host_and_a_cluster_cannot_share_a_name(tmp_path: Path) -> None:
    text = yaml.safe_dump({"clusters": {"shared": {}}, "hosts": {"shared": ssh_host("x", {})}})
    (tmp_path / "clusters.yaml").write_text(text, encoding="utf-8")
    _, problems = check_clusters(tmp_path)
    assert [p.message for p in problems] == ["shared: a host and a cluster cannot share a name"]


def test_per_host_rules_must_name_listed_hosts(tmp_path: Path) -> None:
    shutil.copytree(DEFAULT_PLAYBOOKS_DIR, tmp_path / "pb")
    directory = tmp_path / "pb"
    # The bundled policy's `host_command` rule has rules for `skillmeat` and `onquota`.
    text = yaml.safe_dump(
        {"clusters": {}, "hosts": {"skillmeat": ssh_host("skillmeat", {"job": "skillmeat"})}}
    )
    (directory / "clusters.yaml").write_text(text, encoding="utf-8")
    problems = validate_dir(directory)
    assert [p.message for p in problems] == [
        "approvals.host_command.hosts.onquota: unknown host 'onquota' (not listed in clusters.yaml hosts)"
    ]
    assert str(problems[0]).startswith(f"{directory / 'policy.yaml'}:")
    both = {"skillmeat": ssh_host("skillmeat", {"job": "skillmeat"}), "onquota": ssh_host("onquota", {})}
    (directory / "clusters.yaml").write_text(
        yaml.safe_dump({"clusters": {}, "hosts": both}), encoding="utf-8"
    )
    assert validate_dir(directory) == []


def test_bundled_rules_give_each_host_its_own_templates() -> None:
    policy = load_playbooks(DEFAULT_PLAYBOOKS_DIR).policy
    rule = policy.rule_for("host_command")
    assert rule.for_cluster("onquota").required_approvals == 2
    assert rule.for_cluster("skillmeat").required_approvals == 1
    assert rule.for_cluster("skillmeat").host_violation("skillmeat", "onquota_compose_restart")
    assert rule.for_cluster("onquota").host_violation("onquota", "onquota_compose_restart") is None
    assert rule.host_violation("elsewhere", "systemd_restart") == (
        "host `elsewhere` is not allowed by the rule (allowed: `skillmeat`, `skillmeat-*`, `onquota`, `onquota-*`)"
    )
    # Safe default: a rule without hosts allows none.
    assert policy.rule_for("default").host_violation("skillmeat", "systemd_restart")


def test_undo_must_name_a_template_with_its_arguments(tmp_path: Path) -> None:
    policy = {
        "host_templates": {
            "scale": {
                "argv": ["docker", "compose", "up", "--scale", "api={count}"],
                "args": {"count": {"pattern": "1|2"}},
                "preview": ["docker", "compose", "ps"],
                "undo": {"template": "scale", "args": {"replicas": "{previous}"}},
            },
            "gone": {"argv": ["true"], "undo": {"template": "missing"}},
            "blind": {"argv": ["true"], "undo": {"template": "gone", "args": {}}, "args": {}},
        }
    }
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(policy), encoding="utf-8")
    shown = "\n".join(str(p) for p in validate_dir(tmp_path))
    assert "give exactly the arguments of 'scale': count" in shown
    assert "unknown host template 'missing'" in shown
