"""The few kubernetes-asyncio calls whose stubs are narrower than what the SDK does at runtime.

Each Protocol states what one generated API method really accepts and returns; the casts that
apply them are the adapter's only casts, kept here at the edge.
"""

from __future__ import annotations

from collections.abc import Awaitable
from contextlib import AbstractAsyncContextManager
from typing import Protocol, TypedDict, cast

import aiohttp
from kubernetes_asyncio.client import AppsV1Api, BatchV1Api, CoreV1Api

from bot.clients.kubernetes.objects import JSON


class ScaleMergePatch(Protocol):
    """`deployments/scale` patched with the merge patch kubectl sends (`_content_type`)."""

    def patch_namespaced_deployment_scale(
        self,
        name: str,
        namespace: str,
        body: JSON,
        *,
        dry_run: str = ...,
        field_manager: str,
        _content_type: str,
    ) -> Awaitable[object]: ...


class JobFromJSON(Protocol):
    """A Job created from a JSON body (serialized exactly like the V1Job model the stubs ask for)."""

    def create_namespaced_job(
        self, namespace: str, body: JSON, *, dry_run: str = ..., field_manager: str
    ) -> Awaitable[object]: ...


class LogOptions(TypedDict, total=False):
    """The keyword arguments `RawPodLog.read_namespaced_pod_log` is given."""

    tail_lines: int
    container: str
    _preload_content: bool


class RawPodLog(Protocol):
    """Pod logs with `_preload_content=False`: aiohttp's response, not a decoded str."""

    def read_namespaced_pod_log(
        self,
        name: str,
        namespace: str,
        *,
        tail_lines: int = ...,
        container: str = ...,
        _preload_content: bool = ...,
    ) -> Awaitable[aiohttp.ClientResponse]: ...


class ExecStream(Protocol):
    """`pods/exec` through a WsApiClient with `_preload_content=False`: the `ws_connect` context,
    with `command` an argv (one `command=` query parameter per item)."""

    def connect_get_namespaced_pod_exec(
        self,
        name: str,
        namespace: str,
        *,
        command: list[str],
        container: str,
        stderr: bool,
        stdin: bool,
        stdout: bool,
        tty: bool,
        _preload_content: bool,
    ) -> Awaitable[AbstractAsyncContextManager[aiohttp.ClientWebSocketResponse]]: ...


def scale_merge_patch(apps: AppsV1Api) -> ScaleMergePatch:
    return cast(ScaleMergePatch, apps)


def job_from_json(batch: BatchV1Api) -> JobFromJSON:
    return cast(JobFromJSON, batch)


def raw_pod_log(core: CoreV1Api) -> RawPodLog:
    return cast(RawPodLog, core)


def exec_stream(core: CoreV1Api) -> ExecStream:
    return cast(ExecStream, core)
