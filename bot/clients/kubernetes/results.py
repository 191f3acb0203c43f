"""What the Kubernetes adapter returns: previews, results, rollout status and the diagnostics reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from bot.core.actions import ActionName


class RolloutState(StrEnum):
    COMPLETE = "complete"
    PROGRESSING = "progressing"
    STALLED = "stalled"
    TIMED_OUT = "timed_out"


@dataclass(frozen=True, slots=True)
class RolloutStatus:
    state: RolloutState
    message: str
    desired_replicas: int
    replicas: int
    updated_replicas: int
    ready_replicas: int
    available_replicas: int
    revision: int | None
    generation: int | None
    observed_generation: int | None

    @property
    def complete(self) -> bool:
        return self.state is RolloutState.COMPLETE


@dataclass(frozen=True, slots=True)
class Preview:
    """What an action would do, checked by a server-side dry run.

    `fingerprint` identifies the state the summary was computed from (deployment uid +
    generation, node uid + schedulability, pod uid, cronjob uid + generation); pass it back to
    `execute(expect_fingerprint=...)` to refuse only on meaningful changes rather than on every
    status update that moves `resource_version`.

    `summary_lines` may be shown to anyone and stored; `private_lines` (set env: the values
    before and after) are for the requester's eyes only and are never stored.
    """

    action: ActionName
    target: str
    summary_lines: list[str]
    resource_version: str | None
    generation: int | None
    dry_run_ok: bool
    target_exists: bool
    fingerprint: str | None = None
    problem: str | None = None
    private_lines: list[str] = field(default_factory=list)


class PodOutcome(StrEnum):
    EVICTED = "evicted"
    ALREADY_GONE = "already_gone"
    BLOCKED = "blocked"  # a PodDisruptionBudget still refused at the timeout
    FAILED = "failed"
    SKIPPED = "skipped"
    NOT_ALLOWED = "not_allowed"  # in a namespace the policy does not allow: left running


@dataclass(frozen=True, slots=True)
class PodDrainResult:
    namespace: str
    name: str
    outcome: PodOutcome
    detail: str
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class DrainReport:
    node: str
    was_unschedulable: bool
    pods: list[PodDrainResult]
    skipped: list[PodDrainResult]

    @property
    def complete(self) -> bool:
        return all(p.outcome in (PodOutcome.EVICTED, PodOutcome.ALREADY_GONE) for p in self.pods)


@dataclass(frozen=True, slots=True)
class ExecResult:
    stdout: str
    stderr: str
    exit_code: int

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass(frozen=True, slots=True)
class Result:
    action: ActionName
    target: str
    changes: list[str]
    resource_version: str | None = None
    revision: int | None = None
    complete: bool = True
    drain: DrainReport | None = None
    job_name: str | None = None
    exec_result: ExecResult | None = None


@dataclass(frozen=True, slots=True)
class PodInfo:
    namespace: str
    name: str
    phase: str
    ready: bool
    ready_containers: int
    total_containers: int
    restarts: int
    node: str | None
    reason: str | None
    images: list[str]
    owner: str | None
    created: datetime | None


@dataclass(frozen=True, slots=True)
class EventInfo:
    type: str
    reason: str
    message: str
    count: int
    object_kind: str
    object_name: str
    last_seen: datetime | None
    source: str | None


@dataclass(frozen=True, slots=True)
class RevisionInfo:
    revision: int
    replica_set: str
    images: list[str]
    change_cause: str | None
    replicas: int
    current: bool
    created: datetime | None
