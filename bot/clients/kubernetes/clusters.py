"""Every cluster the bot can reach, by name (`bot.core.clusters`): one `KubernetesCluster` each,
built from a kubeconfig context (KUBECONFIG or the cluster's own file) or the pod's service
account, and the words proposals use to name it.

Without clusters.yaml there is one cluster, as before: KUBECONFIG's current context, else the
service account, else none (proposals then say that nothing can run)."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import yaml
from kubernetes_asyncio import config as kube_config
from kubernetes_asyncio.client import ApiClient, Configuration

from bot.clients.kubernetes.cluster import KubernetesCluster
from bot.core.clusters import IMPLICIT_CLUSTER, ClusterCatalog, ClusterSpec
from bot.core.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Reachable:
    """One cluster: its client (None: not configured) and how proposals name it."""

    client: KubernetesCluster | None
    label: str


class Clusters:
    """The clusters by name, and which one an alert's labels select."""

    def __init__(self, catalog: ClusterCatalog, reachable: Mapping[str, Reachable]) -> None:
        self.catalog = catalog
        self._reachable = dict(reachable)

    @classmethod
    def single(cls, client: KubernetesCluster | None, label: str = "configured") -> Clusters:
        """One cluster without clusters.yaml (tests and tools that have one client)."""
        return cls(ClusterCatalog(), {IMPLICIT_CLUSTER: Reachable(client, label)})

    def select(self, labels: Mapping[str, str] | None) -> str:
        """The name of the cluster these alert labels select (UnknownClusterError: none)."""
        return self.catalog.select(labels)

    def client(self, name: str | None) -> KubernetesCluster | None:
        """The client of cluster `name` ('' or None: the default one, e.g. runs stored before
        clusters had names); None when it is not configured or not listed."""
        found = self._reachable.get(name or self.catalog.default_name)
        return found.client if found is not None else None

    def label(self, name: str | None) -> str:
        found = self._reachable.get(name or self.catalog.default_name)
        if found is None:
            return f"`{name}` (not configured)"
        return found.label

    @property
    def names(self) -> list[str]:
        return list(self._reachable)


async def connect(
    catalog: ClusterCatalog, *, kubeconfig: str | None, in_cluster: bool, stack: AsyncExitStack
) -> Clusters:
    """A client per cluster of `catalog`; every client is closed by `stack`. A cluster that
    cannot be reached from its configuration stops start-up (ConfigError naming it)."""
    if catalog.implicit:
        implicit = ClusterSpec(in_cluster=not kubeconfig and in_cluster)
        if not kubeconfig and not in_cluster:
            return Clusters(catalog, {IMPLICIT_CLUSTER: Reachable(None, "not configured")})
        client = await _client(implicit, kubeconfig, stack, what="KUBECONFIG")
        return Clusters(catalog, {IMPLICIT_CLUSTER: Reachable(client, _implicit_label(kubeconfig))})
    reachable: dict[str, Reachable] = {}
    for name, spec in catalog.clusters.items():
        client = await _client(spec, kubeconfig, stack, what=f"clusters.yaml: cluster {name!r}")
        reachable[name] = Reachable(client, _label(name, spec))
    return Clusters(catalog, reachable)


async def _client(
    spec: ClusterSpec, kubeconfig: str | None, stack: AsyncExitStack, *, what: str
) -> KubernetesCluster:
    configuration = Configuration()
    try:
        if spec.in_cluster:
            cast(Any, kube_config).load_incluster_config(client_configuration=configuration)
        else:
            config_file = spec.kubeconfig or kubeconfig
            if not config_file:
                raise ConfigError(f"{what}: no kubeconfig (set KUBECONFIG or the cluster's kubeconfig)")
            await kube_config.load_kube_config(
                config_file=config_file, context=spec.context, client_configuration=configuration
            )
    except (kube_config.ConfigException, OSError) as exc:
        raise ConfigError(f"{what}: cannot load Kubernetes configuration: {exc}") from None
    api = ApiClient(configuration=configuration)
    stack.push_async_callback(api.close)
    return KubernetesCluster(api)


def _label(name: str, spec: ClusterSpec) -> str:
    if spec.in_cluster:
        return f"`{name}` (in-cluster)"
    return f"`{name}` (context `{spec.context}`)" if spec.context else f"`{name}`"


def _implicit_label(kubeconfig: str | None) -> str:
    """How proposals name the one cluster of a bot without clusters.yaml."""
    if not kubeconfig:
        return "in-cluster (service account)"
    path = Path(kubeconfig)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return f"KUBECONFIG {path.name}"
    context = doc.get("current-context") if isinstance(doc, dict) else None
    return f"context `{context}` (KUBECONFIG)" if context else f"KUBECONFIG {path.name}"
