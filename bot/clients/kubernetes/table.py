"""The action table: every remediation action declared once, with its parameter model and the
two halves both `KubernetesCluster.preview` and `KubernetesCluster.execute` dispatch through.

A preview reads the target and dry-runs the request server-side, describing it before → after;
an execute re-reads the target, refuses when it changed since the preview, then sends the
kubectl-equivalent request(s) (each resource module's docstring names them).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from pydantic import BaseModel

from bot.clients.kubernetes import containers, deployments, jobs, nodes, pod_exec, pods, rollouts
from bot.clients.kubernetes.api import KubeApi
from bot.clients.kubernetes.context import Expectation, Request
from bot.clients.kubernetes.results import Preview, Result
from bot.core.actions import (
    ActionName,
    ActionParams,
    CreateJobFromCronJobParams,
    DeletePodParams,
    DrainParams,
    ExecParams,
    NodeParams,
    RolloutRestartParams,
    RolloutUndoParams,
    ScaleParams,
    SetEnvParams,
    SetResourcesParams,
)

P = TypeVar("P", bound=BaseModel)


class Action(Protocol):
    """What the facade needs of a table entry: both halves, taking any action's parameters."""

    async def preview(self, api: KubeApi, params: ActionParams, req: Request) -> Preview: ...

    async def execute(
        self, api: KubeApi, params: ActionParams, req: Request, expect: Expectation
    ) -> Result: ...


@dataclass(frozen=True, slots=True)
class Handler(Generic[P]):
    """One action: its parameter model, and its preview and execute taking exactly that model."""

    model: type[P]
    previewer: Callable[[KubeApi, P, Request], Awaitable[Preview]]
    executor: Callable[[KubeApi, P, Request, Expectation], Awaitable[Result]]

    def _narrow(self, params: ActionParams) -> P:
        if not isinstance(params, self.model):
            raise TypeError(f"expected {self.model.__name__}, got {type(params).__name__}")
        return params

    async def preview(self, api: KubeApi, params: ActionParams, req: Request) -> Preview:
        return await self.previewer(api, self._narrow(params), req)

    async def execute(self, api: KubeApi, params: ActionParams, req: Request, expect: Expectation) -> Result:
        return await self.executor(api, self._narrow(params), req, expect)


ACTIONS: Mapping[ActionName, Action] = {
    ActionName.ROLLOUT_RESTART: Handler(
        RolloutRestartParams, deployments.preview_restart, deployments.restart
    ),
    ActionName.SCALE: Handler(ScaleParams, deployments.preview_scale, deployments.scale),
    ActionName.ROLLOUT_UNDO: Handler(RolloutUndoParams, rollouts.preview_undo, rollouts.undo),
    ActionName.SET_ENV: Handler(SetEnvParams, containers.preview_set_env, containers.set_env),
    ActionName.SET_RESOURCES: Handler(
        SetResourcesParams, containers.preview_set_resources, containers.set_resources
    ),
    ActionName.DELETE_POD: Handler(DeletePodParams, pods.preview_delete_pod, pods.delete_pod),
    # One pair of handlers for both: `Request.action` says which way.
    ActionName.CORDON: Handler(NodeParams, nodes.preview_cordon, nodes.cordon),
    ActionName.UNCORDON: Handler(NodeParams, nodes.preview_cordon, nodes.cordon),
    ActionName.DRAIN: Handler(DrainParams, nodes.preview_drain, nodes.drain),
    ActionName.CREATE_JOB_FROM_CRONJOB: Handler(
        CreateJobFromCronJobParams, jobs.preview_create_job, jobs.create_job
    ),
    ActionName.EXEC: Handler(ExecParams, pod_exec.preview_exec, pod_exec.exec_action),
}


def handler_for(name: ActionName) -> Action:
    found = ACTIONS.get(name)
    if found is None:
        raise ValueError(f"unknown action {name!r}")
    return found
