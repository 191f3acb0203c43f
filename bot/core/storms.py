"""Storm mode, the pure part: which role an incident takes when its team's incidents open in a
storm, and what a storm digest shows (stored state; the flow is bot.flows.storms).

A storm starts when more than `incidents` incidents of one team opened within `window_seconds`
(alert-born ones: a declared incident is a person asking for a channel, never held back). The
incident that crosses the threshold starts it; from then on every new incident of the team is
announced in the storm's digest instead of on its own, and only the severities in
`channels_for` get a channel at once. The storm ends once a whole window passes with no new
incident.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from bot.core.incident import IncidentStatus, Severity


class StormRole(StrEnum):
    OWN = "own"  # its own notification (no storm, or it opened before the storm started)
    DIGEST = "digest"  # announced in the digest only; its channel opens at once
    WAITING = "waiting"  # in the digest, no channel until someone opens it or the storm ends


@dataclass(frozen=True, slots=True)
class Admission:
    """What publishing an incident does with respect to storms."""

    role: StormRole
    storm_id: int | None = None
    started: bool = False  # this incident started the storm

    @property
    def quiet(self) -> bool:
        """No notification of its own: the digest announces it."""
        return self.role is not StormRole.OWN

    @property
    def waiting(self) -> bool:
        return self.role is StormRole.WAITING


def role_in_storm(severity: Severity, channels_for: list[Severity]) -> StormRole:
    return StormRole.DIGEST if severity in channels_for else StormRole.WAITING


@dataclass(frozen=True, slots=True)
class StormMember:
    id: int
    severity: Severity
    title: str
    service: str | None
    status: IncidentStatus
    role: StormRole
    channel_id: str | None
    created_at: datetime

    @property
    def ref(self) -> str:
        return f"#{self.id}"


@dataclass(frozen=True, slots=True)
class StormView:
    id: int
    team: str
    team_title: str
    started_at: datetime
    last_opened_at: datetime
    window_seconds: int
    ended_at: datetime | None
    members: tuple[StormMember, ...]

    def ranked(self) -> list[StormMember]:
        """Open ones first, then by severity (P1 first), then oldest first."""
        return sorted(
            self.members,
            key=lambda m: (m.status is IncidentStatus.RESOLVED, m.severity.rank, m.created_at, m.id),
        )

    def by_severity(self) -> dict[Severity, int]:
        counts = {s: 0 for s in Severity}
        for m in self.members:
            counts[m.severity] += 1
        return {s: n for s, n in counts.items() if n}

    def by_service(self) -> list[tuple[str, int]]:
        counts: dict[str, int] = {}
        for m in self.members:
            name = m.service or "(no service)"
            counts[name] = counts.get(name, 0) + 1
        return sorted(counts.items(), key=lambda item: (-item[1], item[0]))
