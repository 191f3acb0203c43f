"""The Kubernetes clusters the bot acts on (``playbooks/clusters.yaml``): pure pydantic models.

Each cluster has a name and says how to reach it: a context of the kubeconfig (``KUBECONFIG``,
or a kubeconfig file of its own) or ``in_cluster: true`` for the cluster the bot runs in. An
alert picks its cluster with one label (``cluster`` unless ``label`` says otherwise); alerts
without it go to ``default``. An alert naming a cluster that is not listed is never acted on:
guessing would run a change against the wrong cluster.

Each cluster may name its own Prometheus (``prometheus_url``): an organisation with a
Prometheus per cluster gets graphs, runbook checks and verification from the cluster the
alert came from. Clusters without one (and alerts naming an unknown cluster, which are only
read, never acted on) use ``PROMETHEUS_URL``, typically a global query layer.

Without the file (or with no clusters in it) there is one cluster, as before: ``KUBECONFIG``'s
current context, else the pod's service account; alert labels then choose nothing.

This module does no I/O; `bot.config.clusters` reads the file with line numbers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from bot.core.errors import UserError
from bot.core.hosts import HostName, HostSpec

__all__ = [
    "IMPLICIT_CLUSTER",
    "ClusterCatalog",
    "ClusterName",
    "ClusterSpec",
    "UnknownClusterError",
]

# An RFC 1123 label, like a context or namespace name.
ClusterName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$", max_length=63)]
LabelName = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$", max_length=128)]

# The name of the one cluster of a bot without a clusters.yaml (stored on its runs).
IMPLICIT_CLUSTER = "default"


class UnknownClusterError(UserError):
    """An alert names a cluster that clusters.yaml does not list."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ClusterSpec(_Model):
    context: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        description="kubeconfig context; null: the kubeconfig's current context",
    )
    kubeconfig: str | None = Field(
        default=None,
        min_length=1,
        max_length=4096,
        description="kubeconfig file of this cluster (e.g. mounted from a Secret); null: KUBECONFIG",
    )
    in_cluster: bool = Field(
        default=False, description="the cluster the bot runs in, through its pod's service account"
    )
    prometheus_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        max_length=2048,
        description=(
            "this cluster's Prometheus (graphs, runbook checks, verification, investigation);"
            " null: PROMETHEUS_URL"
        ),
    )
    description: str = Field(default="", max_length=200, description="shown nowhere; for people")

    @model_validator(mode="after")
    def _one_way_in(self) -> ClusterSpec:
        if self.in_cluster and (self.context is not None or self.kubeconfig is not None):
            raise ValueError("in_cluster: true takes no context or kubeconfig")
        return self


class ClusterCatalog(_Model):
    label: LabelName = Field(default="cluster", description="the alert label that names the cluster")
    default: ClusterName | None = Field(
        default=None,
        description="the cluster of alerts without the label (and of ad hoc runs); null: the only one",
    )
    clusters: dict[ClusterName, ClusterSpec] = Field(default_factory=dict, max_length=100)
    hosts: dict[HostName, HostSpec] = Field(
        default_factory=dict,
        max_length=500,
        description="machines reached over SSH (or the Docker Engine API) for host_command actions",
    )

    @model_validator(mode="after")
    def _default_listed(self) -> ClusterCatalog:
        if self.default is not None and self.default not in self.clusters:
            raise ValueError(f"default cluster {self.default!r} is not listed under clusters")
        if self.default is None and len(self.clusters) > 1:
            raise ValueError("with several clusters, name the default one (default: <name>)")
        shared = sorted(set(self.clusters) & set(self.hosts))
        if shared:
            # Per-target policy rules (`clusters:` of an approval rule) are keyed by these names.
            raise ValueError(f"{', '.join(shared)}: a host and a cluster cannot share a name")
        return self

    @property
    def implicit(self) -> bool:
        """No clusters listed: the single cluster of KUBECONFIG or the pod, as without the file."""
        return not self.clusters

    @property
    def names(self) -> list[str]:
        return list(self.clusters) if self.clusters else [IMPLICIT_CLUSTER]

    @property
    def default_name(self) -> str:
        if self.default is not None:
            return self.default
        return next(iter(self.clusters), IMPLICIT_CLUSTER)

    def named_by(self, labels: Mapping[str, str] | None) -> str | None:
        """The cluster an alert's labels name (None: no label; implicit catalogs read none)."""
        if self.implicit or not labels:
            return None
        value = labels.get(self.label, "").strip()
        return value or None

    def select(self, labels: Mapping[str, str] | None) -> str:
        """The cluster of an alert with these labels; UnknownClusterError when it names one
        that is not listed."""
        named = self.named_by(labels)
        if named is None:
            return self.default_name
        if named not in self.clusters:
            listed = ", ".join(f"`{n}`" for n in self.clusters)
            # The label is the sender's text: shown only when it is a plain name.
            shown = named if re.fullmatch(r"[A-Za-z0-9._-]{1,63}", named) else "(not a valid name)"
            raise UnknownClusterError(
                f"the alert names cluster `{shown}` (label `{self.label}`), which is not one of the "
                f"configured clusters ({listed}); nothing is run against any cluster"
            )
        return named
