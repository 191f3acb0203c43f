"""What a host template's argv asks of the Docker Engine API, for hosts with `transport: docker`.

The policy's host templates are written as the `docker` command lines of the runbooks (the
SSH transport runs them as they are). A Docker transport runs the same templates without a
shell or a CLI, by reading each argv as one typed Engine API operation: so the policy, the
approvals and `incidentbot sudoers` stay one for both transports. An argv with no Engine API
equivalent (`docker compose up --scale`: that is the compose CLI's own logic) is None: the
Docker transport refuses it, and it stays an SSH host's template.

Pure: no I/O. The Docker host transport (`bot.clients.docker.DockerHost`) performs the
operations.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "NOT_SUPPORTED",
    "DockerOperation",
    "Exec",
    "ListService",
    "RestartContainer",
    "RestartService",
    "docker_operation",
]

# Docker's own rules for names (containers, compose projects, services).
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")
# Said of an argv that `docker_operation` reads as None, wherever it is refused.
NOT_SUPPORTED = "is not supported by the Docker transport (it has no Docker Engine API equivalent)"


@dataclass(frozen=True, slots=True)
class RestartContainer:
    """`docker restart <container>`: POST /containers/{id}/restart."""

    container: str


@dataclass(frozen=True, slots=True)
class RestartService:
    """`docker compose -p <project> restart <service>`: every container labelled
    com.docker.compose.project=<project> and com.docker.compose.service=<service>."""

    project: str
    service: str


@dataclass(frozen=True, slots=True)
class ListService:
    """`docker compose -p <project> ps --format json <service>`: the service's containers, one
    JSON line each (the preview before and after)."""

    project: str
    service: str


@dataclass(frozen=True, slots=True)
class Exec:
    """`docker exec <container> <argv...>`: exec create/start/inspect, the argv as given."""

    container: str
    argv: tuple[str, ...]


DockerOperation = RestartContainer | RestartService | ListService | Exec


def _names(*values: str) -> bool:
    return all(_NAME.fullmatch(v) for v in values)


def docker_operation(argv: Sequence[str]) -> DockerOperation | None:
    """The Engine API operation `argv` (a rendered host template, `sudo -n` allowed in front)
    stands for, or None when it has none."""
    words = list(argv)
    if words[:2] == ["sudo", "-n"]:
        words = words[2:]
    if not words or words[0] != "docker":
        return None
    rest = words[1:]
    match rest:
        case ["restart", container] if _names(container):
            return RestartContainer(container)
        case ["compose", "-p", project, "restart", service] if _names(project, service):
            return RestartService(project, service)
        case ["compose", "-p", project, "ps", "--format", "json", service] if _names(project, service):
            return ListService(project, service)
        case ["exec", container, *command] if (
            command and _names(container) and not command[0].startswith("-")
        ):
            return Exec(container, tuple(command))
    return None
