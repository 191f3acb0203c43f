"""The correlation decision inside the intake transaction (bot.flows.intake).

For a new alert group (no open incident under its key, none joined through PagerDuty): gather
its facts, take the correlation lock (after the group's and its join keys' locks, which the
intake already holds), compare with the groups of open incidents and decide. The decision is
recorded with its reason in the same transaction as the alerts, so exactly one replica makes
it and a crash leaves neither half."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from bot.core.blockkit import inline
from bot.core.catalog import Catalog, Route
from bot.core.correlation import SUGGESTED_EVENT, CorrelationRules, Decision, GroupFacts, Outcome, decide
from bot.core.incident import Alert, Incident
from bot.flows.correlation.topology import Topology
from bot.store.correlation import CorrelationTx, since
from bot.store.incidents import IntakeTx, _incident

ATTACHED_EVENT = "correlation_attached"


@dataclass(frozen=True, slots=True)
class Placed:
    """A new group's facts and the decision about it (the incident to attach to, if any)."""

    facts: GroupFacts
    decision: Decision
    target: Incident | None = None
    touched: list[int] = field(default_factory=list)


def _names(names: Sequence[str]) -> str:
    return ", ".join(inline(n, 80) for n in names)


class Correlator:
    def __init__(self, rules: CorrelationRules, catalog: Catalog, topology: Topology) -> None:
        self.rules = rules
        self.catalog = catalog
        self.topology = topology
        windows = (
            rules.topology.window_minutes,
            rules.dependencies.window_minutes,
            rules.same_service.window_minutes,
            rules.same_team.window_minutes,
            rules.labels.window_minutes,
        )
        # Groups are compared by start time; a group recorded longer ago than the widest window
        # (plus the same again for late deliveries) cannot match.
        self.horizon_minutes = 2 * max(windows)

    async def facts(self, firing: Sequence[Alert], route: Route, now: datetime) -> GroupFacts:
        where = await self.topology.place(firing)
        compared = self.rules.labels.labels
        common = {n: firing[0].labels[n] for n in compared if firing[0].labels.get(n)}
        common = {n: v for n, v in common.items() if all(a.labels.get(n) == v for a in firing)}
        started = min((a.starts_at for a in firing if a.starts_at.year > 1), default=now)
        return GroupFacts(
            alertnames=tuple(sorted({a.name for a in firing})),
            team=route.team,
            service=route.service,
            cluster=where.cluster,
            started_at=started,
            workloads=where.workloads,
            nodes=where.nodes,
            node_level=where.node_level,
            labels=common,
        )

    async def place(self, tx: IntakeTx, firing: Sequence[Alert], route: Route, now: datetime) -> Placed:
        """Decide for a new group; the open incident it attaches to, if any."""
        facts = await self.facts(firing, route, now)
        store = CorrelationTx(tx)
        await store.lock()
        if not self.rules.enabled:
            return Placed(
                facts, decide(facts, [], self.rules, depends=self.catalog.depends, title=self._title)
            )
        candidates = await store.candidates(since(now, self.horizon_minutes))
        learned = await store.learned(facts.alertnames) if self.rules.learned and candidates else {}
        decision = decide(
            facts, candidates, self.rules, depends=self.catalog.depends, title=self._title, learned=learned
        )
        target: Incident | None = None
        if decision.outcome is Outcome.ATTACHED and decision.incident_id is not None:
            row = await tx.conn.fetchrow(
                "SELECT * FROM incidents WHERE id = $1 AND open_marker", decision.incident_id
            )
            target = _incident(row) if row else None
        return Placed(facts, decision, target)

    def _title(self, team: str, service: str | None) -> str:
        from_catalog = self.catalog.service_title(team, service) if service else self.catalog.team_title(team)
        return inline(from_catalog or team, 100)

    async def record(
        self, tx: IntakeTx, placed: Placed, incident: Incident, key: str, am_group_key: str, now: datetime
    ) -> list[int]:
        """Store the decision and tell the timeline; the other incidents it touched."""
        decision = placed.decision
        store = CorrelationTx(tx)
        names = _names(placed.facts.alertnames)
        if decision.outcome is Outcome.ATTACHED and placed.target is not None:
            await tx.add_event(
                incident.id,
                ATTACHED_EVENT,
                f"🔗 attached {names}: {decision.reason}",
                at=now,
                announce=True,
                data={"rule": decision.rule, "group_key": key},
            )
            outcome, related = Outcome.ATTACHED, None
        elif decision.outcome is Outcome.SUGGESTED and decision.incident_id is not None:
            related = decision.incident_id
            token = secrets.token_urlsafe(18)
            await store.add_suggestion(token, incident.id, related, decision.reason, now)
            await tx.add_event(
                related,
                SUGGESTED_EVENT,
                f"🔗 New incident {incident.ref} ({names}) may belong here: {decision.reason}."
                " Attach it to this incident, or keep it separate?",
                at=now,
                announce=True,
                data={"token": token, "incident_id": incident.id},
            )
            await tx.add_event(
                incident.id,
                "correlation_related",
                f"🔗 Possibly related to #{related}: {decision.reason} (suggested there)",
                at=now,
            )
            outcome = Outcome.SUGGESTED
        else:
            outcome, related = Outcome.OPENED, None
        await store.record(
            group_key=key,
            am_group_key=am_group_key,
            incident_id=incident.id,
            outcome=outcome,
            rule=decision.rule,
            reason=decision.reason,
            facts=placed.facts,
            at=now,
            related_id=related,
        )
        return [related] if related is not None else []
