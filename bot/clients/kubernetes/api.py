"""What every resource module of the adapter shares: the SDK's API objects, the settings, the
error mapping around each request, and the reads of the objects the actions target."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

import aiohttp
from kubernetes_asyncio.client import ApiClient, AppsV1Api, BatchV1Api, CoreV1Api
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.stream import WsApiClient

from bot.clients.kubernetes.errors import api_error, transport_error
from bot.clients.kubernetes.objects import JSON, as_dict
from bot.clients.kubernetes.sdk import (
    JobFromJSON,
    RawPodLog,
    ScaleMergePatch,
    job_from_json,
    raw_pod_log,
    scale_merge_patch,
)
from bot.core.errors import IntegrationError

T = TypeVar("T")

DRY_RUN = "All"
MERGE_PATCH = "application/merge-patch+json"


@dataclass(slots=True)
class KubeApi:
    """The SDK objects and settings behind one `KubernetesCluster` (its constructor gives them)."""

    api_client: ApiClient
    field_manager: str
    evict_retry_delay: float
    poll_interval: float
    revision_wait: float
    clock: Callable[[], datetime]
    ws_factory: Callable[[], WsApiClient]
    job_suffix: Callable[[], str]
    apps: AppsV1Api = field(init=False)
    core: CoreV1Api = field(init=False)
    batch: BatchV1Api = field(init=False)
    scale: ScaleMergePatch = field(init=False)
    jobs: JobFromJSON = field(init=False)
    logs: RawPodLog = field(init=False)

    def __post_init__(self) -> None:
        self.apps = AppsV1Api(self.api_client)
        self.core = CoreV1Api(self.api_client)
        self.batch = BatchV1Api(self.api_client)
        self.scale = scale_merge_patch(self.apps)
        self.jobs = job_from_json(self.batch)
        self.logs = raw_pod_log(self.core)

    def to_json(self, model: object) -> JSON:
        """An SDK model as the apiserver serialized it."""
        return as_dict(self.api_client.sanitize_for_serialization(model))

    async def call(self, what: str, call: Awaitable[T]) -> T:
        try:
            return await call
        except ApiException as exc:
            raise api_error(what, exc) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise transport_error(what, exc) from exc

    async def dry_run(self, what: str, call: Awaitable[object]) -> str | None:
        """Run a dry-run request; a 4xx answer is returned as the problem text, not raised."""
        try:
            await self.call(f"{what} (dry run)", call)
        except IntegrationError as err:
            if err.status is not None and 400 <= err.status < 500:
                return err.message
            raise
        return None

    async def read_deployment(self, namespace: str, name: str) -> JSON:
        dep = await self.call(
            f"get deployment {namespace}/{name}", self.apps.read_namespaced_deployment(name, namespace)
        )
        return self.to_json(dep)

    async def read_node(self, name: str) -> JSON:
        return self.to_json(await self.call(f"get node {name}", self.core.read_node(name)))

    async def read_pod(self, namespace: str, name: str) -> JSON:
        return self.to_json(
            await self.call(f"get pod {namespace}/{name}", self.core.read_namespaced_pod(name, namespace))
        )

    async def read_cronjob(self, namespace: str, name: str) -> JSON:
        return self.to_json(
            await self.call(
                f"get cronjob {namespace}/{name}", self.batch.read_namespaced_cron_job(name, namespace)
            )
        )
