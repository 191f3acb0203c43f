"""The hosts the bot acts on besides Kubernetes clusters (``clusters.yaml`` ``hosts``).

A host has a name, the team it belongs to, how to reach it and which alert labels select it.
Reaching it is a transport: ``ssh`` (key-based, with the host key pinned in the file: no trust
on first use) or ``docker`` (the Docker Engine API over a Unix socket, or TCP with TLS client
certificates). What runs there is decided by the policy's ``host_templates``, never here.

An alert selects the host whose ``select`` labels all equal the alert's; several matching
hosts select none (guessing would run a command on the wrong machine).

Pure pydantic models; `bot.config.clusters` reads them with line numbers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from bot.core.errors import UserError

__all__ = ["DockerAccess", "HostName", "HostSpec", "SshAccess", "Transport", "UnknownHostError", "host_for"]

HostName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$", max_length=63)]
LabelName = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$", max_length=128)]
TeamName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$", max_length=63)]
# A DNS name, IPv4 or IPv6 address.
Address = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9.:-]{1,253}$")]
PosixUser = Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_-]{0,31}$")]
FilePath = Annotated[str, StringConstraints(pattern=r"^/[^\x00\n]{1,4095}$")]
# Docker's rule for compose project names.
ComposeProject = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]

_KEY_TYPE = re.compile(r"^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|sk-\S+)$")


class UnknownHostError(UserError):
    """A host action names a host that clusters.yaml does not list, or no host is selected."""


class Transport(StrEnum):
    SSH = "ssh"
    DOCKER = "docker"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def public_key_of(host_key: str) -> str:
    """`<type> <base64>` of a pinned key given as a public key or a known_hosts line."""
    parts = host_key.split()
    for i, part in enumerate(parts[:-1]):
        if _KEY_TYPE.match(part):
            return f"{part} {parts[i + 1]}"
    raise ValueError("host_key must be a public key (`ssh-ed25519 AAAA…`) or a known_hosts line")


class SshAccess(_Model):
    address: Address = Field(description="DNS name or IP address")
    port: int = Field(default=22, ge=1, le=65535)
    user: PosixUser = Field(description="the dedicated account (see `incidentbot sudoers`)")
    private_key: FilePath = Field(description="private key file, e.g. mounted from a Secret")
    host_key: str = Field(
        min_length=20,
        max_length=16384,
        description="the server's pinned host key: a public key or a known_hosts line (no trust on first use)",
    )
    connect_timeout_seconds: float = Field(default=10.0, gt=0, le=120)

    @field_validator("host_key")
    @classmethod
    def _key_shape(cls, value: str) -> str:
        public_key_of(value)
        return value


class DockerAccess(_Model):
    url: str = Field(
        pattern=r"^(unix:///[^\x00\s]+|tcp://[A-Za-z0-9.:-]+:[0-9]{1,5})$",
        description="unix:///var/run/docker.sock (or a socket proxy's), or tcp://host:2376 with TLS",
    )
    tls_ca: FilePath | None = None
    tls_cert: FilePath | None = None
    tls_key: FilePath | None = None
    projects: tuple[ComposeProject, ...] = Field(
        min_length=1,
        max_length=20,
        description="the compose projects whose containers this host's actions may touch (an engine "
        "runs other projects' containers too: a container outside these is refused)",
    )

    @model_validator(mode="after")
    def _tls_for_tcp(self) -> DockerAccess:
        # The Engine API over plain TCP is root on the host for anybody on the network.
        tls = (self.tls_ca, self.tls_cert, self.tls_key)
        if self.url.startswith("tcp://") and None in tls:
            raise ValueError("tcp:// needs tls_ca, tls_cert and tls_key (client certificates)")
        if self.url.startswith("unix://") and any(tls):
            raise ValueError("a unix:// socket takes no TLS files")
        return self


class HostSpec(_Model):
    team: TeamName = Field(description="the team it belongs to (services.yaml)")
    transport: Transport
    ssh: SshAccess | None = None
    docker: DockerAccess | None = None
    select: dict[LabelName, str] = Field(
        default_factory=dict,
        max_length=10,
        description="alert labels that pick this host, all equal (e.g. instance, host, compose_project)",
    )
    description: str = Field(default="", max_length=200)

    @model_validator(mode="after")
    def _access_matches(self) -> HostSpec:
        if self.transport is Transport.SSH and (self.ssh is None or self.docker is not None):
            raise ValueError("transport ssh takes an `ssh:` section (and no `docker:`)")
        if self.transport is Transport.DOCKER and (self.docker is None or self.ssh is not None):
            raise ValueError("transport docker takes a `docker:` section (and no `ssh:`)")
        return self


def host_for(hosts: Mapping[str, HostSpec], labels: Mapping[str, str] | None) -> str:
    """The one host whose `select` labels all equal the alert's; UnknownHostError otherwise."""
    found = [
        name
        for name, spec in hosts.items()
        if spec.select and labels and all(labels.get(k) == v for k, v in spec.select.items())
    ]
    if len(found) == 1:
        return found[0]
    if not found:
        raise UnknownHostError("no host in clusters.yaml is selected by the alert's labels; nothing is run")
    names = ", ".join(f"`{n}`" for n in found)
    raise UnknownHostError(f"the alert's labels select several hosts ({names}); nothing is run on any")


def check_named(hosts: Mapping[str, HostSpec], name: str) -> str:
    """`name` when clusters.yaml lists it; UnknownHostError (naming the listed ones) otherwise."""
    if name in hosts:
        return name
    listed = ", ".join(f"`{n}`" for n in hosts) or "none are listed"
    shown = name if re.fullmatch(r"[a-z0-9-]{1,63}", name) else "(not a valid name)"
    raise UnknownHostError(f"`{shown}` is not a host of clusters.yaml ({listed}); nothing is run")
