"""Humans correcting correlation: `/incident merge`, `/incident split`, the Attach / Keep
separate buttons of a suggestion, and the learned links they leave (`/incident links`).

Each move happens in one transaction under the intake's group locks, so a delivery of a moved
group is applied either before the move (and moved with it) or after it (and lands where its
keys now point). A merged incident is then resolved through the ordinary resolve flow (timers,
silences, PagerDuty), saying where it went. Authorization is the caller's (the Slack edge),
with the policy's `correlate` permission, before anything here runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from bot.core.blockkit import inline
from bot.core.catalog import Catalog
from bot.core.correlation import LearnedLink, Link
from bot.core.errors import UserError
from bot.core.incident import (
    Incident,
    IncidentSource,
    IncidentStatus,
    Severity,
    highest_severity,
    incident_title,
)
from bot.core.playbooks import PlaybookSet
from bot.core.ports import Clock
from bot.core.timers import opening_timers
from bot.flows.incidents import INVALID_BUTTON, IncidentFlows
from bot.flows.intake import playbook_severity
from bot.flows.pagerduty.join import group_join_keys
from bot.store.correlation import CorrelationStore, CorrelationTx, GroupRow, Suggestion
from bot.store.incidents import IntakeTx, PostgresStore


@dataclass(frozen=True, slots=True)
class Asked:
    """A suggestion found from its button, with both incidents."""

    suggestion: Suggestion
    candidate: Incident
    incident: Incident


def _open(incident: Incident, what: str) -> None:
    if incident.status is IncidentStatus.RESOLVED:
        raise UserError(f"Incident {incident.ref} is resolved: {what}.")


class Corrections:
    def __init__(
        self,
        store: PostgresStore,
        correlation: CorrelationStore,
        incidents: IncidentFlows,
        playbooks: PlaybookSet,
        catalog: Catalog,
        clock: Clock,
        publish: Callable[[int], None],
    ) -> None:
        self.store = store
        self.correlation = correlation
        self.incidents = incidents
        self.playbooks = playbooks
        self.catalog = catalog
        self.clock = clock
        self.publish = publish

    # ------------------------------------------------------------------ merge

    async def merge(self, source: Incident, target: Incident, user: str) -> str:
        """Move every alert and group of `source` into `target`, remember the pairs of alert
        names as linked, and resolve `source`."""
        if source.id == target.id:
            raise UserError("An incident cannot be merged into itself.")
        _open(target, "a resolved incident never receives alerts")
        _open(source, "only open incidents are merged")
        now = self.clock()
        async with self.store.transaction() as tx:
            moves = CorrelationTx(tx)
            groups = await moves.groups(source.id)
            await moves.lock_groups([source.group_key, target.group_key, *(g.group_key for g in groups)])
            if not (await moves.open_for_update(source.id) and await moves.open_for_update(target.id)):
                raise UserError(f"{source.ref} or {target.ref} was resolved meanwhile: nothing was merged.")
            theirs, mine = await moves.alert_names(source.id), await moves.alert_names(target.id)
            moved = await moves.move_alerts(source.id, target.id)
            await moves.move_join_keys(source.id, target.id)
            await moves.move_groups(source.id, target.id)
            await moves.learn(theirs, mine, Link.ATTACH, user, target.id, now)
            names = ", ".join(inline(n, 80) for n in theirs) or "no alerts"
            await tx.add_event(
                target.id,
                "correlation_merged",
                f"🔗 {source.ref} merged into this incident by <@{user}>: {moved} alert(s) ({names}).",
                at=now,
                actor=user,
                announce=True,
                data={"source": source.id},
            )
            await tx.add_event(
                source.id,
                "correlation_merged_away",
                f"🔗 Merged into {target.ref} by <@{user}>; its alerts continue there.",
                at=now,
                actor=user,
                announce=True,
                data={"target": target.id},
            )
            await tx.bump_version(target.id)
            await tx.bump_version(source.id)
        reloaded = await self.store.get_incident(source.id)
        if reloaded is not None:
            await self.incidents.resolve(reloaded, user, f"Merged into {target.ref}")
        self.publish(target.id)
        return f"🔗 <@{user}> merged {source.ref} into {target.ref} ({moved} alert(s))."

    # ------------------------------------------------------------------ split

    async def split(self, incident: Incident, alertname: str, user: str) -> str:
        """Move the groups that brought `alertname` into a new incident of their own."""
        _open(incident, "nothing is split out of a resolved incident")
        now = self.clock()
        async with self.store.transaction() as tx:
            moves = CorrelationTx(tx)
            groups = [g for g in await moves.groups(incident.id) if alertname in g.alertnames]
            await self._splittable(moves, incident, alertname, groups)
            await moves.lock_groups([incident.group_key, *(g.group_key for g in groups)])
            if not await moves.open_for_update(incident.id):
                raise UserError(f"Incident {incident.ref} was resolved meanwhile: nothing was split.")
            alerts = await moves.alerts_named(incident.id, alertname)
            facts = groups[0].facts
            severity = highest_severity([playbook_severity(self.playbooks, a.labels) for a in alerts])
            new, created = await tx.create_incident(
                group_key=groups[0].group_key,
                title=incident_title(alerts) if alerts else alertname,
                severity=severity or Severity.P3,
                source=IncidentSource.ALERTMANAGER,
                now=now,
                team=facts.team,
                service=facts.service,
            )
            if not created:
                raise UserError(
                    f"That alert group already has an open incident, {new.ref}: nothing was split."
                )
            moved = await moves.move_alerts(incident.id, new.id, [alertname])
            for group in groups:
                await moves.move_join_keys(
                    incident.id, new.id, list(group_join_keys(group.am_group_key, alerts))
                )
            await moves.move_groups(incident.id, new.id, [g.id for g in groups])
            remaining = await moves.alert_names(incident.id)
            await moves.learn([alertname], remaining, Link.OFF, user, incident.id, now)
            await self._split_events(tx, incident, new, alertname, moved, user, now)
            for kind, due_at, data in opening_timers(self.playbooks.policy, new, now):
                await tx.schedule_timer(new.id, kind, due_at, data)
            await tx.bump_version(incident.id)
        self.publish(incident.id)
        self.publish(new.id)
        return f"✂️ <@{user}> split `{inline(alertname, 80)}` out of {incident.ref} into {new.ref}."

    @staticmethod
    async def _splittable(
        moves: CorrelationTx, incident: Incident, alertname: str, groups: list[GroupRow]
    ) -> None:
        if not groups:
            names = await moves.alert_names(incident.id)
            if alertname not in names:
                listed = ", ".join(f"`{inline(n, 80)}`" for n in names) or "none"
                raise UserError(
                    f"{incident.ref} has no alert `{inline(alertname, 80)}` (its alerts: {listed})."
                )
            raise UserError(
                f"`{inline(alertname, 80)}` did not come to {incident.ref} through correlation: nothing to split."
            )
        if any(g.group_key == incident.group_key for g in groups):
            raise UserError(
                f"`{inline(alertname, 80)}` opened {incident.ref}: split the other alerts out instead."
            )

    async def _split_events(
        self,
        tx: IntakeTx,
        incident: Incident,
        new: Incident,
        alertname: str,
        moved: int,
        user: str,
        now: datetime,
    ) -> None:
        name = inline(alertname, 80)
        await tx.add_event(
            incident.id,
            "correlation_split",
            f"✂️ `{name}` split out into {new.ref} by <@{user}> ({moved} alert(s)); kept apart from now on.",
            at=now,
            actor=user,
            announce=True,
            data={"incident_id": new.id},
        )
        await tx.add_event(
            new.id,
            "opened",
            f"Incident opened by splitting `{name}` out of {incident.ref} (<@{user}>)",
            at=now,
            actor=user,
            data={"from": incident.id},
        )

    # ------------------------------------------------------------------ suggestions

    async def asked(self, token: str, channel_id: str) -> Asked:
        """The suggestion a button stands for, when it was clicked where it was posted."""
        suggestion = await self.correlation.suggestion(token) if token else None
        if suggestion is None:
            raise UserError(INVALID_BUTTON)
        candidate = await self.store.get_incident(suggestion.candidate_id)
        incident = await self.store.get_incident(suggestion.incident_id)
        if candidate is None or incident is None or candidate.channel_id != channel_id:
            raise UserError(INVALID_BUTTON)
        return Asked(suggestion, candidate, incident)

    async def answer(self, asked: Asked, attach: bool, user: str) -> str:
        now = self.clock()
        if attach:
            _open(asked.candidate, "a resolved incident never receives alerts")
            _open(asked.incident, "only open incidents are attached")
        async with self.store.transaction() as tx:
            moves = CorrelationTx(tx)
            taken = await moves.decide_suggestion(
                asked.suggestion.token, "attach" if attach else "separate", user, now
            )
            if taken is None:
                raise UserError("This suggestion was answered already.")
            if not attach:
                theirs = await moves.alert_names(asked.incident.id)
                mine = await moves.alert_names(asked.candidate.id)
                await moves.learn(theirs, mine, Link.OFF, user, asked.candidate.id, now)
                await tx.add_event(
                    asked.candidate.id,
                    "correlation_kept_separate",
                    f"🔗 {asked.incident.ref} kept separate by <@{user}>; such alerts stay apart from now on.",
                    at=now,
                    actor=user,
                    announce=True,
                )
        if attach:
            return await self.merge(asked.incident, asked.candidate, user)
        self.publish(asked.candidate.id)
        return f"Kept {asked.incident.ref} separate from {asked.candidate.ref}."

    # ------------------------------------------------------------------ learned links

    async def links(self) -> list[LearnedLink]:
        return await self.correlation.links()

    async def remove_link(self, link_id: int) -> LearnedLink:
        removed = await self.correlation.remove_link(link_id)
        if removed is None:
            raise UserError(f"There is no learned link {link_id} (see `/incident links`).")
        return removed

    async def decisions(self, incident: Incident) -> list[tuple[str, str, str]]:
        return await self.correlation.decisions(incident.id)
