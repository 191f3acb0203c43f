"""The service catalog: teams, their services and how alerts find them (pure; loading from disk,
with every problem reported as ``file:line``, is `bot.config.catalog`).

``services.yaml`` in the playbook directory names the teams. Each team has services, each service
label matchers (the playbooks' `Match`: ``alertname``, ``labels`` equality, ``labels_regex`` full
match, ``severity``), and the team says where its incidents are announced (``channel``, else the
``INCIDENT_CHANNEL``), how their channels are named (``channel_prefix``), who responds (Slack
user groups, PagerDuty service and escalation policy, escalation levels with delays), optional
severity-policy overrides, and which policy roles approve changes in its namespaces.

Routing (`Catalog.route`)
    An alert belongs to the service with the most specific matching matcher, compared like
    playbooks: a matcher with an ``alertname`` beats one without, then more equality matchers,
    then more regex matchers; ties go to the first (teams and services in file order). An alert
    no service matches belongs to ``default_team`` with no service. An incident belongs to the
    route of its first alert that a service matches, else to the default team.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from bot.core.incident import Severity
from bot.core.playbooks import Match
from bot.core.policy import (
    BUILT_IN_ROLES,
    NamespaceGlob,
    RoleName,
    SeverityPolicy,
    SlackUsergroup,
    SlackUserId,
)

__all__ = [
    "CATALOG_FILE",
    "CATALOG_FILES",
    "CATALOG_SCHEMA_FILE",
    "DEFAULT_CHANNEL_PREFIX",
    "Catalog",
    "EscalationLevel",
    "PagerDutyRef",
    "Route",
    "Service",
    "StormPolicy",
    "Team",
    "catalog_json_schema",
]

DEFAULT_CHANNEL_PREFIX = "inc"
# In the playbook directory; not playbooks (the playbook loader skips these names).
CATALOG_FILE = "services.yaml"
CATALOG_FILES = (CATALOG_FILE, "services.yml")
CATALOG_SCHEMA_FILE = "services.schema.json"
# What a team or service is called in commands (`/incident team skillforge`) and in storage.
TeamName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]*$", max_length=40)]
# A Slack channel name without `#` (lower case, digits, `-`, `_`), as Slack allows.
ChannelName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=80)]
# Incident channels are `<prefix>-<yyyymmdd>-<slug>`: short enough to leave room for the slug.
ChannelPrefix = Annotated[
    str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]*[a-z0-9]$|^[a-z0-9]$", max_length=30)
]
PagerDutyId = Annotated[str, StringConstraints(pattern=r"^P[A-Z0-9]{5,13}$")]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class Service(_Model):
    title: str = Field(default="", max_length=100, description="shown on the card; default: the name")
    match: list[Match] = Field(
        min_length=1, description="label matchers; an alert matching any of them belongs to this service"
    )
    depends_on: list[str] = Field(
        default_factory=list,
        max_length=50,
        description="services this one depends on: `<service>` of the same team or `<team>/<service>`"
        " (an incident of a dependency and one of this service are correlated)",
    )


class PagerDutyRef(_Model):
    service_id: PagerDutyId | None = Field(
        default=None,
        description="the team's PagerDuty service (its incidents join the team; escalation pages open incidents here)",
    )
    escalation_policy_id: PagerDutyId | None = Field(
        default=None, description="the escalation policy whose on-call responds"
    )


class EscalationLevel(_Model):
    level: int = Field(ge=1, le=10, description="1 = first responder")
    name: str = Field(default="", max_length=100, description="who this is, e.g. 'On-call engineer'")
    after_minutes: int = Field(
        ge=0, le=10080, description="engaged this long after the incident opened while unacknowledged"
    )
    users: list[SlackUserId] = Field(default_factory=list, description="Slack user IDs to mention and invite")
    usergroups: list[SlackUsergroup] = Field(
        default_factory=list, description="Slack user group IDs (S...) or handles"
    )
    pagerduty_escalation_policy: PagerDutyId | None = Field(
        default=None, description="page through this PagerDuty escalation policy at this level"
    )

    @property
    def has_contact(self) -> bool:
        return bool(self.users or self.usergroups or self.pagerduty_escalation_policy)


class StormPolicy(_Model):
    """When a team's incidents come in a storm, and what waits during one (see bot.flows.storms)."""

    incidents: int = Field(
        default=5, ge=1, le=1000, description="a storm starts when more than this many incidents open"
    )
    window_seconds: int = Field(
        default=120,
        ge=5,
        le=86400,
        description="... within this many seconds; it ends after as long with none",
    )
    channels_for: list[Severity] = Field(
        default_factory=lambda: [Severity.P1, Severity.P2],
        description="severities whose channels open at once during a storm; the others wait in the digest",
    )


class Team(_Model):
    title: str = Field(default="", max_length=100, description="shown on the card; default: the name")
    channel: ChannelName | None = Field(
        default=None, description="notification channel (without #); default: INCIDENT_CHANNEL"
    )
    channel_prefix: ChannelPrefix = Field(
        default=DEFAULT_CHANNEL_PREFIX, description="incident channels are <prefix>-<yyyymmdd>-<title>"
    )
    responders: list[SlackUsergroup] = Field(
        default_factory=list, description="Slack user groups of the team's responders (IDs or handles)"
    )
    pagerduty: PagerDutyRef = Field(default_factory=PagerDutyRef)
    escalation: list[EscalationLevel] = Field(
        default_factory=list, description="escalation levels, level 1 first, delays increasing"
    )
    severity_policy: dict[Severity, SeverityPolicy] = Field(
        default_factory=dict, description="overrides of policy.yaml severity_policy for this team's incidents"
    )
    namespaces: list[NamespaceGlob] = Field(
        default_factory=list, description="Kubernetes namespaces (globs) the team owns"
    )
    approvers: list[RoleName] = Field(
        default_factory=list, description="policy roles that approve changes in the team's namespaces"
    )
    services: dict[TeamName, Service] = Field(default_factory=dict)
    storm: StormPolicy | None = Field(
        default=None, description="storm mode for this team; default: the catalog's"
    )

    def problems(self, roles: Iterable[str]) -> list[tuple[tuple[str | int, ...], str]]:
        """Escalation levels in order with increasing delays and a contact each; approver roles
        that exist in the policy."""
        found: list[tuple[tuple[str | int, ...], str]] = []
        for i, level in enumerate(self.escalation):
            if level.level != i + 1:
                found.append(
                    (("escalation", i, "level"), f"expected level {i + 1} (levels are 1, 2, 3, ...)")
                )
            if i and level.after_minutes < self.escalation[i - 1].after_minutes:
                found.append(
                    (("escalation", i, "after_minutes"), "must not be earlier than the level before it")
                )
            if not level.has_contact:
                found.append(((("escalation", i)), "needs users, usergroups or pagerduty_escalation_policy"))
        known = set(roles)
        for i, role in enumerate(self.approvers):
            if role in BUILT_IN_ROLES or role not in known:
                found.append(
                    (("approvers", i), f"unknown role {role!r} (define it under roles in policy.yaml)")
                )
        if self.approvers and not self.namespaces:
            found.append((("approvers",), "approvers apply to the team's namespaces: list them"))
        return found


@dataclass(frozen=True, slots=True)
class Route:
    """Where an alert or incident belongs: its team and, when a service matched, the service."""

    team: str
    service: str | None = None


class Catalog(_Model):
    default_team: TeamName = Field(
        default="default", description="team of alerts no service matches (and of incidents without a team)"
    )
    teams: dict[TeamName, Team] = Field(default_factory=dict)
    storm: StormPolicy = Field(default_factory=StormPolicy, description="storm mode of teams that set none")

    @model_validator(mode="after")
    def _default_team_exists(self) -> Catalog:
        # An empty catalog (no services.yaml) has one implicit team; a written one must name it.
        if self.teams and self.default_team not in self.teams:
            raise ValueError(f"default_team {self.default_team!r} is not one of the teams")
        return self

    def problems(self, roles: Iterable[str]) -> list[tuple[tuple[str | int, ...], str]]:
        """Cross-reference problems as (path in the file, message)."""
        role_names = list(roles)
        found: list[tuple[tuple[str | int, ...], str]] = []
        for name, team in self.teams.items():
            found += [(("teams", name, *loc), msg) for loc, msg in team.problems(role_names)]
        seen: dict[tuple[object, ...], str] = {}
        for team_name, service_name, index, match in self._matchers():
            if match.is_empty:
                found.append(
                    (
                        ("teams", team_name, "services", service_name, "match", index),
                        "a matcher needs a label",
                    )
                )
                continue
            earlier = seen.setdefault(match.identity(), f"{team_name}/{service_name}")
            if earlier != f"{team_name}/{service_name}":
                found.append(
                    (
                        ("teams", team_name, "services", service_name, "match", index),
                        f"the same matcher as service {earlier}, which always wins",
                    )
                )
        return found + self._dependency_problems()

    def _dependency_problems(self) -> list[tuple[tuple[str | int, ...], str]]:
        found: list[tuple[tuple[str | int, ...], str]] = []
        for team_name, team in self.teams.items():
            for service_name, service in team.services.items():
                for index, ref in enumerate(service.depends_on):
                    other = self.dependency(team_name, ref)
                    loc = ("teams", team_name, "services", service_name, "depends_on", index)
                    if other is None:
                        found.append((loc, f"unknown service {ref!r} (`<service>` or `<team>/<service>`)"))
                    elif other == (team_name, service_name):
                        found.append((loc, "a service cannot depend on itself"))
        return found

    def dependency(self, team: str, ref: str) -> tuple[str, str] | None:
        """The (team, service) a `depends_on` entry of a service of `team` names, if it exists."""
        other_team, sep, other_service = ref.partition("/")
        if not sep:
            other_team, other_service = team, ref
        found = self.teams.get(other_team)
        return (other_team, other_service) if found is not None and other_service in found.services else None

    def depends(self, team: str, service: str | None, other_team: str, other_service: str | None) -> bool:
        """Whether service (team, service) declares a dependency on (other_team, other_service)."""
        if service is None or other_service is None:
            return False
        found = self.teams.get(team)
        declared = found.services.get(service) if found is not None else None
        if declared is None:
            return False
        return any(self.dependency(team, ref) == (other_team, other_service) for ref in declared.depends_on)

    def _matchers(self) -> Iterable[tuple[str, str, int, Match]]:
        for team_name, team in self.teams.items():
            for service_name, service in team.services.items():
                for index, match in enumerate(service.match):
                    yield team_name, service_name, index, match

    # ------------------------------------------------------------------ lookups

    def team(self, name: str | None) -> Team:
        """The named team; the default team for None or a name no longer in the catalog."""
        found = self.teams.get(name or "") or self.teams.get(self.default_team)
        return found if found is not None else Team(title=self.default_team)

    def team_name(self, name: str | None) -> str:
        return name if name is not None and name in self.teams else self.default_team

    def team_title(self, name: str | None) -> str:
        return self.team(name).title or self.team_name(name)

    def service_title(self, team: str | None, service: str | None) -> str | None:
        if service is None:
            return None
        found = self.team(team).services.get(service)
        return (found.title or service) if found is not None else service

    def route_text(self, route: Route) -> str:
        """`Title` or `Title / Service title`, for timelines and replies (catalog text: no user input)."""
        service = self.service_title(route.team, route.service)
        title = self.team_title(route.team)
        return f"{title} / {service}" if service else title

    def knows(self, name: str) -> bool:
        return name in self.teams or name == self.default_team

    def names(self) -> list[str]:
        return list(self.teams) or [self.default_team]

    def namespace_approvers(self) -> list[tuple[list[str], list[str]]]:
        """(namespace globs, approver roles) of every team that names approvers for its namespaces."""
        return [
            (list(team.namespaces), list(team.approvers)) for team in self.teams.values() if team.approvers
        ]

    def team_for_channel(self, channel_name: str) -> str | None:
        """The team whose notification channel this is (declaring there picks the team)."""
        wanted = channel_name.lstrip("#")
        return next((name for name, team in self.teams.items() if team.channel == wanted), None)

    def team_for_pagerduty_service(self, service_id: str) -> str | None:
        return next(
            (name for name, team in self.teams.items() if team.pagerduty.service_id == service_id), None
        )

    def storm_policy(self, team: str | None) -> StormPolicy:
        return self.team(team).storm or self.storm

    def severity_policy(
        self, team: str | None, base: Mapping[Severity, SeverityPolicy]
    ) -> dict[Severity, SeverityPolicy]:
        """The policy's severity promises with the team's overrides on top."""
        return {**base, **self.team(team).severity_policy}

    # ------------------------------------------------------------------ routing

    def match(self, labels: Mapping[str, str], severity: Severity | None = None) -> Route | None:
        """The service of one alert (see the module docstring); None when no service matches."""
        best: tuple[tuple[int, int, int], int] | None = None
        route: Route | None = None
        for order, (team_name, service_name, _, match) in enumerate(self._matchers()):
            if not match.matches(labels, severity):
                continue
            rank = (match.specificity(), -order)
            if best is None or rank > best:
                best, route = rank, Route(team_name, service_name)
        return route

    def route(self, labels: Mapping[str, str], severity: Severity | None = None) -> Route:
        return self.match(labels, severity) or Route(self.default_team)

    def route_alerts(self, label_sets: Iterable[tuple[Mapping[str, str], Severity | None]]) -> Route:
        """An incident's route: its first alert a service matches, else the default team."""
        for labels, severity in label_sets:
            found = self.match(labels, severity)
            if found is not None:
                return found
        return Route(self.default_team)


def catalog_json_schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of services.yaml."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **Catalog.model_json_schema(),
        "title": "incidentbot service catalog",
    }
