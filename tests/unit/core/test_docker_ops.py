"""Host template argvs read as Docker Engine API operations (for `transport: docker` hosts)."""

from __future__ import annotations

import pytest

from bot.config.playbooks import DEFAULT_PLAYBOOKS_DIR, load_playbooks
from bot.core.docker_ops import Exec, ListService, RestartContainer, RestartService, docker_operation


def test_the_runbooks_docker_commands_are_engine_api_operations() -> None:
    assert docker_operation(["docker", "restart", "skillmeat-api"]) == RestartContainer("skillmeat-api")
    assert docker_operation(["sudo", "-n", "docker", "compose", "-p", "onquota", "restart", "backend"]) == (
        RestartService("onquota", "backend")
    )
    assert docker_operation(
        ["docker", "compose", "-p", "onquota", "ps", "--format", "json", "celery_worker"]
    ) == (ListService("onquota", "celery_worker"))
    assert docker_operation(["docker", "exec", "onquota_backup", "/scripts/backup/backup-postgres.sh"]) == (
        Exec("onquota_backup", ("/scripts/backup/backup-postgres.sh",))
    )


@pytest.mark.parametrize(
    "argv",
    [
        [
            "docker",
            "compose",
            "-p",
            "onquota",
            "up",
            "-d",
            "--scale",
            "backend=3",
            "backend",
        ],  # compose CLI logic
        ["docker", "exec", "--privileged", "c", "sh"],  # options of exec are never passed on
        ["docker", "exec", "c"],
        ["docker", "restart", "../x"],
        ["docker", "run", "alpine"],
        ["systemctl", "restart", "skillmeat-api"],
        ["sudo", "-n"],
        [],
    ],
)
def test_anything_else_has_no_operation(argv: list[str]) -> None:
    assert docker_operation(argv) is None


def test_bundled_onquota_templates_map_except_scaling() -> None:
    policy = load_playbooks(DEFAULT_PLAYBOOKS_DIR).policy
    restart = policy.host_templates["onquota_compose_restart"]
    assert docker_operation(restart.command({"service": "backend"})) == RestartService("onquota", "backend")
    assert docker_operation(restart.preview_command({"service": "backend"}) or []) == ListService(
        "onquota", "backend"
    )
    backup = policy.host_templates["onquota_backup_postgres"]
    assert isinstance(docker_operation(backup.command({})), Exec)
    scale = policy.host_templates["onquota_compose_scale"]
    assert docker_operation(scale.command({"service": "backend", "count": "3"})) is None
