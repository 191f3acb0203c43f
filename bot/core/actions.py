"""Typed parameters of every remediation action: the explicit action table's schema.

Every value is validated here before it gets near the cluster: Kubernetes names must be
DNS-1123, numbers are bounded, quantities and env names have strict shapes. Label values
that came from alerts are data, so they pass through these models like any user input.

Environment values may be secrets: `public_params` is what may be shown or recorded (the
variable names, never their values).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

# RFC 1123 subdomain (deployments, pods, nodes, jobs) and label (namespaces, containers).
DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
# Kubernetes resource.Quantity, e.g. 500m, 1, 1.5, 512Mi, 2Gi, 1e3.
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei|e[0-9]+)?$"

Namespace = Annotated[str, StringConstraints(pattern=DNS1123_LABEL, max_length=63)]
ObjectName = Annotated[str, StringConstraints(pattern=DNS1123_SUBDOMAIN, max_length=253)]
ContainerName = Annotated[str, StringConstraints(pattern=DNS1123_LABEL, max_length=63)]
EnvName = Annotated[str, StringConstraints(pattern=ENV_NAME, max_length=128)]
EnvValue = Annotated[str, StringConstraints(max_length=4096)]
Quantity = Annotated[str, StringConstraints(pattern=QUANTITY, max_length=32)]


class ActionName(StrEnum):
    ROLLOUT_RESTART = "rollout_restart"
    SCALE = "scale"
    ROLLOUT_UNDO = "rollout_undo"
    SET_ENV = "set_env"
    SET_RESOURCES = "set_resources"
    DELETE_POD = "delete_pod"
    CORDON = "cordon"
    UNCORDON = "uncordon"
    DRAIN = "drain"
    CREATE_JOB_FROM_CRONJOB = "create_job_from_cronjob"
    EXEC = "exec"
    HOST_COMMAND = "host_command"


class _Params(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DeploymentTarget(_Params):
    namespace: Namespace
    deployment: ObjectName


class RolloutRestartParams(DeploymentTarget):
    pass


class ScaleParams(DeploymentTarget):
    replicas: int = Field(ge=0, le=1000)


class RolloutUndoParams(DeploymentTarget):
    # 0 means "the previous revision", as kubectl's --to-revision=0.
    to_revision: int = Field(default=0, ge=0, le=1_000_000)


class SetEnvParams(DeploymentTarget):
    container: ContainerName | None = None
    env: dict[EnvName, EnvValue] = Field(min_length=1, max_length=50)


class ResourceSpec(_Params):
    cpu: Quantity | None = None
    memory: Quantity | None = None


class SetResourcesParams(DeploymentTarget):
    container: ContainerName | None = None
    requests: ResourceSpec | None = None
    limits: ResourceSpec | None = None


class DeletePodParams(_Params):
    namespace: Namespace
    pod: ObjectName
    grace_period_seconds: int = Field(default=30, ge=0, le=3600)


class NodeParams(_Params):
    node: ObjectName


class DrainParams(NodeParams):
    grace_period_seconds: int = Field(default=30, ge=0, le=3600)
    timeout_seconds: int = Field(default=300, ge=10, le=3600)
    ignore_daemonsets: bool = True
    delete_emptydir_data: bool = False


class CreateJobFromCronJobParams(_Params):
    namespace: Namespace
    cronjob: ObjectName
    # Empty: "<cronjob>-manual-<short id>" is chosen at execution.
    job_name: ObjectName | None = None


class ExecParams(_Params):
    namespace: Namespace
    pod: ObjectName
    container: ContainerName | None = None
    # Name of an allow-listed command template in policy.yaml; never a command line.
    template: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
    args: dict[Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$")], str] = Field(
        default_factory=dict, max_length=10
    )


class HostCommandParams(_Params):
    # A host of clusters.yaml `hosts`; never an address.
    host: Annotated[str, StringConstraints(pattern=DNS1123_LABEL, max_length=63)]
    # Name of an allow-listed host template in policy.yaml; never a command line.
    template: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
    args: dict[Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$")], str] = Field(
        default_factory=dict, max_length=10
    )


# The parameters of any action; `PARAMS_BY_ACTION` says which one each action takes.
ActionParams: TypeAlias = (
    RolloutRestartParams
    | ScaleParams
    | RolloutUndoParams
    | SetEnvParams
    | SetResourcesParams
    | DeletePodParams
    | NodeParams
    | DrainParams
    | CreateJobFromCronJobParams
    | ExecParams
    | HostCommandParams
)


def action_params(params: BaseModel) -> ActionParams:
    """`params` as the parameters of an action (TypeError for any other model)."""
    if not isinstance(params, ActionParams):
        raise TypeError(f"{type(params).__name__} is not the parameters of an action")
    return params


PARAMS_BY_ACTION: dict[ActionName, type[_Params]] = {
    ActionName.ROLLOUT_RESTART: RolloutRestartParams,
    ActionName.SCALE: ScaleParams,
    ActionName.ROLLOUT_UNDO: RolloutUndoParams,
    ActionName.SET_ENV: SetEnvParams,
    ActionName.SET_RESOURCES: SetResourcesParams,
    ActionName.DELETE_POD: DeletePodParams,
    ActionName.CORDON: NodeParams,
    ActionName.UNCORDON: NodeParams,
    ActionName.DRAIN: DrainParams,
    ActionName.CREATE_JOB_FROM_CRONJOB: CreateJobFromCronJobParams,
    ActionName.EXEC: ExecParams,
    ActionName.HOST_COMMAND: HostCommandParams,
}

# Actions on hosts (clusters.yaml `hosts`), not on a Kubernetes cluster.
HOST_ACTIONS = frozenset({ActionName.HOST_COMMAND})
KUBERNETES_ACTIONS = tuple(a for a in ActionName if a not in HOST_ACTIONS)


def target_of(action: ActionName, params: BaseModel) -> str:
    """What an action touches, for people: `deployment api/search-api`, `node node-1`, ..."""
    if isinstance(params, DeploymentTarget):
        return f"deployment {params.namespace}/{params.deployment}"
    if isinstance(params, DeletePodParams | ExecParams):
        return f"pod {params.namespace}/{params.pod}"
    if isinstance(params, NodeParams):
        return f"node {params.node}"
    if isinstance(params, CreateJobFromCronJobParams):
        return f"cronjob {params.namespace}/{params.cronjob}"
    if isinstance(params, HostCommandParams):
        # The cooldown is per host and template.
        return f"host {params.host} ({params.template})"
    return action.value


HIDDEN = "(value hidden)"


def public_params(action: ActionName | str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters as they may be shown in Slack, the audit log and the postmortem:
    `set_env` values are replaced (they may be secrets); everything else is kept."""
    shown = dict(params)
    env = shown.get("env")
    if str(action) == ActionName.SET_ENV.value and isinstance(env, Mapping):
        shown["env"] = dict.fromkeys(env, HIDDEN)
    return shown
