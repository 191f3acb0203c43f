"""What a remediation run is: its states and the stored proposal, as plain frozen data.

Pure: no I/O, no clock. Storage (`bot.store.remediation`) builds these from rows, the engine
(`bot.flows.remediation.engine`) decides transitions, and `bot.render.proposals` draws them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from bot.core.actions import ActionName


class RunStatus(StrEnum):
    PROPOSED = "proposed"
    APPROVED = "approved"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset(
    {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.REJECTED, RunStatus.EXPIRED, RunStatus.CANCELLED}
)


class AuditEvent(StrEnum):
    REQUESTED = "requested"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CLAIMED = "claimed"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    VERIFIED = "verified"
    REFUSED = "refused"
    KILL_SWITCH = "kill_switch"


@dataclass(frozen=True, slots=True)
class PreviewInfo:
    """The stored preview: what the dry run said, and the state it was computed from."""

    summary_lines: tuple[str, ...] = ()
    dry_run_ok: bool = False
    target_exists: bool = False
    resource_version: str | None = None
    generation: int | None = None
    fingerprint: str | None = None
    problem: str | None = None
    # scale: replicas at preview time (bounds and the undo use it).
    current_replicas: int | None = None
    # Which cluster the action runs against ("context sandbox", "in-cluster", ...).
    cluster: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "summary_lines": list(self.summary_lines),
            "dry_run_ok": self.dry_run_ok,
            "target_exists": self.target_exists,
            "resource_version": self.resource_version,
            "generation": self.generation,
            "fingerprint": self.fingerprint,
            "problem": self.problem,
            "current_replicas": self.current_replicas,
            "cluster": self.cluster,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> PreviewInfo:
        data = data or {}
        replicas = data.get("current_replicas")
        generation = data.get("generation")
        return cls(
            summary_lines=tuple(str(line) for line in data.get("summary_lines") or ()),
            dry_run_ok=bool(data.get("dry_run_ok")),
            target_exists=bool(data.get("target_exists")),
            resource_version=data.get("resource_version"),
            generation=int(generation) if generation is not None else None,
            fingerprint=data.get("fingerprint"),
            problem=data.get("problem"),
            current_replicas=int(replicas) if replicas is not None else None,
            cluster=str(data.get("cluster") or ""),
        )


@dataclass(frozen=True, slots=True)
class Approval:
    user_id: str
    at: datetime
    # The rule's required roles (`approvers_all_of`) this approver held when approving.
    roles: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ActionRun:
    id: int
    token: str
    incident_id: int
    action: ActionName
    params: dict[str, Any]
    target: str
    namespace: str
    title: str
    status: RunStatus
    approval_rule: str
    approvals_needed: int
    expires_at: datetime
    created_at: datetime
    preview: PreviewInfo = field(default_factory=PreviewInfo)
    why: str = ""
    playbook: str | None = None
    requested_by: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    generator_url: str = ""
    channel_id: str | None = None
    message_ts: str | None = None
    approved_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    verification: str | None = None
    undo_of: int | None = None
    approvals: tuple[Approval, ...] = ()
    version: int = 1
    shown_version: int = 0
    # Roles that must each be covered by a different approver (the rule's, at proposal time).
    approvers_all_of: tuple[str, ...] = ()
    # Alert labels the target was taken from (playbook proposals), e.g. ("deployment",).
    target_labels: tuple[str, ...] = ()
    # The cluster (clusters.yaml) it runs against; '' for runs stored before clusters had names.
    cluster: str = ""
    # Why the requester bypassed the cooldown (break-glass); None for an ordinary run.
    break_glass: str | None = None

    @property
    def approvers(self) -> tuple[str, ...]:
        return tuple(a.user_id for a in self.approvals)

    @property
    def approval_roles(self) -> dict[str, tuple[str, ...]]:
        """Approver -> the required roles they held when approving."""
        return {a.user_id: a.roles for a in self.approvals}

    @property
    def final(self) -> bool:
        return self.status.final

    @property
    def requester_text(self) -> str:
        if self.requested_by:
            return f"<@{self.requested_by}>"
        return f"playbook `{self.playbook}`" if self.playbook else "incidentbot"


@dataclass(frozen=True, slots=True)
class NewRun:
    """A proposal about to be stored."""

    incident_id: int
    action: ActionName
    params: dict[str, Any]
    target: str
    namespace: str
    title: str
    why: str
    playbook: str | None
    requested_by: str | None
    approval_rule: str
    approvals_needed: int
    preview: PreviewInfo
    labels: dict[str, str]
    generator_url: str
    expires_at: datetime
    channel_id: str | None
    undo_of: int | None = None
    dedupe_key: str | None = None
    approvers_all_of: tuple[str, ...] = ()
    target_labels: tuple[str, ...] = ()
    cluster: str = ""
    break_glass: str | None = None
